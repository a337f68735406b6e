package deploy_test

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, USER…
	args string
}

// stage is one FROM … AS name block.
type stage struct {
	name, from string
	body       []instruction
}

// parseDockerfile splits a Dockerfile into its global ARGs and its stages.
func parseDockerfile(t *testing.T, path string) (args map[string]string, stages map[string]*stage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args, stages = map[string]string{}, map[string]*stage{}
	var cur *stage
	var pending string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			pending += l + " "
			continue
		}
		line, pending = pending+line, ""
		cmd, rest, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(rest)}
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			if len(f) != 3 || !strings.EqualFold(f[1], "AS") {
				t.Fatalf("FROM %s: every stage must be named (FROM image AS name)", in.args)
			}
			if stages[f[2]] != nil {
				t.Fatalf("stage %s twice", f[2])
			}
			cur = &stage{name: f[2], from: f[0]}
			stages[cur.name] = cur
		case cur == nil && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case cur == nil:
			t.Fatalf("%s before the first FROM", in.cmd)
		default:
			cur.body = append(cur.body, in)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return args, stages
}

// all returns the arguments of every instruction cmd in the stage.
func (s *stage) all(cmd string) []string {
	var out []string
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// last returns the arguments of the stage's last instruction cmd ("" when none).
func (s *stage) last(cmd string) string {
	all := s.all(cmd)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}

// execForm decodes an instruction's JSON (exec) form.
func execForm(t *testing.T, what, args string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("%s %s: want the exec form [\"…\"], so signals reach the binary and not a shell", what, args)
	}
	return argv
}

func TestDockerfileBuildsEachBinaryRightAndRunsAsNonRoot(t *testing.T) {
	args, stages := parseDockerfile(t, "Dockerfile")

	// The builder's Go must be at least the go.mod's.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if want == nil {
		t.Fatal("no go line in go.mod")
	}
	if got := args["GO_VERSION"]; versionLess(got, string(want[1])) {
		t.Errorf("ARG GO_VERSION=%s is older than go.mod's go %s", got, want[1])
	}

	for _, tc := range []struct {
		target, builder, pkg, binary, cgo string
		program                           program
		volume                            string
	}{
		{"manager", "build-manager", "./cmd/periscope", "/usr/local/bin/periscope", "1", managerProgram, "/var/lib/periscope"},
		{"agent", "build-agent", "./cmd/periscope-agent", "/usr/local/bin/periscope-agent", "0", agentProgram, "/var/lib/periscope-agent"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			b, final := stages[tc.builder], stages[tc.target]
			if b == nil || final == nil {
				t.Fatalf("want stages %s and %s, have %v", tc.builder, tc.target, keys(stages))
			}
			if _, err := os.Stat(".." + strings.TrimPrefix(tc.pkg, ".")); err != nil {
				t.Fatalf("%s: %v", tc.pkg, err)
			}
			// The build: the right package, with cgo on for DuckDB in the manager and
			// off for the agent, which ships into customers' clouds as a static binary.
			build := regexp.MustCompile(`(^|&&\s*)CGO_ENABLED=` + tc.cgo + `\s+go build\s.*-o\s+(\S+)\s+` + regexp.QuoteMeta(tc.pkg) + `$`)
			var out string
			for _, run := range b.all("RUN") {
				if m := build.FindStringSubmatch(run); m != nil {
					out = m[2]
				}
			}
			if out == "" {
				t.Fatalf("stage %s has no RUN CGO_ENABLED=%s go build -o … %s; its RUNs: %q", tc.builder, tc.cgo, tc.pkg, b.all("RUN"))
			}
			if !strings.HasPrefix(b.from, "golang:") {
				t.Errorf("stage %s builds FROM %s, want a golang image", tc.builder, b.from)
			}

			// The image: the binary copied from the builder to the entrypoint.
			var copied bool
			for _, c := range final.all("COPY") {
				copied = copied || c == "--from="+tc.builder+" "+out+" "+tc.binary
			}
			if !copied {
				t.Errorf("stage %s does not COPY --from=%s %s %s; its COPYs: %q", tc.target, tc.builder, out, tc.binary, final.all("COPY"))
			}
			if ep := execForm(t, "ENTRYPOINT", final.last("ENTRYPOINT")); len(ep) != 1 || ep[0] != tc.binary {
				t.Errorf("ENTRYPOINT %v, want [%s]", ep, tc.binary)
			}
			cmdArgs := execForm(t, "CMD", final.last("CMD"))
			if dd := tc.program.flagValue(t, cmdArgs, "data-dir"); dd != tc.volume {
				t.Errorf("CMD's --data-dir %s is not the VOLUME %s", dd, tc.volume)
			}
			if v := final.last("VOLUME"); !strings.Contains(v, `"`+tc.volume+`"`) {
				t.Errorf("VOLUME %s, want %s", v, tc.volume)
			}

			user := final.last("USER")
			uid, _, _ := strings.Cut(user, ":")
			if n, err := strconv.Atoi(uid); user == "" || uid == "root" || (err == nil && n == 0) {
				t.Errorf("stage %s runs as %q, want a non-root USER", tc.target, user)
			}
			// The data directory is created for that user, 0700, so the volume a
			// runtime mounts there starts owned by it.
			var owned bool
			for _, c := range final.all("COPY") {
				owned = owned || strings.Contains(c, "--chown="+user) && strings.Contains(c, "--chmod=0700") && strings.HasSuffix(c, " "+tc.volume+"/")
			}
			if !owned {
				t.Errorf("stage %s does not create %s/ owned by %s with mode 0700", tc.target, tc.volume, user)
			}
		})
	}

	// The manager links glibc and libstdc++: its runtime image must carry them,
	// from the Debian release it was built on (a newer builder's glibc refuses to
	// load on an older one).
	debian := map[string]string{"bookworm": "debian12", "trixie": "debian13"}
	m, bm := stages["manager"], stages["build-manager"]
	release := bm.from[strings.LastIndex(bm.from, "-")+1:]
	if want, ok := debian[release]; !ok || !strings.Contains(m.from, "/cc-"+want) {
		t.Errorf("manager runs FROM %s but is built FROM %s: want a distroless cc image of the same Debian release", m.from, bm.from)
	}
	if a := stages["agent"]; strings.Contains(a.from, "/cc-") || strings.Contains(a.from, "golang") {
		t.Errorf("agent runs FROM %s: a static binary needs only a static image", a.from)
	}
}

// versionLess compares dotted Go versions numerically ("1.26" < "1.26.8").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
