//go:build linux

package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// TestFullDiskAnswers503AndNotReadyUntilThereIsRoom fills the disk under the
// manager's data directory: creating a deployment or a release and pinning are
// answered 503 unavailable with a Retry-After (not 500 internal), /readyz says
// why it is not ready, and once there is room again both recover without a
// restart.
func TestFullDiskAnswers503AndNotReadyUntilThereIsRoom(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(disk, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", disk).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "a full disk is simulated with a small tmpfs, and mounting one is not permitted here (run as root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", disk).Run() })
	m := startAgain(t, filepath.Join(disk, "data"), "start on a tmpfs")
	ctx := context.Background()
	c := apiclient.New(m.URL(), crashAdmin)
	if _, err := c.CreateDeployment(ctx, apitypes.NewDeployment{ID: "acme-prod", Customer: "acme", Stack: "shop"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(t, m); code != http.StatusOK {
		t.Fatalf("/readyz before the disk is full: %d %s", code, body)
	}

	filler := filepath.Join(disk, "filler")
	fill(t, filler)
	// Big enough that no write fits in what is left of a file's last page, each
	// within the API's field limits (release notes 16 KiB; 64 labels of 256 bytes;
	// a pin's reason 1 KiB).
	big := strings.Repeat("x", 16<<10)
	labels := map[string]string{}
	for i := range 64 {
		labels[fmt.Sprintf("note-%02d", i)] = strings.Repeat("x", 256)
	}
	reason := strings.Repeat("x", 1<<10)
	writes := map[string]func() error{
		"create deployment": func() error {
			_, err := c.CreateDeployment(ctx, apitypes.NewDeployment{ID: "umbrella-dr", Customer: "umbrella", Stack: "shop", Labels: labels})
			return err
		},
		"create release": func() error {
			_, err := c.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "2.0.0", Notes: big})
			return err
		},
		"pin": func() error {
			_, err := c.PinDeployment(ctx, "acme-prod", "1.0.0", reason)
			return err
		},
	}
	// A pin's reason is capped at 1 KiB, which can fit in the slack of the log's
	// last page: pin and unpin until the disk refuses one, which must then be a 503.
	fullWrites := maps.Clone(writes)
	fullWrites["pin"] = func() error {
		for range 32 {
			if _, err := c.PinDeployment(ctx, "acme-prod", "1.0.0", reason); err != nil {
				return err
			}
			if _, err := c.UnpinDeployment(ctx, "acme-prod", reason); err != nil {
				return err
			}
		}
		return nil
	}
	for what, write := range fullWrites {
		var ae *apiclient.Error
		if err := write(); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != "unavailable" {
			t.Errorf("%s on a full disk: %v, want 503 unavailable", what, err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, m.URL()+"/api/v1/releases", strings.NewReader(`{"stack":"shop","version":"3.0.0","notes":"`+big+`"}`))
	req.Header.Set("Authorization", "Bearer "+crashAdmin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "30" {
		t.Errorf("create release on a full disk: %d, Retry-After %q; want 503 with Retry-After 30", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, body := readyz(t, m); code != http.StatusServiceUnavailable || !strings.Contains(body, "no space left on device") {
		t.Errorf("/readyz on a full disk: %d %q, want 503 saying there is no space left", code, body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(t, m); code != http.StatusOK {
		t.Errorf("/readyz once there is room: %d %q, want 200", code, body)
	}
	for what, write := range writes {
		if err := write(); err != nil {
			t.Errorf("%s once there is room: %v", what, err)
		}
	}
	d, err := c.Deployment(ctx, "acme-prod")
	if err != nil || d.Pin == nil || d.Pin.Release != "1.0.0" {
		t.Errorf("acme-prod after the pin: %+v, %v", d.Pin, err)
	}
}

func readyz(t *testing.T, m *Manager) (int, string) {
	t.Helper()
	resp, err := http.Get(m.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// fill writes path until the file system has no space left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space left on device") {
				t.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	// What is left is less than a buffer; take it in small steps.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			return
		}
	}
}
