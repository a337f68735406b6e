package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager"
)

// manifest is the objects of one file, by kind and name.
type manifest struct {
	configMaps map[string]*corev1.ConfigMap
	services   map[string]*corev1.Service
	pvcs       map[string]*corev1.PersistentVolumeClaim
	workloads  []workload
	ingresses  []*networkingv1.Ingress
}

// workload is a Deployment's or StatefulSet's pod template with what the checks
// need of its controller.
type workload struct {
	kind, name string
	replicas   int32
	template   corev1.PodTemplateSpec
	claims     []corev1.PersistentVolumeClaim // a StatefulSet's volumeClaimTemplates
	recreate   bool                           // a Deployment's Recreate strategy
	service    string                         // a StatefulSet's serviceName
}

// decodeManifest decodes every document of a file with client-go's scheme in
// strict mode: an unknown or repeated field is an error, as `kubectl apply
// --validate=strict` would make it, rather than a setting silently dropped.
func decodeManifest(t *testing.T, file string) manifest {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	m := manifest{configMaps: map[string]*corev1.ConfigMap{}, services: map[string]*corev1.Service{}, pvcs: map[string]*corev1.PersistentVolumeClaim{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s document %d: %v", file, n, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s document %d: %v", file, n, err)
		}
		if obj.(interface{ GetName() string }).GetName() == "" {
			t.Fatalf("%s document %d: a %s without a name", file, n, gvk.Kind)
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *corev1.Service:
			m.services[o.Name] = o
		case *corev1.PersistentVolumeClaim:
			m.pvcs[o.Name] = o
		case *appsv1.Deployment:
			m.workloads = append(m.workloads, workload{kind: "Deployment", name: o.Name, replicas: deref(o.Spec.Replicas),
				template: o.Spec.Template, recreate: o.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType})
			checkSelector(t, o.Name, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
		case *appsv1.StatefulSet:
			m.workloads = append(m.workloads, workload{kind: "StatefulSet", name: o.Name, replicas: deref(o.Spec.Replicas),
				template: o.Spec.Template, claims: o.Spec.VolumeClaimTemplates, service: o.Spec.ServiceName})
			checkSelector(t, o.Name, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
		case *networkingv1.Ingress:
			m.ingresses = append(m.ingresses, o)
		case *networkingv1.NetworkPolicy:
		default:
			t.Fatalf("%s document %d: %s is not a kind this test checks; add its checks", file, n, gvk.Kind)
		}
	}
	return m
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(append(out, l...), '\n')
		}
	}
	return out
}

func deref(p *int32) int32 {
	if p == nil {
		return 1 // the API's default
	}
	return *p
}

func checkSelector(t *testing.T, name string, selector, labels map[string]string) {
	t.Helper()
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("%s: the selector %s=%s does not match its own pod template", name, k, v)
		}
	}
}

// secretPlaceholders stand in for the Secrets the manifests read, with values
// of the right form: the configuration checks a token's prefix.
var secretPlaceholders = map[string]string{
	"PERISCOPE_AGENT_TOKEN": "pdt_placeholder",
	"PERISCOPE_ADMIN_TOKEN": "psk_placeholder",
}

// periscopeContainer is a container that runs one of our binaries, found by
// its image's name.
type periscopeContainer struct {
	c       corev1.Container
	program program
	cfg     validator
}

