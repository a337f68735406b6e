package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
)

// killWait bounds how long a killed executable's leftovers (a grandchild that
// escaped the group and holds the output pipe) may keep a run from ending.
const killWait = 2 * time.Second

// outcome is what a handler produced, before redaction.
type outcome struct {
	ok       bool
	reason   string // why it did not succeed, when it did not
	exitCode *int
	signal   string
	status   int
	out      *boundedWriter
	cut      bool // the run's context ended before the handler did
}

// boundedWriter keeps the first limit bytes written to it and counts them all,
// so a chatty handler cannot grow the agent's memory.
type boundedWriter struct {
	limit int
	buf   []byte
	total int64
}

// Write keeps what fits under the limit and counts everything.
func (w *boundedWriter) Write(p []byte) (int, error) {
	w.total += int64(len(p))
	if room := w.limit - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// truncated reports whether bytes were written past the limit.
func (w *boundedWriter) truncated() bool { return w.total > int64(len(w.buf)) }

// runExec runs spec's executable with the parameters and returns its outcome.
// It is never run through a shell: the path and arguments are the spec's own.
func runExec(ctx context.Context, spec command.Spec, inv command.Invocation, params command.Params, baseEnv []string) outcome {
	h := spec.Exec
	out := &boundedWriter{limit: spec.EffectiveOutputLimit()}
	cmd := exec.CommandContext(ctx, h.Path, h.Args...)
	cmd.Env = append(execEnv(baseEnv), "PERISCOPE_COMMAND="+spec.Name, "PERISCOPE_INVOCATION_ID="+inv.ID)
	if h.Params == command.ParamsStdin {
		body, _ := json.Marshal(params) // typed scalars only: cannot fail
		cmd.Stdin = bytes.NewReader(body)
	} else {
		for name, v := range params {
			cmd.Env = append(cmd.Env, command.EnvName(name)+"="+command.String(v))
		}
	}
	cmd.Stdout, cmd.Stderr = out, out
	ownProcessGroup(cmd)
	cmd.WaitDelay = killWait
	err := cmd.Run()
	o := outcome{out: out, cut: ctx.Err() != nil}
	if o.cut {
		killGroup(cmd) // what escaped the first kill
	}
	if st := cmd.ProcessState; st != nil {
		code := st.ExitCode()
		o.exitCode = &code
		o.signal = signalOf(st)
		if st.Success() && (err == nil || errors.Is(err, exec.ErrWaitDelay)) {
			o.ok = true
			return o
		}
	}
	switch {
	case err == nil:
	case o.exitCode == nil:
		o.reason = fmt.Sprintf("cannot run %s: %v", h.Path, errors.Unwrap(err))
		if errors.Unwrap(err) == nil {
			o.reason = fmt.Sprintf("cannot run %s: %v", h.Path, err)
		}
	case o.signal != "":
		o.reason = "the executable was killed by " + o.signal
	default:
		o.reason = fmt.Sprintf("the executable exited with status %d", *o.exitCode)
	}
	return o
}

// execEnv is the agent's environment without its own PERISCOPE_* settings:
// a command has no use for the agent's token or configuration, one that
// prints its environment would leak them, and PERISCOPE_PARAM_* must come
// from the invocation alone.
func execEnv(env []string) []string {
	out := make([]string, 0, len(env)+8)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PERISCOPE_") {
			out = append(out, kv)
		}
	}
	return out
}

// runHTTP calls spec's endpoint: POST with the parameters as a JSON object,
// GET with them as the query string.
func runHTTP(ctx context.Context, hc *http.Client, spec command.Spec, params command.Params) outcome {
	h := spec.HTTP
	out := &boundedWriter{limit: spec.EffectiveOutputLimit()}
	method := h.Method
	if method == "" {
		method = command.DefaultHTTPMethod
	}
	target := h.URL
	var body io.Reader
	if method == http.MethodGet {
		u, err := url.Parse(h.URL)
		if err != nil {
			return outcome{out: out, reason: "the command's URL does not parse"}
		}
		q := u.Query()
		for name, v := range params {
			q.Set(name, command.String(v))
		}
		u.RawQuery = q.Encode()
		target = u.String()
	} else {
		b, _ := json.Marshal(params) // typed scalars only: cannot fail
		if params == nil {
			b = []byte("{}")
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return outcome{out: out, reason: "cannot build the request from the command's URL"}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h.Headers {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, whose query may hold a parameter
		}
		return outcome{out: out, cut: ctx.Err() != nil, reason: fmt.Sprintf("the request failed: %v", err)}
	}
	defer resp.Body.Close()
	_, rerr := io.Copy(out, resp.Body)
	o := outcome{out: out, status: resp.StatusCode, cut: ctx.Err() != nil}
	switch {
	case o.cut:
		o.reason = "the response was cut short"
	case rerr != nil:
		o.reason = fmt.Sprintf("reading the response failed: %v", rerr)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		o.reason = fmt.Sprintf("the endpoint answered %d", resp.StatusCode)
	default:
		o.ok = true
	}
	return o
}

// newHTTPClient does not follow redirects: a redirected POST becomes a GET,
// and the endpoint is declared, not discovered.
func newHTTPClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
