package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/commands"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store"
)

// The commands panel of the deployment page (what the desired release
// declares, the customer's rule, a form per command, the recent invocations)
// and the invocation page. Both go through the same service as
// POST /api/v1/deployments/{id}/commands, GET and cancel /api/v1/commands/{id}.

// Commands is what the dashboard needs of the remote-command service.
type Commands interface {
	Invoke(ctx context.Context, req commands.Request) ([]store.Invocation, error)
	Get(ctx context.Context, id string) (store.Invocation, error)
	List(ctx context.Context, f store.InvocationFilter) ([]store.Invocation, string, error)
	Cancel(ctx context.Context, actor commands.Actor, id, reason string) (store.Invocation, error)
}

// historyRows is how many of a deployment's invocations its panel lists.
const historyRows = 15

// paramField is the form field prefix of a command's parameters: param.NAME.
const paramField = "param."

// invocationRefresh is how often the invocation page refreshes itself while
// the invocation is not final.
const invocationRefresh = 3 * time.Second

// commandsPanel is the deployment page's commands panel.
type commandsPanel struct {
	// Off is set when this manager runs no remote commands.
	Off bool
	// Release is the desired release whose declarations are listed.
	Release  string
	Commands []commandView
	// Rule says the customer's rule in words; RuleKind is "none" (not
	// reported), "disabled", "allow" or "all".
	Rule, RuleKind string
	// Delivery says when the agent gets an invocation ("at once (push)").
	Delivery string
	History  []invocationRow
	// HistoryErr says why the history could not be read.
	HistoryErr string
}

// commandView is one declared command as the panel shows it.
type commandView struct {
	Name, Description string
	// Handler is its kind in words: "HTTP POST", "exec".
	Handler string
	Timeout time.Duration
	// OutputLimit is in bytes.
	OutputLimit int
	// Refused is why the customer's rule refuses it ("" when it permits it).
	Refused string
	Params  []paramView
}

// paramView is one parameter's form input, drawn from its schema.
type paramView struct {
	Name, Type, Description string
	Required                bool
	// Input is "text", "number" or "select".
	Input string
	// Min, Max and Step are the number input's attributes ("" when unbounded).
	Min, Max, Step string
	MaxLength      int
	Pattern        string
	Options        []paramOption
	// Value is the default, prefilled.
	Value string
}

// paramOption is one choice of a select.
type paramOption struct {
	Value, Label string
	Selected     bool
}

// invocationRow is one line of the history.
type invocationRow struct {
	store.Invocation
	// Status is the exit or HTTP status in words ("exit 0", "HTTP 503").
	Status string
}

// stateClass maps an invocation's state onto the page's one status
// vocabulary, so its badge has the colour of the status it resembles; the
// badge always says the state itself.
func stateClass(s command.State) string {
	switch s {
	case command.StateSucceeded:
		return statusClass(fleet.StatusHealthy)
	case command.StateFailed:
		return statusClass(fleet.StatusFailed)
	case command.StateRefused:
		return statusClass(fleet.StatusUnhealthy)
	case command.StateExpired:
		return statusClass(fleet.StatusStale)
	case command.StateDelivered, command.StateRunning:
		return statusClass(fleet.StatusUpdating)
	}
	return statusClass(fleet.StatusPending) // queued, cancelled
}

// resultStatus says an invocation's exit or HTTP status.
func resultStatus(inv store.Invocation) string {
	switch {
	case inv.ExitCode != nil && inv.Signal != "":
		return "exit " + strconv.Itoa(*inv.ExitCode) + " (" + inv.Signal + ")"
	case inv.ExitCode != nil:
		return "exit " + strconv.Itoa(*inv.ExitCode)
	case inv.HTTPStatus != 0:
		return "HTTP " + strconv.Itoa(inv.HTTPStatus)
	}
	return ""
}

// delivery says when deployment d's agent gets an invocation.
func (s *Server) delivery(d fleet.Deployment) string {
	switch {
	case d.Mode == fleet.ModePush && d.Connected:
		return "at once (push)"
	case d.Mode == fleet.ModePush:
		return "when it reconnects (push, disconnected now)"
	}
	return "at its next check-in (pull, about every " + strconv.Itoa(int(s.checkinEvery/time.Second)) + " s)"
}