// checkPeriscopeContainer loads the configuration the container runs with (its
// --config file from the ConfigMap mounted there, its PERISCOPE_* variables)
// through the real loader and checks the pod gives it what it needs.
func checkPeriscopeContainer(t *testing.T, m manifest, w workload, c corev1.Container) periscopeContainer {
	t.Helper()
	image := path.Base(strings.SplitN(c.Image, ":", 2)[0])
	p := map[string]program{"periscope-manager": managerProgram, "periscope-agent": agentProgram}[image]
	if p.root == nil {
		t.Fatalf("%s/%s: image %s is none of ours", w.name, c.Name, c.Image)
	}
	if len(c.Command) != 0 {
		t.Errorf("%s/%s: command overrides the image's entrypoint", w.name, c.Name)
	}
	cfgPath := p.flagValue(t, c.Args, "config")

	// The file comes from a ConfigMap mounted at its directory.
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	vm, ok := mounts[filepath.Dir(cfgPath)]
	if !ok {
		t.Fatalf("%s/%s: nothing is mounted at %s for --config %s", w.name, c.Name, filepath.Dir(cfgPath), cfgPath)
	}
	vol := volume(w, vm.Name)
	if vol == nil || vol.ConfigMap == nil {
		t.Fatalf("%s/%s: volume %s at %s is not a ConfigMap", w.name, c.Name, vm.Name, vm.MountPath)
	}
	cm := m.configMaps[vol.ConfigMap.Name]
	if cm == nil {
		t.Fatalf("%s/%s: ConfigMap %s is not in the file", w.name, c.Name, vol.ConfigMap.Name)
	}
	text, ok := cm.Data[filepath.Base(cfgPath)]
	if !ok {
		t.Fatalf("%s/%s: ConfigMap %s has no key %s", w.name, c.Name, cm.Name, filepath.Base(cfgPath))
	}
	file := filepath.Join(t.TempDir(), filepath.Base(cfgPath))
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	var env []string
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.SecretKeyRef == nil {
				t.Fatalf("%s/%s: %s comes from neither a value nor a Secret", w.name, c.Name, e.Name)
			}
			if v, ok = secretPlaceholders[e.Name]; !ok {
				t.Fatalf("%s/%s: %s comes from a Secret this test has no placeholder for", w.name, c.Name, e.Name)
			}
		}
		env = append(env, e.Name+"="+v)
	}
	cfg := p.loadValid(t, file, env)
	// Each variable must be one the loader reads: a misspelt one is ignored by
	// the binary, so its setting would silently not apply.
	for i, kv := range env {
		without := p.defaults()
		if err := config.Load(without, file, append(env[:i:i], env[i+1:]...)); err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(without, cfg) {
			name, _, _ := strings.Cut(kv, "=")
			t.Errorf("%s/%s: %s changes nothing in the configuration: not a variable the %s reads", w.name, c.Name, name, p.command)
		}
	}

	// The data directory is on a volume that outlives the pod.
	dd := dataDirOf(cfg)
	dm, ok := mounts[dd]
	if !ok {
		t.Fatalf("%s/%s: nothing is mounted at data_dir %s: the read-only root would refuse it", w.name, c.Name, dd)
	}
	if !persistent(m, w, dm.Name) {
		t.Errorf("%s/%s: data_dir %s is on volume %s, which is not a PersistentVolumeClaim: a reschedule loses it", w.name, c.Name, dd, dm.Name)
	}

	// Hardening: non-root, no privilege escalation, nothing writable but volumes.
	psc, sc := w.template.Spec.SecurityContext, c.SecurityContext
	if !((sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)) {
		t.Errorf("%s/%s: runAsNonRoot is not set", w.name, c.Name)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s/%s: want allowPrivilegeEscalation: false and readOnlyRootFilesystem: true", w.name, c.Name)
	}
	return periscopeContainer{c: c, program: p, cfg: cfg}
}

func volume(w workload, name string) *corev1.Volume {
	for i, v := range w.template.Spec.Volumes {
		if v.Name == name {
			return &w.template.Spec.Volumes[i]
		}
	}
	return nil
}

func persistent(m manifest, w workload, name string) bool {
	for _, c := range w.claims {
		if c.Name == name {
			return true
		}
	}
	v := volume(w, name)
	return v != nil && v.PersistentVolumeClaim != nil && m.pvcs[v.PersistentVolumeClaim.ClaimName] != nil
}

