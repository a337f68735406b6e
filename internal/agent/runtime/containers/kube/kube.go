// Package kube watches the containers of Kubernetes pods through client-go:
// each round it lists the pods of a namespace matching a label selector and
// reports, per container, whether it is ready, how often it restarted, why it
// waits or terminated, and its last termination's exit code, message and time.
// Its metrics are listed in docs/signals.md ("Containers"); each container is
// the component "pod NAME/CONTAINER".
//
// # Testing
//
// No Kubernetes cluster can run on the machines this project is built on, so
// this source alone is tested against client-go's fake clientset
// (k8s.io/client-go/kubernetes/fake): the pods' statuses are the ones the
// tests write, not a kubelet's, and the API server's own behaviour (paging,
// permissions) is only as faithful as the fake.
package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/containers"
	"github.com/periscope-dev/periscope/internal/config"
)

// Metric and attribute names from the OpenTelemetry semantic conventions'
// k8s namespace; the last exit code is containers.MetricLastExitCode.
const (
	MetricReady    = "k8s.container.ready"
	MetricRestarts = "k8s.container.restart.count"
	MetricState    = "k8s.container.status.state"
	MetricReason   = "k8s.container.status.reason"

	AttrNamespace = "k8s.namespace.name"
	AttrPod       = "k8s.pod.name"
	AttrContainer = "k8s.container.name"
	AttrState     = "k8s.container.status.state"
	AttrReason    = "k8s.container.status.reason"
)

// Container states, as AttrState says them.
var states = []string{"running", "waiting", "terminated"}

// Settings carries what a Source borrows from the agent.
type Settings struct {
	// Pods lists a namespace's pods; nil means a REST client built at the
	// first collection from the entry's kubeconfig, or from the pod's service
	// account when it names none. Tests pass a fake clientset's
	// CoreV1().Pods.
	Pods func(namespace string) PodLister
	// Redact applies the agent's effective redaction policy to termination
	// and waiting messages, which reach the manager as last errors and may
	// quote secrets. New refuses nil.
	Redact func(string) string
}

// PodLister is the one call the source makes, as client-go's typed pod
// client has it.
type PodLister interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
}

// Source is one namespace's pods matching a selector: a runtime.Watcher.
type Source struct {
	name       string
	namespace  string
	selector   string
	kubeconfig string
	redact     func(string) string

	mu     sync.Mutex
	client func(namespace string) PodLister
	last   []runtime.Component
}

var _ runtime.Watcher = (*Source)(nil)

// New validates c (the selector with Kubernetes' own parser) and builds its
// Source; it connects to nothing and reads no file.
func New(c config.ContainerSource, s Settings) (*Source, error) {
	if c.Kind != config.ContainersKubernetes {
		return nil, fmt.Errorf("kubernetes source: kind %q", c.Kind)
	}
	if err := c.Validate("runtime.containers"); err != nil {
		return nil, err
	}
	if s.Redact == nil {
		return nil, errors.New("kubernetes source: no redaction for termination messages")
	}
	sel, err := labels.Parse(c.Selector)
	if err != nil {
		return nil, fmt.Errorf("runtime.containers: %s: selector: %w", c.SourceName(), err)
	}
	return &Source{name: c.SourceName(), namespace: c.NamespaceOrDefault(), selector: sel.String(),
		kubeconfig: c.Kubeconfig, redact: s.Redact, client: s.Pods}, nil
}

// Name is the source's name, "kubernetes/<name>".
func (s *Source) Name() string { return s.name }

// Kind is "kubernetes".
func (s *Source) Kind() string { return config.ContainersKubernetes }

// Components returns each container's health as of the last Collect.
func (s *Source) Components() []runtime.Component {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.last)
}

// pods returns the pod client, building it the first time: a kubeconfig
// missing or an agent outside a cluster is then this source's error, reported
// each round, rather than an agent that does not start.
func (s *Source) pods() (PodLister, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client(s.namespace), nil
	}
	var cfg *rest.Config
	var err error
	if s.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	rc, err := coreClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	s.client = func(ns string) PodLister { return restPods{rc: rc, ns: ns} }
	return s.client(s.namespace), nil
}

