package web

import "net/http"

// deploymentPage is not built yet; it answers the "not built" page.
func (s *Server) deploymentPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}

// pinAction is not built yet; it answers the "not built" page.
func (s *Server) pinAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}

// unpinAction is not built yet; it answers the "not built" page.
func (s *Server) unpinAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}

// rollbackAction is not built yet; it answers the "not built" page.
func (s *Server) rollbackAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}
