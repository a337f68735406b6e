package web

import "net/http"

// notificationsPage is not built yet; it answers the "not built" page.
func (s *Server) notificationsPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.fail(w, r, sess, http.StatusNotImplemented, "Not built yet", "This page is being built.")
}
