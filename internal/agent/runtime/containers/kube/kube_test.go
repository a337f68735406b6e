package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/containers"
	"github.com/periscope-dev/periscope/internal/config"
)

var (
	crashed = time.Date(2026, 12, 6, 5, 1, 12, 0, time.UTC)
	started = time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	now     = time.Date(2026, 12, 6, 5, 15, 0, 0, time.UTC)
)

func pod(name string, lbl map[string]string, statuses ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod", Labels: lbl},
		Status:     corev1.PodStatus{ContainerStatuses: statuses},
	}
}

// cluster is the pods of namespace prod (and one of another namespace): a
// crash-looping api container beside a healthy sidecar, a ready web pod, a
// completed job, one pending on its image, and pods the selector leaves out.
func cluster() *fake.Clientset {
	checkout := map[string]string{"app": "checkout"}
	return fake.NewClientset(
		pod("checkout-7d9f-abcde", checkout,
			corev1.ContainerStatus{
				Name: "api", Ready: false, RestartCount: 3,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
					Message: "back-off 40s restarting failed container=api pod=checkout-7d9f-abcde_prod"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: "OOMKilled", FinishedAt: metav1.NewTime(crashed),
					Message: "loading catalogue\nfatal: db connection refused (password hunter2)\n"}},
			},
			corev1.ContainerStatus{
				Name: "proxy", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}},
			}),
		pod("checkout-7d9f-fghij", checkout, corev1.ContainerStatus{
			Name: "api", Ready: true, RestartCount: 1,
			State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: metav1.NewTime(started.Add(-time.Second))}},
		}),
		pod("checkout-migrate-x1", checkout, corev1.ContainerStatus{
			Name:  "migrate",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", FinishedAt: metav1.NewTime(started)}},
		}),
		pod("checkout-7d9f-klmno", checkout, corev1.ContainerStatus{
			Name:  "api",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "registry.example.com/checkout:1.5"`}},
		}),
		pod("search-0", map[string]string{"app": "search"}, corev1.ContainerStatus{Name: "search"}),
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "checkout-staging", Namespace: "staging", Labels: checkout},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "api"}}}},
	)
}

func newSource(t *testing.T, client *fake.Clientset) *Source {
	t.Helper()
	s, err := New(config.ContainerSource{Kind: config.ContainersKubernetes, Name: "checkout", Namespace: "prod", Selector: "app=checkout"},
		Settings{Pods: func(ns string) PodLister { return client.CoreV1().Pods(ns) }, Redact: func(l string) string { return strings.ReplaceAll(l, "hunter2", "****") }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// points maps "pod/container" (and the state, for the state metric) to its
// point of the metric name.
func points(ms pmetric.MetricSlice, name string) map[string]pmetric.NumberDataPoint {
	out := map[string]pmetric.NumberDataPoint{}
	for i := range ms.Len() {
		m := ms.At(i)
		if m.Name() != name {
			continue
		}
		var pts pmetric.NumberDataPointSlice
		if m.Type() == pmetric.MetricTypeSum {
			pts = m.Sum().DataPoints()
		} else {
			pts = m.Gauge().DataPoints()
		}
		for j := range pts.Len() {
			a := pts.At(j).Attributes()
			p, _ := a.Get(AttrPod)
			c, _ := a.Get(AttrContainer)
			key := p.Str() + "/" + c.Str()
			if st, ok := a.Get(AttrState); ok {
				key += " " + st.Str()
			}
			if r, ok := a.Get(AttrReason); ok {
				key += " " + r.Str()
			}
			out[key] = pts.At(j)
		}
	}
	return out
}

func TestCrashLoopingPodContainerIsDownWithRestartsAndLastTermination(t *testing.T) {
	s := newSource(t, cluster())
	ms := pmetric.NewMetricSlice()
	if err := s.Collect(context.Background(), now, ms); err != nil {
		t.Fatal(err)
	}
	comps := map[string]runtime.Component{}
	for _, c := range s.Components() {
		comps[c.Name] = c
	}
	if len(comps) != 5 {
		t.Fatalf("components %+v, want the 5 containers of prod's checkout pods", s.Components())
	}
	api := comps["pod checkout-7d9f-abcde/api"]
	want := "exit code 137 (OOMKilled) at 2026-12-06T05:01:12Z; back-off 40s restarting failed container=api pod=checkout-7d9f-abcde_prod: " +
		"loading catalogue | fatal: db connection refused (password ****)"
	if api.Healthy || api.Status != "waiting: CrashLoopBackOff" || api.Restarts != 3 || api.LastError != want || !api.Since.Equal(crashed) {
		t.Errorf("crash-looping container %+v\nwant unhealthy, waiting: CrashLoopBackOff, 3 restarts, since %v, last error %q", api, crashed, want)
	}
	if p := comps["pod checkout-7d9f-abcde/proxy"]; !p.Healthy || p.Status != "running" || p.LastError != "" || !p.Since.Equal(started) {
		t.Errorf("sidecar %+v", p)
	}
	if p := comps["pod checkout-7d9f-fghij/api"]; !p.Healthy || p.Restarts != 1 {
		t.Errorf("recovered container %+v", p)
	}
	if p := comps["pod checkout-migrate-x1/migrate"]; !p.Healthy || p.Status != "completed" {
		t.Errorf("completed job %+v", p)
	}
	if p := comps["pod checkout-7d9f-klmno/api"]; p.Healthy || p.Status != "waiting: ImagePullBackOff" ||
		p.LastError != `Back-off pulling image "registry.example.com/checkout:1.5"` || !p.Since.Equal(now) {
		t.Errorf("pending container %+v", p)
	}

	ready, restarts := points(ms, MetricReady), points(ms, MetricRestarts)
	if ready["checkout-7d9f-abcde/api"].IntValue() != 0 || ready["checkout-7d9f-abcde/proxy"].IntValue() != 1 ||
		restarts["checkout-7d9f-abcde/api"].IntValue() != 3 || len(ready) != 5 {
		t.Errorf("ready %v, restarts %v", ready, restarts)
	}
	state := points(ms, MetricState)
	for key, v := range map[string]int64{
		"checkout-7d9f-abcde/api waiting": 1, "checkout-7d9f-abcde/api running": 0, "checkout-7d9f-abcde/api terminated": 0,
		"checkout-migrate-x1/migrate terminated": 1, "checkout-7d9f-abcde/proxy running": 1,
	} {
		if p, ok := state[key]; !ok || p.IntValue() != v {
			t.Errorf("%s %s = %v (present %v), want %d", MetricState, key, p.IntValue(), ok, v)
		}
	}
	reason := points(ms, MetricReason)
	if len(reason) != 3 || reason["checkout-7d9f-abcde/api CrashLoopBackOff"].IntValue() != 1 ||
		reason["checkout-7d9f-klmno/api ImagePullBackOff"].IntValue() != 1 || reason["checkout-migrate-x1/migrate Completed"].IntValue() != 1 {
		t.Errorf("reasons %v", reason)
	}
	exits := points(ms, containers.MetricLastExitCode)
	if len(exits) != 3 || exits["checkout-7d9f-abcde/api"].IntValue() != 137 || exits["checkout-7d9f-fghij/api"].IntValue() != 1 || exits["checkout-migrate-x1/migrate"].IntValue() != 0 {
		t.Errorf("last exit codes %v", exits)
	}
	if ns, _ := ready["checkout-7d9f-abcde/api"].Attributes().Get(AttrNamespace); ns.Str() != "prod" {
		t.Errorf("namespace attribute %q", ns.Str())
	}
}

func TestForbiddenListFailsAndKeepsTheLastComponents(t *testing.T) {
	client := cluster()
	s := newSource(t, client)
	if err := s.Collect(context.Background(), now, pmetric.NewMetricSlice()); err != nil {
		t.Fatal(err)
	}
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", nil)
	})
	ms := pmetric.NewMetricSlice()
	err := s.Collect(context.Background(), now, ms)
	if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "list pods in prod") {
		t.Fatalf("Collect without permission: %v", err)
	}
	if ms.Len() != 0 || len(s.Components()) != 5 {
		t.Errorf("after a failed round: %d metrics, %d components", ms.Len(), len(s.Components()))
	}
}

func TestTooManyContainersAreCutAndSaidSo(t *testing.T) {
	var objs []k8sruntime.Object
	for i := range containers.MaxContainers/2 + 1 {
		objs = append(objs, pod(fmt.Sprintf("p%03d", i), map[string]string{"app": "checkout"},
			corev1.ContainerStatus{Name: "a", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			corev1.ContainerStatus{Name: "b", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}))
	}
	s := newSource(t, fake.NewClientset(objs...))
	err := s.Collect(context.Background(), now, pmetric.NewMetricSlice())
	if err == nil || !strings.Contains(err.Error(), "more than 200 containers match") {
		t.Fatalf("Collect = %v", err)
	}
	comps := s.Components()
	if len(comps) != containers.MaxContainers || comps[len(comps)-1].Name != "pod p099/b" {
		t.Errorf("%d components, last %q", len(comps), comps[len(comps)-1].Name)
	}
}

func TestNewRefusesABadSelector(t *testing.T) {
	_, err := New(config.ContainerSource{Kind: config.ContainersKubernetes, Name: "x", Selector: "app in (a"}, Settings{Redact: strings.TrimSpace})
	if err == nil || !strings.Contains(err.Error(), "selector") {
		t.Errorf("a bad selector: %v", err)
	}
	if _, err := New(config.ContainerSource{Kind: config.ContainersKubernetes, Name: "x"}, Settings{}); err == nil {
		t.Error("accepted no redaction")
	}
}

func TestOutsideAClusterTheSourceFailsEachRoundInsteadOfTheAgent(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	s, err := New(config.ContainerSource{Kind: config.ContainersKubernetes, Name: "x"}, Settings{Redact: strings.TrimSpace})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Collect(context.Background(), now, pmetric.NewMetricSlice()); err == nil || !strings.Contains(err.Error(), "kubernetes client") {
		t.Errorf("Collect outside a cluster: %v", err)
	}
}
