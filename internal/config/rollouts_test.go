package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestManagerRolloutsFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte(`
rollouts:
  check_every: 10s
  plans:
    - stack: shop
      waves:
        - name: canary
          select: {labels: {ring: canary}}
          bake: 30m
          gates: {regressed: {max: 0}, failed_updates: {max: 1, max_percent: 10}}
        - name: everyone
          select: {rest: true}
          bake: 1h
  windows:
    customers:
      acme: ["Sat 02:00-06:00 Europe/Berlin"]
`), 0o600)
	cfg := DefaultManager()
	if err := Load(&cfg, path, []string{"PERISCOPE_ROLLOUTS_CHECK_EVERY=15s"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Rollouts.CheckEvery != Duration(15*time.Second) {
		t.Errorf("check_every from the environment: %s", time.Duration(cfg.Rollouts.CheckEvery))
	}
	p := cfg.Rollouts.Plan()
	if len(p.Plans) != 1 || len(p.Plans[0].Waves) != 2 || time.Duration(p.Plans[0].Waves[1].Bake) != time.Hour {
		t.Errorf("plans: %+v", p.Plans)
	}
	if w := p.Windows.For("any", "acme"); len(w) != 1 {
		t.Errorf("acme's windows: %v", w)
	}
}

func TestManagerRolloutsRefusedInWords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte(`
rollouts:
  plans:
    - stack: shop
      waves:
        - name: canary
          selct: {labels: {ring: canary}}
          bake: soon
  windows:
    customers:
      acme: ["Sat 02:00 Europe/Berlin"]
`), 0o600)
	cfg := DefaultManager()
	err := Load(&cfg, path, nil)
	for _, want := range []string{"rollouts.plans[0].waves[0].selct", "select", `"soon" is not a duration`, `not a time range like 02:00-06:00`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load() = %v, want it to mention %s", err, want)
		}
	}

	cfg = DefaultManager()
	cfg.Rollouts.CheckEvery = 0
	os.WriteFile(path, []byte("rollouts:\n  plans:\n    - stack: shop\n      waves: [{name: a, select: {}}]\n"), 0o600)
	if err := Load(&cfg, path, nil); err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	for _, want := range []string{"rollouts.check_every: must be positive", "rollouts.plans[0].waves[0].select: select something"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}
