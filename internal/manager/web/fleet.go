package web

import "net/http"

// fleetPage is not built yet; it answers the "not built" page.
func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}