// port is the container's port a probe or Service names, by name or number.
func port(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %s", c.Name, p.String())
	return 0
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// checkServices checks that every Service selects a workload of the file and
// sends to a port one of its containers declares.
func checkServices(t *testing.T, m manifest) {
	t.Helper()
	for _, s := range m.services {
		var target *workload
		for i, w := range m.workloads {
			if reflect.DeepEqual(s.Spec.Selector, w.template.Labels) {
				target = &m.workloads[i]
			}
		}
		if target == nil {
			t.Errorf("Service %s selects %v, which no pod template of the file has", s.Name, s.Spec.Selector)
			continue
		}
		for _, sp := range s.Spec.Ports {
			found := false
			for _, c := range target.template.Spec.Containers {
				for _, cp := range c.Ports {
					found = found || cp.Name == sp.TargetPort.StrVal || cp.ContainerPort == sp.TargetPort.IntVal
				}
			}
			if !found {
				t.Errorf("Service %s port %s: targetPort %s is no container port of %s", s.Name, sp.Name, sp.TargetPort.String(), target.name)
			}
		}
	}
	for _, w := range m.workloads {
		if w.service != "" && m.services[w.service] == nil {
			t.Errorf("StatefulSet %s: serviceName %s is not in the file", w.name, w.service)
		}
	}
}

// singleStatefulSet decodes a file that runs one of our binaries as a
// StatefulSet of one replica (why is said when it has more) with one container,
// and checks that container.
func singleStatefulSet(t *testing.T, file, why string) (manifest, periscopeContainer) {
	t.Helper()
	m := decodeManifest(t, file)
	checkServices(t, m)
	if len(m.workloads) != 1 || m.workloads[0].kind != "StatefulSet" {
		t.Fatalf("want one StatefulSet, have %d workloads", len(m.workloads))
	}
	w := m.workloads[0]
	if w.replicas != 1 {
		t.Errorf("StatefulSet %s has %d replicas: %s", w.name, w.replicas, why)
	}
	if len(w.template.Spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(w.template.Spec.Containers))
	}
	return m, checkPeriscopeContainer(t, m, w, w.template.Spec.Containers[0])
}

func TestKubernetesManagerManifest(t *testing.T) {
	// The embedded store is one process's files: a second replica would be a
	// second fleet on a volume of its own.
	m, pc := singleStatefulSet(t, "kubernetes/manager.yaml", "the embedded store needs exactly 1")
	cfg := pc.cfg.(*config.Manager)
	c := pc.c
	if c.StartupProbe == nil || c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Fatal("want startup, liveness and readiness probes")
	}
	if got := c.ReadinessProbe.HTTPGet; got == nil || got.Path != "/readyz" {
		t.Errorf("readiness probe %+v, want GET /readyz: it turns 503 while the store cannot write", got)
	}
	if got := c.LivenessProbe.HTTPGet; got == nil || got.Path != "/healthz" {
		t.Errorf("liveness probe %+v, want GET /healthz: /readyz would restart a manager waiting for disk space", got)
	}
	listenPort := portOf(t, cfg.Listen)
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	for name, p := range probes {
		if p.HTTPGet == nil {
			t.Fatalf("%s probe is not an HTTP GET", name)
		}
		if got := port(t, c, p.HTTPGet.Port); got != listenPort {
			t.Errorf("%s probe on port %d, but the manager listens on %s", name, got, cfg.Listen)
		}
	}
	if host, _, _ := net.SplitHostPort(cfg.Listen); host == "127.0.0.1" || host == "localhost" {
		t.Errorf("listen %s: the kubelet and the Service cannot reach the pod's loopback", cfg.Listen)
	}

	for _, ing := range m.ingresses {
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				s := m.services[p.Backend.Service.Name]
				if s == nil {
					t.Errorf("Ingress %s sends to Service %s, which is not in the file", ing.Name, p.Backend.Service.Name)
					continue
				}
				found := false
				for _, sp := range s.Spec.Ports {
					found = found || sp.Name == p.Backend.Service.Port.Name || sp.Port == p.Backend.Service.Port.Number
				}
				if !found {
					t.Errorf("Ingress %s: Service %s has no port %+v", ing.Name, s.Name, p.Backend.Service.Port)
				}
			}
		}
		// The proxy must let telemetry requests of max_request_bytes through.
		if v := ing.Annotations["nginx.ingress.kubernetes.io/proxy-body-size"]; v != "" {
			size, err := config.ParseByteSize(strings.TrimSuffix(v, "m") + "MiB")
			if err != nil || size < cfg.MaxRequestBytes {
				t.Errorf("Ingress %s: proxy-body-size %s is below max_request_bytes %d", ing.Name, v, cfg.MaxRequestBytes)
			}
		}
	}

	// The probes' paths are the manager's real endpoints: start it on the
	// ConfigMap's configuration (a temporary data directory, a free port, no
	// exporters, which would reach for the cluster's Collector) and ask.
	live := *cfg
	live.DataDir, live.Listen, live.Exporters = t.TempDir(), "127.0.0.1:0", nil
	mgr, err := manager.New(live, manager.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := mgr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := mgr.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	for name, p := range probes {
		resp, err := http.Get(mgr.URL() + p.HTTPGet.Path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s probe GET %s: %s, want 200 from a manager that is up", name, p.HTTPGet.Path, resp.Status)
		}
	}
}

