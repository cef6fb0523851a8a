package route53

import "time"

// SetClock makes p read time from now (a node whose clock is off).
func SetClock(p *Provider, now func() time.Time) { p.now = now }
