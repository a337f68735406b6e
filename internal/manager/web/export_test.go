package web

// SetMaxTails replaces the bound on live log tails, so a test can reach it.
func (s *Server) SetMaxTails(n int) { s.tails = make(chan struct{}, n) }

// Age is the page's rounding of an age in seconds, for a test.
func Age(s float64) string { return age(&s) }
