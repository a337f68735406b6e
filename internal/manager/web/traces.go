package web

import "net/http"

// tracesPage is not built yet; it answers the "not built" page.
func (s *Server) tracesPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}

// tracePage is not built yet; it answers the "not built" page.
func (s *Server) tracePage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}
