package deploy_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unitFile is a systemd unit as sections of keys, each with its values in order
// (a key may repeat, as ExecStartPre= or SystemCallFilter= do).
type unitFile map[string]map[string][]string

// unitKey is the form systemd accepts for a key; anything else it ignores with a
// warning, which would silently drop a hardening setting.
var unitKey = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// parseUnit reads a unit file with systemd's syntax: [Section] headers, Key=Value
// lines, # and ; comments. Continuation lines are refused: these units use none,
// and a stray backslash would join a hardening line into the one before.
func parseUnit(path string) (unitFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u := unitFile{}
	var section string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, `\`):
			return nil, fmt.Errorf("%s:%d: continuation line", path, n)
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("%s:%d: %q is not a [Section] header", path, n, line)
			}
			section = line[1 : len(line)-1]
			if _, dup := u[section]; dup {
				return nil, fmt.Errorf("%s:%d: section [%s] twice", path, n, section)
			}
			u[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || !unitKey.MatchString(k) {
			return nil, fmt.Errorf("%s:%d: %q is not Key=Value", path, n, line)
		}
		if section == "" {
			return nil, fmt.Errorf("%s:%d: %s= before any [Section]", path, n, k)
		}
		u[section][k] = append(u[section][k], v)
	}
	return u, sc.Err()
}

// one returns the single value of section's key, failing when it is absent or set twice.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Fatalf("[%s] %s= is set %d times, want once", section, key, len(vs))
	}
	return vs[0]
}

// hostFiles maps the paths the units name on a host to the files in this
// directory that are installed there.
var hostFiles = map[string]string{
	"/etc/periscope/manager.yaml": "config/manager.yaml",
	"/etc/periscope/agent.yaml":   "config/agent.yaml",
	"/etc/periscope/manager.env":  "systemd/manager.env.example",
	"/etc/periscope/agent.env":    "systemd/agent.env.example",
}

// readEnvFile reads an EnvironmentFile (KEY=value lines, # comments) in
// os.Environ form.
func readEnvFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, _, ok := strings.Cut(line, "="); !ok || !strings.HasPrefix(k, "PERISCOPE_") {
			t.Fatalf("%s: %q is not a PERISCOPE_*=value line", path, line)
		}
		env = append(env, line)
	}
	return env
}

func TestSystemdUnitsRunRealCommandsOnValidConfigs(t *testing.T) {
	for _, tc := range []struct {
		unit, binary, state string
		program             program
	}{
		{"systemd/periscope-manager.service", "/usr/local/bin/periscope", "periscope", managerProgram},
		{"systemd/periscope-agent.service", "/usr/local/bin/periscope-agent", "periscope-agent", agentProgram},
	} {
		t.Run(filepath.Base(tc.unit), func(t *testing.T) {
			u, err := parseUnit(tc.unit)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"Unit", "Service", "Install"} {
				if u[s] == nil {
					t.Errorf("no [%s] section", s)
				}
			}
			if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
				t.Errorf("WantedBy=%s: the service would not start at boot", got)
			}
			// The hardening the production guide promises.
			for k, want := range map[string]string{
				"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
				"PrivateTmp": "yes", "PrivateDevices": "yes", "StateDirectory": tc.state, "StateDirectoryMode": "0700",
				"UMask": "0077", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
			} {
				if got := u.one(t, "Service", k); got != want {
					t.Errorf("%s=%s, want %s=%s", k, got, k, want)
				}
			}

			argv := strings.Fields(u.one(t, "Service", "ExecStart"))
			if argv[0] != tc.binary {
				t.Fatalf("ExecStart runs %s, want %s", argv[0], tc.binary)
			}
			cfgPath := tc.program.flagValue(t, argv[1:], "config")
			local, ok := hostFiles[cfgPath]
			if !ok {
				t.Fatalf("--config %s is not a file this directory provides", cfgPath)
			}
			var env []string
			for _, ef := range u["Service"]["EnvironmentFile"] {
				src, ok := hostFiles[strings.TrimPrefix(ef, "-")] // "-": optional
				if !ok {
					t.Fatalf("EnvironmentFile=%s has no example here", ef)
				}
				env = append(env, readEnvFile(t, src)...)
			}
			dataDir := dataDirOf(tc.program.loadValid(t, local, env))
			if want := "/var/lib/" + tc.state; dataDir != want {
				t.Errorf("data_dir %s is not the StateDirectory %s: the data would land where ProtectSystem=strict forbids writing", dataDir, want)
			}
		})
	}
}

// TestSystemdAnalyzeAcceptsUnits runs systemd's own checks: verify reports
// unknown keys and bad values (which systemd ignores at start, dropping the
// setting), security rates the sandbox.
func TestSystemdAnalyzeAcceptsUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; the units are still parsed by TestSystemdUnitsRunRealCommandsOnValidConfigs")
	}
	// verify requires ExecStart's binary to exist; the command line itself is
	// checked against the command tree by the test above.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{"systemd/periscope-manager.service", "systemd/periscope-agent.service"} {
		t.Run(filepath.Base(unit), func(t *testing.T) {
			b, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			text := regexp.MustCompile(`(?m)^ExecStart=\S+`).ReplaceAllString(string(b), "ExecStart="+self)
			tmp := filepath.Join(t.TempDir(), filepath.Base(unit))
			if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(sa, "verify", tmp).CombinedOutput()
			if err != nil || strings.Contains(string(out), filepath.Base(unit)) {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}

			out, err = exec.Command(sa, "security", "--offline=yes", tmp).CombinedOutput()
			if err != nil && !strings.Contains(string(out), "exposure level") {
				t.Skipf("systemd-analyze security --offline is not supported here (%v): %s", err, out)
			}
			m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("no exposure level in:\n%s", out)
			}
			// 0 is a fully sandboxed service, 10 an unprotected one; systemd calls
			// up to 2.0 "OK".
			if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
				t.Errorf("exposure level %.1f, want at most 2.0:\n%s", level, out)
			}
		})
	}
}
