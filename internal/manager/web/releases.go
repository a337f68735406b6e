package web

import "net/http"

// releasesPage is not built yet; it answers the "not built" page.
func (s *Server) releasesPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}

// bulkPreview is not built yet; it answers the "not built" page.
func (s *Server) bulkPreview(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}

// bulkAction is not built yet; it answers the "not built" page.
func (s *Server) bulkAction(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}