// coreScheme knows the core group alone. client-go's typed clients decode
// through its scheme of every API group, which would add some 35 MB of
// generated code to the agent for the one list it makes.
func coreScheme() *k8sruntime.Scheme {
	sch := k8sruntime.NewScheme()
	_ = corev1.AddToScheme(sch)
	metav1.AddToGroupVersion(sch, corev1.SchemeGroupVersion)
	return sch
}

// coreClient is a REST client of the core API group, v1.
func coreClient(cfg *rest.Config) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.UserAgent = "periscope-agent"
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(coreScheme()).WithoutConversion()
	return rest.RESTClientFor(c)
}

// restPods lists pods through a core REST client, as the typed client does.
type restPods struct {
	rc *rest.RESTClient
	ns string
}

func (p restPods) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	list := &corev1.PodList{}
	err := p.rc.Get().Namespace(p.ns).Resource("pods").
		VersionedParams(&opts, k8sruntime.NewParameterCodec(coreScheme())).Do(ctx).Into(list)
	return list, err
}

// Collect lists the pods, appends their containers' figures and keeps their
// health for Components. When the API cannot be asked the components of the
// last round are kept, as the docker source does.
func (s *Source) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	lister, err := s.pods()
	if err != nil {
		return err
	}
	list, err := lister.List(ctx, metav1.ListOptions{LabelSelector: s.selector, Limit: containers.MaxContainers})
	if err != nil {
		return fmt.Errorf("list pods in %s: %w", s.namespace, err)
	}
	pods := list.Items
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	var cut error
	if list.Continue != "" || len(pods) > containers.MaxContainers {
		cut = fmt.Errorf("more than %d pods match, watching the first %d", containers.MaxContainers, containers.MaxContainers)
	}
	var sts []State
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if len(sts) == containers.MaxContainers {
				cut = fmt.Errorf("more than %d containers match, watching the first %d", containers.MaxContainers, containers.MaxContainers)
				break
			}
			sts = append(sts, stateOf(p, cs, s.redact))
		}
	}
	write(ms, now, sts)
	comps := make([]runtime.Component, len(sts))
	for i, st := range sts {
		comps[i] = st.Component(now)
	}
	s.mu.Lock()
	s.last = comps
	s.mu.Unlock()
	return cut
}

// State is one container of a pod as the source reports it.
type State struct {
	Namespace, Pod, Container string
	// State is running, waiting or terminated.
	State string
	// Reason is why it waits or terminated ("CrashLoopBackOff", "OOMKilled").
	Reason string
	// Message is the waiting or termination message, redacted.
	Message  string
	Ready    bool
	Restarts int64
	// Since is when it entered its state, as far as the kubelet says.
	Since time.Time
	// Completed marks a container that terminated with exit code 0.
	Completed bool
	// Last is its last termination (the present one when terminated),
	// HasLast false when it never terminated.
	HasLast bool
	Last    Termination
}

// Termination is how a container last ended.
type Termination struct {
	ExitCode int64
	Reason   string
	// Message is its termination message (terminationMessagePath or the
	// log's tail, per its policy), redacted.
	Message  string
	Finished time.Time
}

func stateOf(p corev1.Pod, cs corev1.ContainerStatus, redact func(string) string) State {
	b := func(s string) string { return runtime.Bounded(strings.ToValidUTF8(s, "\uFFFD"), config.MaxAttrLen) }
	msg := func(s string) string {
		return runtime.Bounded(redact(strings.ToValidUTF8(strings.TrimSpace(s), "\uFFFD")), containers.MaxLastError)
	}
	st := State{Namespace: b(p.Namespace), Pod: b(p.Name), Container: b(cs.Name), Ready: cs.Ready, Restarts: int64(max(cs.RestartCount, 0))}
	term := func(t *corev1.ContainerStateTerminated) Termination {
		return Termination{ExitCode: int64(t.ExitCode), Reason: b(t.Reason), Message: msg(t.Message), Finished: t.FinishedAt.Time}
	}
	if t := cs.LastTerminationState.Terminated; t != nil {
		st.HasLast, st.Last = true, term(t)
	}
	switch {
	case cs.State.Running != nil:
		st.State, st.Since = "running", cs.State.Running.StartedAt.Time
	case cs.State.Terminated != nil:
		t := cs.State.Terminated
		st.State, st.Reason, st.Since = "terminated", b(t.Reason), t.FinishedAt.Time
		st.HasLast, st.Last = true, term(t)
		st.Completed = t.ExitCode == 0
	default:
		st.State = "waiting"
		if w := cs.State.Waiting; w != nil {
			st.Reason, st.Message = b(w.Reason), msg(w.Message)
		}
		st.Since = st.Last.Finished // a crash loop waits since its last exit
	}
	return st
}

