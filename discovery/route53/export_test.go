package route53

import (
	"time"

	"github.com/rs/zerolog"
)

// SetClock makes p read time from now (a node whose clock is off).
func SetClock(p *Provider, now func() time.Time) { p.now = now }

// OwnersOf reads the values of a TXT set at the managers' name (as the API gives them) as a
// node of cluster does: the other clusters they name, whether they name cluster, and whether
// some value is not an owner record's.
func OwnersOf(cluster string, values []string) (others []string, mine, foreign bool) {
	p := New(Config{Cluster: cluster}, nil, zerolog.Nop())
	texts := make([]string, len(values))
	for i, v := range values {
		texts[i] = txtText(v)
	}
	o := p.ownerOf(texts)
	return o.others, o.mine, o.foreign
}
