package fleet

import (
	"fmt"
	"strconv"
	"strings"
)

// A watched component's health reaches the manager through OpAMP's
// ComponentHealth, whose only free text an agent controls is last_error; its
// status, restart count and last error travel there in one line,
// "<status>; restarts <n>; last error <text>", written by FormatComponentError
// and read back by ParseComponentError, so the manager can name all three in a
// deployment's status reason.
const (
	componentRestarts  = "; restarts "
	componentLastError = "; last error "
)

// FormatComponentError is the last_error an agent reports for a watched
// component (a supervised replica, a container, a pod): its status in a word
// or two (without ";"), how often it restarted, and its last error, which may
// be empty.
func FormatComponentError(status string, restarts int64, lastError string) string {
	s := strings.ReplaceAll(status, ";", ",") + componentRestarts + strconv.FormatInt(max(restarts, 0), 10)
	if lastError != "" {
		s += componentLastError + lastError
	}
	return s
}

// ParseComponentError reads what FormatComponentError wrote; ok is false for
// any other text, which is then a plain last error.
func ParseComponentError(s string) (status string, restarts int64, lastError string, ok bool) {
	status, rest, found := strings.Cut(s, componentRestarts)
	if !found || status == "" || strings.Contains(status, ";") {
		return "", 0, "", false
	}
	n, lastError, _ := strings.Cut(rest, componentLastError)
	restarts, err := strconv.ParseInt(n, 10, 64)
	if err != nil || restarts < 0 || strconv.FormatInt(restarts, 10) != n {
		return "", 0, "", false
	}
	return status, restarts, lastError, true
}

// describe is how a status reason names a component that is down:
// "worker/0 (crash-loop, 4 restarts): exit status 3: db connection refused".
func (c ComponentHealth) describe(name string) string {
	s := name
	switch {
	case c.Restarts > 0 && c.Status != "":
		s += fmt.Sprintf(" (%s, %s)", c.Status, plural(c.Restarts, "restart"))
	case c.Restarts > 0:
		s += " (" + plural(c.Restarts, "restart") + ")"
	case c.Status != "" && c.Watched:
		s += " (" + c.Status + ")"
	}
	if c.LastError != "" {
		s += ": " + c.LastError
	}
	return s
}

func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.FormatInt(n, 10) + " " + word + "s"
}