// commandsFor fills the panel of deployment d, whose desired release is desired
// with the declarations specs.
func (s *Server) commandsFor(ctx context.Context, d fleet.Deployment, desired string, specs []command.Spec) *commandsPanel {
	if s.cmds == nil {
		return &commandsPanel{Off: true}
	}
	p := &commandsPanel{Release: desired, Delivery: s.delivery(d)}
	switch r := d.CommandRule; {
	case r == nil:
		p.RuleKind, p.Rule = "none", "not reported yet: its agent has not said whether its customer allows commands, so the manager queues them and the agent decides"
	case r.Disabled:
		p.RuleKind, p.Rule = "disabled", "the customer has disabled commands on this deployment"
	case len(r.Allow) > 0:
		p.RuleKind, p.Rule = "allow", "the customer allows only "+strings.Join(r.Allow, ", ")
	default:
		p.RuleKind, p.Rule = "all", "the customer allows every declared command"
	}
	for _, sp := range specs {
		cv := commandView{Name: sp.Name, Description: sp.Description, Timeout: sp.EffectiveTimeout(), OutputLimit: sp.EffectiveOutputLimit()}
		switch {
		case sp.HTTP != nil:
			cv.Handler = "HTTP " + cmp.Or(sp.HTTP.Method, command.DefaultHTTPMethod)
		case sp.Exec != nil:
			cv.Handler = "exec"
		}
		if d.CommandRule != nil {
			if ok, why := d.CommandRule.Permits(sp.Name); !ok {
				cv.Refused = why
			}
		}
		for _, pm := range sp.Params {
			cv.Params = append(cv.Params, paramInput(pm))
		}
		p.Commands = append(p.Commands, cv)
	}
	invs, _, err := s.cmds.List(ctx, store.InvocationFilter{DeploymentID: d.ID, Limit: historyRows})
	if err != nil {
		s.log.Warn("deployment command history", "id", d.ID, "err", err)
		p.HistoryErr = "The command history could not be read; the manager's log has the details."
	}
	for _, inv := range invs {
		p.History = append(p.History, invocationRow{Invocation: inv, Status: resultStatus(inv)})
	}
	return p
}

// paramInput draws a parameter's input from its schema; the browser checks
// what it can, the server checks everything again.
func paramInput(pm command.Param) paramView {
	v := paramView{Name: pm.Name, Type: pm.Type, Description: pm.Description, Required: pm.Required, Input: "text"}
	def := ""
	if pm.Default != nil {
		def = fmt.Sprint(pm.Default)
	}
	num := func(f *float64) string {
		if f == nil {
			return ""
		}
		return strconv.FormatFloat(*f, 'g', -1, 64)
	}
	switch pm.Type {
	case command.TypeString:
		v.MaxLength, v.Pattern, v.Value = pm.MaxLength, pm.Pattern, def
		if v.MaxLength <= 0 {
			v.MaxLength = command.DefaultStringMax
		}
	case command.TypeInteger, command.TypeNumber:
		v.Input, v.Min, v.Max, v.Step, v.Value = "number", num(pm.Min), num(pm.Max), "any", def
		if pm.Type == command.TypeInteger {
			v.Step = "1"
		}
	case command.TypeBoolean:
		v.Input = "select"
		v.Options = choices([]string{"true", "false"}, def, pm.Required)
	case command.TypeEnum:
		v.Input = "select"
		v.Options = choices(pm.Values, def, pm.Required)
	}
	return v
}

// choices are a select's options; an optional parameter without a default
// starts on "not given".
func choices(values []string, def string, required bool) []paramOption {
	var out []paramOption
	if !required && def == "" {
		out = append(out, paramOption{Label: "(not given)", Selected: true})
	}
	for _, x := range values {
		out = append(out, paramOption{Value: x, Label: x, Selected: x == def})
	}
	return out
}

// invokeAction runs the form's command on the deployment through the service
// the REST API uses, as the session's token, and answers 303 to the
// invocation: queued, or refused with the reason (both are audited).
func (s *Server) invokeAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	id := r.PathValue("id")
	if s.cmds == nil {
		s.showDeployment(w, r, sess, http.StatusServiceUnavailable, "This manager runs no remote commands; nothing was run.", nil)
		return
	}
	params := map[string]any{}
	for k, vs := range r.PostForm {
		name, ok := strings.CutPrefix(k, paramField)
		// An empty field is a parameter not given: its default applies, or the
		// schema refuses a required one.
		if !ok || len(vs) == 0 || vs[0] == "" {
			continue
		}
		params[name] = vs[0]
	}
	invs, err := s.cmds.Invoke(r.Context(), commands.Request{Actor: commands.Actor{Name: sess.Token.Name, Role: string(sess.Token.Role)},
		Select: registry.Selector{IDs: []string{id}}, Command: r.PostFormValue("command"), Params: params, Reason: strings.TrimSpace(r.PostFormValue("reason"))})
	switch {
	case err == nil && len(invs) == 1:
		http.Redirect(w, r, "/commands/"+url.PathEscape(invs[0].ID)+"?done=invoke", http.StatusSeeOther)
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, sess, http.StatusNotFound, "No such deployment", fmt.Sprintf("No deployment has the id %q.", id))
	case errors.Is(err, commands.ErrInvalid):
		msg := strings.TrimSuffix(err.Error(), ": "+commands.ErrInvalid.Error())
		s.showDeployment(w, r, sess, http.StatusBadRequest, "Nothing was run: "+msg+".", nil)
	default:
		s.log.Error("dashboard command", "id", id, "err", err, "invocations", len(invs))
		s.showDeployment(w, r, sess, http.StatusInternalServerError, "The command could not be queued; nothing was run. The manager's log has the details.", nil)
	}
}

