package web

import "net/http"

// metricsPage is not built yet; it answers the "not built" page.
func (s *Server) metricsPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}

// metricPage is not built yet; it answers the "not built" page.
func (s *Server) metricPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}