// Healthy reports a container running and ready, or one that completed.
func (s State) Healthy() bool { return s.State == "running" && s.Ready || s.Completed }

// StatusWord is the container's status as its component says it: "running",
// "not-ready", "completed", or the state with its reason
// ("waiting: CrashLoopBackOff").
func (s State) StatusWord() string {
	switch {
	case s.Completed:
		return "completed"
	case s.State == "running" && s.Ready:
		return "running"
	case s.State == "running":
		return "not-ready"
	case s.Reason != "":
		return s.State + ": " + s.Reason
	}
	return s.State
}

// Component is the container's health as the Collector reports it: "pod
// NAME/CONTAINER", with its last termination (exit code, reason, time) and
// message as the last error.
func (s State) Component(now time.Time) runtime.Component {
	c := runtime.Component{Name: "pod " + s.Pod + "/" + s.Container, Healthy: s.Healthy(), Status: s.StatusWord(), Restarts: s.Restarts, Since: s.Since}
	if c.Since.IsZero() || c.Since.After(now) {
		c.Since = now
	}
	if c.Healthy {
		return c
	}
	var reason []string
	var lines []string
	if s.HasLast {
		r := "exit code " + strconv.FormatInt(s.Last.ExitCode, 10)
		if s.Last.Reason != "" {
			r += " (" + s.Last.Reason + ")"
		}
		if !s.Last.Finished.IsZero() {
			r += " at " + s.Last.Finished.UTC().Format(time.RFC3339)
		}
		reason = append(reason, r)
		if s.Last.Message != "" {
			lines = append(lines, strings.Split(s.Last.Message, "\n")...)
		}
	}
	if s.State == "waiting" && s.Message != "" {
		reason = append(reason, s.Message)
	}
	if len(reason) == 0 {
		reason = append(reason, c.Status)
	}
	c.LastError = runtime.LastError(strings.Join(reason, "; "), lines, containers.MaxLastError)
	return c
}

// write appends the containers' figures to ms.
func write(ms pmetric.MetricSlice, now time.Time, sts []State) {
	if len(sts) == 0 {
		return
	}
	ready := runtime.Gauge(ms, MetricReady, "{container}", "Whether the container passes its readiness probe (1) or not (0).")
	restarts := runtime.Sum(ms, MetricRestarts, "{restart}", "Times the container restarted, as the kubelet counts them.", false)
	state := runtime.Gauge(ms, MetricState, "{container}", "1 for the container's present state, 0 for the others.")
	reason := runtime.Gauge(ms, MetricReason, "{container}", "1 for the reason the container waits or terminated, when it has one.")
	var exits pmetric.NumberDataPointSlice
	anyExit := false
	for _, s := range sts {
		kv := []string{AttrNamespace, s.Namespace, AttrPod, s.Pod, AttrContainer, s.Container}
		runtime.Point(ready, now, b2i(s.Ready), kv...)
		runtime.Point(restarts, now, s.Restarts, kv...)
		for _, name := range states {
			runtime.Point(state, now, b2i(s.State == name), append(kv, AttrState, name)...)
		}
		if s.Reason != "" {
			runtime.Point(reason, now, 1, append(kv, AttrReason, s.Reason)...)
		}
		if s.HasLast {
			if !anyExit {
				anyExit = true
				exits = runtime.Gauge(ms, containers.MetricLastExitCode, "1", "The container's last exit code; only once it has terminated.")
			}
			runtime.Point(exits, now, s.Last.ExitCode, kv...)
		}
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
