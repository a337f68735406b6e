package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// podman runs the podman CLI with the flags this machine needs: runc rather
// than crun (which refuses its hybrid cgroups) and cgroupfs.
type podman struct {
	t     *testing.T
	flags []string
}

func (p podman) run(args ...string) (string, error) {
	p.t.Helper()
	out, err := exec.Command("podman", append(append([]string{}, p.flags...), args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// newPodman skips (or fails, when integration is required) unless podman,
// runc and a static busybox are installed (.ci/run installs them), and
// returns the CLI with an image of busybox alone, imported without a registry.
func newPodman(t *testing.T) podman {
	for _, bin := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.SkipOrFail(t, "%s is not installed: apt-get install podman runc busybox-static", bin)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		testenv.SkipOrFail(t, "/bin/busybox is not installed: apt-get install busybox-static")
	}
	p := podman{t: t, flags: []string{"--runtime", "runc", "--cgroup-manager", "cgroupfs"}}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(root, "bin", "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("cp busybox: %v %s", err, out)
	}
	os.Symlink("busybox", filepath.Join(root, "bin", "sh"))
	tarball := filepath.Join(t.TempDir(), "busybox.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	if out, err := p.run("import", tarball, "localhost/periscope-busybox:test"); err != nil {
		testenv.SkipOrFail(t, "podman cannot import an image here: %v %s", err, out)
	}
	return p
}

// container starts a container of the busybox image with labels, as the
// tests' engine answers for it.
func (p podman) container(name string, args ...string) {
	p.t.Helper()
	base := []string{"run", "-d", "--name", name, "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	out, err := p.run(append(append(base, args[:len(args)-1]...), "localhost/periscope-busybox:test", "/bin/sh", "-c", args[len(args)-1])...)
	if err != nil {
		testenv.SkipOrFail(p.t, "podman cannot run a container here: %v %s", err, out)
	}
	p.t.Cleanup(func() { p.run("rm", "-f", "-t", "0", name) })
}

// serve runs podman's Docker-compatible API service on a socket of its own
// until the test ends, and returns the socket's path once it accepts.
func (p podman) serve() string {
	p.t.Helper()
	dir, err := os.MkdirTemp("", "pd")
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "podman.sock")
	cmd := exec.Command("podman", append(append([]string{}, p.flags...), "system", "service", "--time=0", "unix://"+sock)...)
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("podman system service does not listen on %s: %v", sock, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition the service gives no signal of
	}
}

// settle waits until the container has exited for good (its restart policy
// spent), as podman inspect says.
func (p podman) settle(name string, restarts int) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := p.run("inspect", name)
		var in []inspected
		if err == nil && json.Unmarshal([]byte(out), &in) == nil && len(in) == 1 &&
			in[0].State.Status == "exited" && in[0].RestartCount == int64(restarts) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not exit %d restarts later: %s", name, restarts, runtime.Bounded(out, 400))
		}
		time.Sleep(100 * time.Millisecond) // polling a condition the engine gives no signal of
	}
}

func TestAgainstPodmanACrashingContainerIsDownWithItsRestartsAndLastLine(t *testing.T) {
	p := newPodman(t)
	b := make([]byte, 4)
	rand.Read(b)
	app := "periscope-test-" + hex.EncodeToString(b)
	crash, ok := app+"-crash", app+"-ok"
	p.container(crash, "--label", "app="+app, "--restart", "on-failure:3",
		`echo starting; echo "fatal: db connection refused (password hunter2)" >&2; exit 3`)
	p.container(ok, "--label", "app="+app, "exec /bin/busybox sleep 600")
	p.container(app+"-other", "--label", "app=other-"+app, "exec /bin/busybox sleep 600")
	p.settle(crash, 3)
	sock := p.serve()

	s, err := New(config.ContainerSource{Kind: config.ContainersDocker, Name: "podman", Socket: sock, Labels: map[string]string{"app": app}},
		Settings{Redact: func(l string) string { return strings.ReplaceAll(l, "hunter2", "****") }})
	if err != nil {
		t.Fatal(err)
	}
	ms := pmetric.NewMetricSlice()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Collect(ctx, time.Now(), ms); err != nil {
		t.Fatal(err)
	}
	comps := map[string]runtime.Component{}
	for _, c := range s.Components() {
		comps[c.Name] = c
	}
	if len(comps) != 2 {
		t.Fatalf("components %+v, want the two labelled app=%s", s.Components(), app)
	}
	c := comps["container "+crash]
	if c.Healthy || c.Status != "exited (3)" || c.Restarts != 3 ||
		!strings.HasPrefix(c.LastError, "exit code 3: ") || !strings.HasSuffix(c.LastError, "starting | fatal: db connection refused (password ****)") {
		t.Errorf("crashed container %+v", c)
	}
	if c := comps["container "+ok]; !c.Healthy || c.Status != "running" {
		t.Errorf("running container %+v", c)
	}
	up, exits := points(t, ms, "periscope.container.up"), points(t, ms, "periscope.container.last_exit_code")
	if up[ok].IntValue() != 1 || up[crash].IntValue() != 0 || exits[crash].IntValue() != 3 {
		t.Errorf("up %v / %v, last exit code %v", up[ok].IntValue(), up[crash].IntValue(), exits[crash].IntValue())
	}
}
