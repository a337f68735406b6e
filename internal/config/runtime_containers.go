package config

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Kinds of ContainerSource.
const (
	ContainersDocker     = "docker"
	ContainersKubernetes = "kubernetes"
)

// Defaults and bounds of ContainerSource.
const (
	// DefaultDockerSocket is the engine's socket when Socket is unset.
	DefaultDockerSocket = "/var/run/docker.sock"
	// DefaultKubeNamespace is the namespace when Namespace is unset.
	DefaultKubeNamespace = "default"
	// MaxContainerLabels bounds a docker entry's label filter.
	MaxContainerLabels = 16
	// MaxSelectorLen bounds a kubernetes entry's label selector.
	MaxSelectorLen = 1024
)

var (
	// A Kubernetes namespace is a DNS label (RFC 1123).
	kubeNamespace = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// A Docker label key: reverse-DNS style or plain, no '=' (the filter's
	// separator) and no control characters.
	dockerLabelKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$`)
)

// ContainerSource is one set of containers whose health the agent watches,
// in a Docker-compatible engine or in a Kubernetes namespace. Which fields
// apply depends on Kind; Validate reports those set for another kind.
//
//	docker:      socket (DefaultDockerSocket when unset), labels
//	kubernetes:  namespace (DefaultKubeNamespace when unset), selector, kubeconfig
type ContainerSource struct {
	// Kind is docker or kubernetes.
	Kind string `yaml:"kind"`
	// Name identifies the source within its kind; its full name is
	// kind/name ("docker/shop").
	Name string `yaml:"name"`

	// Socket is the absolute path of the engine's API socket.
	Socket string `yaml:"socket"`
	// Labels select the containers carrying every one of them (a label set to
	// "" matches the key with any value); none selects every container of the
	// engine.
	Labels map[string]string `yaml:"labels"`

	// Namespace holds the pods.
	Namespace string `yaml:"namespace"`
	// Selector is a label selector ("app=checkout,tier!=cache") choosing the
	// pods; empty selects every pod of the namespace. Its syntax is checked
	// by the source, with the Kubernetes parser.
	Selector string `yaml:"selector"`
	// Kubeconfig is the path of a kubeconfig file; empty means the agent runs
	// in the cluster and uses its service account.
	Kubeconfig string `yaml:"kubeconfig"`
}

// SourceName is the source's name in metrics and health: "<kind>/<name>".
func (c ContainerSource) SourceName() string { return c.Kind + "/" + c.Name }

// SocketPath is Socket, or DefaultDockerSocket when unset.
func (c ContainerSource) SocketPath() string {
	if c.Socket == "" {
		return DefaultDockerSocket
	}
	return c.Socket
}

// NamespaceOrDefault is Namespace, or DefaultKubeNamespace when unset.
func (c ContainerSource) NamespaceOrDefault() string {
	if c.Namespace == "" {
		return DefaultKubeNamespace
	}
	return c.Namespace
}

// LabelFilters are Labels as the engine's label filter takes them ("key" or
// "key=value"), sorted so the request is the same every round.
func (c ContainerSource) LabelFilters() []string {
	out := make([]string, 0, len(c.Labels))
	for k, v := range c.Labels {
		if v == "" {
			out = append(out, k)
		} else {
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return out
}

// Validate reports every problem in the entry, each with its field under field
// (such as "runtime.containers[1]").
func (c ContainerSource) Validate(field string) error {
	errs := validSource(field, c.Name, "", "")
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s", field, fmt.Sprintf(format, args...)))
	}
	unused := func(name string, set bool) {
		if set {
			bad("%s: does not apply to %s", name, c.Kind)
		}
	}
	switch c.Kind {
	case ContainersDocker:
		unused("namespace", c.Namespace != "")
		unused("selector", c.Selector != "")
		unused("kubeconfig", c.Kubeconfig != "")
		if c.Socket != "" && (!filepath.IsAbs(c.Socket) || len(c.Socket) > 108) {
			// 108: the longest path a unix socket address holds.
			bad("socket: %q must be an absolute path of at most 108 bytes", clip(c.Socket, 120))
		}
		if len(c.Labels) > MaxContainerLabels {
			bad("labels: %d labels, at most %d", len(c.Labels), MaxContainerLabels)
		}
		for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
			if !dockerLabelKey.MatchString(k) {
				bad("labels: key %q must be 1 to 255 letters, digits, '.', '_', '/' or '-'", clip(k, 120))
			}
			if v := c.Labels[k]; len(v) > MaxAttrLen || strings.ContainsFunc(v, isControl) {
				bad("labels.%s: value must be at most %d bytes without control characters", clip(k, 120), MaxAttrLen)
			}
		}
	case ContainersKubernetes:
		unused("socket", c.Socket != "")
		unused("labels", len(c.Labels) > 0)
		if c.Namespace != "" && !kubeNamespace.MatchString(c.Namespace) {
			bad("namespace: %q must be a DNS label (lower-case letters, digits and '-', at most 63)", clip(c.Namespace, 120))
		}
		if len(c.Selector) > MaxSelectorLen || strings.ContainsFunc(c.Selector, isControl) {
			bad("selector: must be at most %d bytes without control characters", MaxSelectorLen)
		}
		if c.Kubeconfig != "" && !filepath.IsAbs(c.Kubeconfig) {
			bad("kubeconfig: %q must be an absolute path", clip(c.Kubeconfig, 120))
		}
	default:
		bad("kind: %q must be docker or kubernetes", clip(c.Kind, 64))
	}
	return errors.Join(errs...)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