func TestKubernetesAgentSidecarManifest(t *testing.T) {
	m := decodeManifest(t, "kubernetes/agent-sidecar.yaml")
	checkServices(t, m)
	if len(m.workloads) != 1 {
		t.Fatalf("want one workload, have %d", len(m.workloads))
	}
	w := m.workloads[0]
	// One agent per deployment token: a second pod's agent would replace the
	// first's connection, and they would take turns.
	if w.replicas != 1 || !w.recreate {
		t.Errorf("%s %s: replicas %d, Recreate %v; a sidecar agent needs one replica and no overlap", w.kind, w.name, w.replicas, w.recreate)
	}
	var agents []periscopeContainer
	for _, c := range w.template.Spec.InitContainers {
		// A native sidecar: starts before the service and stops after it.
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("init container %s is not a sidecar (restartPolicy: Always)", c.Name)
		}
		agents = append(agents, checkPeriscopeContainer(t, m, w, c))
	}
	if len(agents) != 1 {
		t.Fatalf("want one agent sidecar, have %d", len(agents))
	}
	cfg := agents[0].cfg.(*config.Agent)
	for _, addr := range []string{cfg.OTLPGRPC, cfg.OTLPHTTP} {
		if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
			t.Errorf("a sidecar agent listening on %s takes telemetry from beyond its pod", addr)
		}
	}
	// The service sends its OTLP to the agent's receiver.
	for _, c := range w.template.Spec.Containers {
		var endpoint string
		for _, e := range c.Env {
			if e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
				endpoint = e.Value
			}
		}
		if endpoint != "http://"+cfg.OTLPHTTP && endpoint != "http://"+cfg.OTLPGRPC {
			t.Errorf("container %s sends OTLP to %q, not to the agent (%s or %s)", c.Name, endpoint, cfg.OTLPHTTP, cfg.OTLPGRPC)
		}
	}
}

func TestKubernetesAgentStatefulSetManifest(t *testing.T) {
	_, pc := singleStatefulSet(t, "kubernetes/agent-statefulset.yaml", "the deployment token admits one agent at a time")
	cfg := pc.cfg.(*config.Agent)
	c := pc.c
	// The Service reaches the receivers on the ports the agent listens on.
	want := map[string]int32{"otlp-grpc": portOf(t, cfg.OTLPGRPC), "otlp-http": portOf(t, cfg.OTLPHTTP)}
	for _, cp := range c.Ports {
		if p, ok := want[cp.Name]; ok && p != cp.ContainerPort {
			t.Errorf("container port %s is %d, but the agent listens on %d", cp.Name, cp.ContainerPort, p)
		}
	}
	for _, addr := range []string{cfg.OTLPGRPC, cfg.OTLPHTTP} {
		if host, _, _ := net.SplitHostPort(addr); host == "127.0.0.1" || host == "localhost" {
			t.Errorf("the agent listens on %s, which the Service cannot reach", addr)
		}
	}
	// The probes ask the OTLP/HTTP server, which serves the agent's /metrics.
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Fatalf("no %s HTTP probe", name)
		}
		if p.HTTPGet.Path != "/metrics" || port(t, c, p.HTTPGet.Port) != portOf(t, cfg.OTLPHTTP) {
			t.Errorf("%s probe GET %s on %s, want /metrics on the OTLP/HTTP port", name, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}
}

// TestEveryManifestIsChecked keeps a new file under kubernetes/ from going
// unchecked.
func TestEveryManifestIsChecked(t *testing.T) {
	files, err := filepath.Glob("kubernetes/*")
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{"kubernetes/manager.yaml": true, "kubernetes/agent-sidecar.yaml": true, "kubernetes/agent-statefulset.yaml": true}
	for _, f := range files {
		if !checked[f] {
			t.Errorf("%s is checked by no test", f)
		}
	}
}
