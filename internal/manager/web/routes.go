package web

import (
	"net/http"

	"github.com/periscope-dev/periscope/internal/auth"
)

// Register mounts every dashboard route on mux. The URLs are part of the
// product's contract: people share them. /metrics itself is Prometheus'.
func (s *Server) Register(mux *http.ServeMux) {
	view := func(h handler) http.Handler { return s.signedIn(auth.RoleViewer, h) }
	operate := func(h handler) http.Handler { return s.signedIn(auth.RoleOperator, h) }

	mux.HandleFunc("GET /assets/{name}", s.assets.serve)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.Handle("POST /logout", view(s.logout))

	// Fleet: counts, adoption and the deployment table.
	mux.Handle("GET /{$}", view(s.fleetPage))
	// Deployment: status, evidence and the pin actions.
	mux.Handle("GET /deployments/{id}", view(s.deploymentPage))
	mux.Handle("POST /deployments/{id}/pin", operate(s.pinAction))
	mux.Handle("POST /deployments/{id}/unpin", operate(s.unpinAction))
	mux.Handle("POST /deployments/{id}/rollback", operate(s.rollbackAction))
	// Remote commands: run one from the deployment's panel, follow an
	// invocation, cancel it while queued.
	mux.Handle("POST /deployments/{id}/commands", operate(s.invokeAction))
	mux.Handle("GET /commands/{id}", view(s.invocationPage))
	mux.Handle("POST /commands/{id}/cancel", operate(s.cancelAction))
	// Telemetry: logs (with live tail), traces, one trace, metric series.
	mux.Handle("GET /logs", view(s.logsPage))
	mux.Handle("GET /logs/tail", view(s.logsTail))
	mux.Handle("GET /traces", view(s.tracesPage))
	mux.Handle("GET /traces/{trace_id}", view(s.tracePage))
	mux.Handle("GET /metrics/{$}", view(s.metricsPage))
	mux.Handle("GET /metrics/{name}", view(s.metricPage))
	// Releases: adoption and health per stack, bulk pin / rollback / unpin.
	mux.Handle("GET /releases", view(s.releasesPage))
	mux.Handle("GET /releases/bulk", view(s.bulkPreview))
	mux.Handle("POST /releases/bulk", operate(s.bulkAction))
	// Rollouts: waves, gates and timeline; resume, abort, skip a deployment.
	mux.Handle("GET /rollouts/{id}", view(s.rolloutPage))
	mux.Handle("POST /rollouts/{id}/resume", operate(s.rolloutAction("resume")))
	mux.Handle("POST /rollouts/{id}/abort", operate(s.rolloutAction("abort")))
	mux.Handle("POST /rollouts/{id}/skip", operate(s.rolloutAction("skip")))
	// The audit log needs the operator role, as GET /api/v1/audit does: it
	// names every token, its role and where sign-ins came from.
	mux.Handle("GET /audit", operate(s.auditPage))
	mux.Handle("GET /notifications", view(s.notificationsPage))
}
