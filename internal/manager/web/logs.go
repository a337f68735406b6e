package web

import "net/http"

// logsPage is not built yet; it answers the "not built" page.
func (s *Server) logsPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}

// logsTail is not built yet; it answers the "not built" page.
func (s *Server) logsTail(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}
