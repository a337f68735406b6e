package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/otlp"
)

// contextPath is the manager's endpoint for an agent's own deployment context.
const contextPath = "/v1/agent/context"

// ContextSource keeps the pipeline's deployment context current: what the agent knows
// itself (release, cloud, region, platform) merged over what the manager knows of the
// deployment (id, customer, stack). The last answer is cached on disk, so an agent
// restarted while the manager is down still tags its telemetry fully.
type ContextSource struct {
	// Manager is the manager's base URL; Token the deployment token.
	Manager, Token string
	// TokenFunc, when set, is asked for the token instead of Token, so a token
	// the manager rotates takes effect at once.
	TokenFunc func() string
	// Local holds what the agent knows itself; its non-empty fields win.
	Local otlp.Context
	// CacheFile keeps the manager's last answer.
	CacheFile string
	// Client makes the requests; nil means http.DefaultClient.
	Client *http.Client
	// Refresh is how often to ask again after a success (default 5m); failures are
	// retried every 10s.
	Refresh time.Duration
}

// Prime sets p's context from what the agent knows and the cached answer, before the
// receivers open, so not even the first request goes out untagged.
func (cs *ContextSource) Prime(p *Pipeline) { p.SetContext(cs.merge(cs.readCache())) }

// Run keeps p's context current from the manager until ctx ends.
func (cs *ContextSource) Run(ctx context.Context, p *Pipeline) {
	remote := cs.readCache()
	p.SetContext(cs.merge(remote))
	refresh := cs.Refresh
	if refresh <= 0 {
		refresh = 5 * time.Minute
	}
	for {
		wait := refresh
		got, err := cs.fetch(ctx)
		switch {
		case err == nil:
			p.s.Forward.Reach.OK()
			if got != remote {
				remote = got
				p.SetContext(cs.merge(remote))
				cs.writeCache(remote)
			}
		case ctx.Err() != nil:
			return
		case p.s.Forward.Reach != nil && errors.As(err, new(*url.Error)):
			p.s.Forward.Reach.Failed(err) // the tracker logs the manager down, once
			wait = 10 * time.Second
		default:
			p.log.Warn("could not read the deployment context from the manager; retrying", "error", err)
			wait = 10 * time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (cs *ContextSource) merge(remote otlp.Context) otlp.Context {
	out := remote
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&out.Release, cs.Local.Release}, {&out.Cloud, cs.Local.Cloud},
		{&out.Region, cs.Local.Region}, {&out.Platform, cs.Local.Platform},
	} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	return out
}

func (cs *ContextSource) fetch(ctx context.Context) (otlp.Context, error) {
	var dc otlp.Context
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(cs.Manager, "/")+contextPath, nil)
	if err != nil {
		return dc, err
	}
	tok := cs.Token
	if cs.TokenFunc != nil {
		tok = cs.TokenFunc()
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	client := cs.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return dc, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return dc, fmt.Errorf("manager answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &dc); err != nil {
		return dc, fmt.Errorf("decode deployment context: %w", err)
	}
	if dc.DeploymentID == "" {
		return dc, errors.New("manager sent a context without a deployment id")
	}
	return dc, nil
}

func (cs *ContextSource) readCache() otlp.Context {
	var dc otlp.Context
	if data, err := os.ReadFile(cs.CacheFile); err == nil {
		_ = json.Unmarshal(data, &dc)
	}
	return dc
}

func (cs *ContextSource) writeCache(dc otlp.Context) {
	data, _ := json.Marshal(dc)
	tmp := cs.CacheFile + ".tmp"
	if os.MkdirAll(filepath.Dir(cs.CacheFile), 0o700) == nil && os.WriteFile(tmp, data, 0o600) == nil {
		_ = os.Rename(tmp, cs.CacheFile)
	}
}