// invocationData is the invocation page's content.
type invocationData struct {
	Inv store.Invocation
	// Deployment names the deployment (its name, else its id).
	Deployment string
	// Delivery says when its agent gets a queued invocation.
	Delivery string
	Params   []paramValue
	Status   string
	// Shown is the bytes of output kept; Redacted says what redaction removed.
	Shown    int
	Redacted []string
	Final    bool
	// Refresh is the self-refresh interval in seconds while not final.
	Refresh int
	// Done is the action that just happened ("invoke", "cancel").
	Done  string
	Error string
}

// paramValue is one parameter as given.
type paramValue struct{ Name, Value string }

func (s *Server) invocationPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.showInvocation(w, r, sess, http.StatusOK, "")
}

func (s *Server) showInvocation(w http.ResponseWriter, r *http.Request, sess *Session, status int, msg string) {
	id := r.PathValue("id")
	if s.cmds == nil {
		s.fail(w, r, sess, http.StatusServiceUnavailable, "No remote commands", "This manager runs no remote commands.")
		return
	}
	inv, err := s.cmds.Get(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, sess, http.StatusNotFound, "No such invocation",
			fmt.Sprintf("No command invocation has the id %q. A deployment's page lists its recent ones.", id))
		return
	}
	if err != nil {
		s.log.Error("invocation page", "id", id, "err", err)
		s.fail(w, r, sess, http.StatusInternalServerError, "This invocation could not be read", "The manager's log has the details.")
		return
	}
	d := invocationData{Inv: inv, Deployment: inv.DeploymentID, Status: resultStatus(inv), Shown: len(inv.Output), Final: inv.State.Final(),
		Done: r.URL.Query().Get("done"), Error: msg}
	if v, err := s.fleet.Get(inv.DeploymentID); err == nil {
		d.Deployment, d.Delivery = deploymentTitle(v.Deployment), s.delivery(v.Deployment)
	}
	for k, v := range inv.Params {
		d.Params = append(d.Params, paramValue{k, command.String(v)})
	}
	slices.SortFunc(d.Params, func(a, b paramValue) int { return strings.Compare(a.Name, b.Name) })
	for k, n := range inv.Redacted {
		d.Redacted = append(d.Redacted, k+": "+strconv.Itoa(n))
	}
	slices.Sort(d.Redacted)
	if !d.Final {
		d.Refresh = int(invocationRefresh / time.Second)
	}
	s.render(w, r, sess, status, "command", inv.Command+" on "+d.Deployment, d)
}

// cancelAction cancels a queued invocation, as the session's token.
func (s *Server) cancelAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	id := r.PathValue("id")
	if s.cmds == nil {
		s.fail(w, r, sess, http.StatusServiceUnavailable, "No remote commands", "This manager runs no remote commands.")
		return
	}
	inv, err := s.cmds.Cancel(r.Context(), commands.Actor{Name: sess.Token.Name, Role: string(sess.Token.Role)}, id, strings.TrimSpace(r.PostFormValue("reason")))
	switch {
	case err == nil:
		http.Redirect(w, r, "/commands/"+url.PathEscape(id)+"?done=cancel", http.StatusSeeOther)
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, sess, http.StatusNotFound, "No such invocation", fmt.Sprintf("No command invocation has the id %q.", id))
	case errors.Is(err, store.ErrConflict):
		s.showInvocation(w, r, sess, http.StatusConflict, fmt.Sprintf("Not cancelled: the invocation is %s now, and only a queued one can be cancelled (one its agent has may already be running).", inv.State))
	case errors.Is(err, commands.ErrInvalid):
		s.showInvocation(w, r, sess, http.StatusBadRequest, "Not cancelled: say why (the reason goes into the audit log).")
	default:
		s.log.Error("dashboard cancel command", "id", id, "err", err)
		s.showInvocation(w, r, sess, http.StatusInternalServerError, "The cancellation could not be stored. The manager's log has the details.")
	}
}
