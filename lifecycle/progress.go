package lifecycle

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Drain progress: a draining agent writes LabelProgress every ProgressInterval; the leader
// takes the drain over once the value has not changed for ProgressStale on its own clock.
const (
	ProgressInterval = 5 * time.Second
	ProgressStale    = 30 * time.Second
)

// progressValue is LabelProgress's value at t.
func progressValue(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// progressWatch tells whether leaving nodes' drains still move. It times each node's
// LabelProgress value on the watcher's own clock from when it first saw that value, so that
// a draining node's clock being off does not matter. A leaving node without the label (an
// agent of an older version) counts as stale once its leaving label is older than legacy.
type progressWatch struct {
	legacy time.Duration
	seen   map[string]progressSeen // node id -> its value and when first seen
}

type progressSeen struct {
	value string
	at    time.Time
}

// stale reports whether node n's drain has made no progress for ProgressStale, and why.
func (p *progressWatch) stale(n swarm.Node, now time.Time) (bool, string) {
	if p.seen == nil {
		p.seen = map[string]progressSeen{}
	}
	v := n.Labels[swarm.LabelProgress]
	if v == "" && p.legacy > 0 {
		if at, err := time.Parse(time.RFC3339, n.Labels[swarm.LabelLeaving]); err == nil {
			if age := now.Sub(at); age >= p.legacy {
				return true, fmt.Sprintf("leaving since %s (%s) and no drain progress reported", n.Labels[swarm.LabelLeaving], age.Round(time.Second))
			}
			return false, ""
		}
	}
	s, ok := p.seen[n.ID]
	if !ok || s.value != v {
		p.seen[n.ID] = progressSeen{value: v, at: now}
		return false, ""
	}
	if d := now.Sub(s.at); d >= ProgressStale {
		return true, fmt.Sprintf("drain progress %q unchanged for %s", v, d.Round(time.Second))
	}
	return false, ""
}

// restart times node n's current progress value from now again.
func (p *progressWatch) restart(n swarm.Node, now time.Time) {
	if p.seen == nil {
		p.seen = map[string]progressSeen{}
	}
	p.seen[n.ID] = progressSeen{value: n.Labels[swarm.LabelProgress], at: now}
}

// keep forgets the nodes for which keep is false.
func (p *progressWatch) keep(keep func(nodeID string) bool) {
	for id := range p.seen {
		if !keep(id) {
			delete(p.seen, id)
		}
	}
}

// startProgress writes LabelProgress on the node every ProgressInterval (at once when now)
// until r.stopProgress. A failed write is logged, never fatal: the leader takes over only
// once writes have failed for ProgressStale.
func (r *drainRun) startProgress(ctx context.Context, nodeID string, now bool) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	sw, log := r.d.Swarm, r.log
	wg.Go(func() {
		t := time.NewTicker(ProgressInterval)
		defer t.Stop()
		for beat := now; ; beat = true {
			if beat {
				err := sw.SetNodeLabels(ctx, nodeID, map[string]string{swarm.LabelProgress: progressValue(time.Now())})
				if err != nil && ctx.Err() == nil {
					log.Debug().Err(err).Msg("drain progress not recorded")
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	r.stopProgress = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
}
