package web

// SetMaxTails replaces the bound on live log tails, so a test can reach it.
func (s *Server) SetMaxTails(n int) { s.tails = make(chan struct{}, n) }
