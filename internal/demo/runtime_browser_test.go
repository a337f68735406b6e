package demo

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/testenv/browser"
)

// TestDemoRuntimeInBrowser opens the crash-looping deployment's page in
// Chromium and finds in its Runtime section what the agent collected: the
// worker's restarts and last error beside the running mailers, the shop's
// requests by status class, and the data volume. The section is the README's
// runtime.png.
func TestDemoRuntimeInBrowser(t *testing.T) {
	browser.Chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := startDemo(t, ctx, Options{})
	api := apiclient.New(r.url, r.token)
	// The page shows what the API holds; wait there, not by reloading.
	awaitRuntime(t, ctx, api, crashLoopOn, "a restart, traffic and the volume", func(rt apitypes.Runtime) error {
		if c, ok := component(rt, crashingWorker+"/0"); !ok || c.Restarts < 1 {
			return fmt.Errorf("component %s/0: %+v", crashingWorker, c)
		}
		if requestsBy(rt, "2xx") == 0 || len(rt.Storage.Filesystems) == 0 {
			return fmt.Errorf("ingress %+v, filesystems %+v", rt.Ingress, rt.Storage.Filesystems)
		}
		for _, name := range []string{"mailer/0", "mailer/1"} {
			if m, ok := component(rt, name); !ok || m.Status != "running" {
				return fmt.Errorf("%s: %+v", name, m)
			}
		}
		return nil
	})

	b := signedIn(t, r)
	b.Visit("/deployments/" + crashLoopOn)
	if st := strings.TrimSpace(b.Text(`#status .badge`)); st != "unhealthy" {
		t.Errorf("status badge %q, want unhealthy", st)
	}
	if why := b.Text(`#status-reason`); !strings.Contains(why, crashingWorker+"/0") {
		t.Errorf("status reason %q does not name the crashing worker", why)
	}

	rows := browser.Eval[[][]string](b, `[...document.querySelectorAll("#runtime table.runtime-components tbody tr")].map(r => [...r.cells].map(c => c.innerText.trim()))`)
	var worker []string
	mailers := 0
	for _, row := range rows {
		if len(row) < 5 {
			t.Fatalf("a component row has %d cells: %q", len(row), row)
		}
		switch {
		case row[0] == crashingWorker+"/0":
			worker = row
		case strings.HasPrefix(row[0], "mailer/") && row[2] == "running":
			mailers++
		}
	}
	if worker == nil {
		t.Fatalf("the components table does not list %s/0: %q", crashingWorker, rows)
	}
	if worker[2] != "crash-loop" || worker[3] == "0" || !strings.Contains(worker[4], crashLine) {
		t.Errorf("the worker's row reads %q, want crash-loop with restarts and its last error line", worker)
	}
	if mailers != 2 {
		t.Errorf("%d mailer replicas shown running, want 2: %q", mailers, rows)
	}
	if b.Count(`#runtime table.runtime-components tr.down`) != 1 {
		t.Error("the components table does not mark the one component down")
	}

	ingress := browser.Eval[[][]string](b, `[...document.querySelectorAll("#runtime table.runtime-ingress tbody tr")].map(r => [...r.cells].map(c => c.innerText.trim()))`)
	served := false
	for _, row := range ingress {
		if len(row) < 4 || row[0] != ingressName {
			t.Errorf("ingress row %q, want the shop's", row)
			continue
		}
		served = served || row[3] != "0" && row[3] != ""
	}
	if !served {
		t.Errorf("the ingress table shows no 2xx: %q", ingress)
	}
	if fs := b.Text(`#runtime table.runtime-storage`); !strings.Contains(fs, "filesystem/data") || !strings.Contains(fs, "free of") {
		t.Errorf("the storage table reads %q, want the data volume with its free space", fs)
	}
	b.ReadmeShotOf(`section#runtime`, "runtime.png")
	r.stop(t)
}
