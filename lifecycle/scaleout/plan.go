// Package scaleout is the leader's part in a scale-out that helps: it spreads the tasks of
// services labelled swarm-agent.rebalance=true onto nodes that joined, with a rolling update
// under each service's own update config, and keeps services labelled
// swarm-agent.replicas-per-node=N at N replicas per node they may run on, growing them after
// joins and shrinking them before a leaving node's drain completes.
//
// What to do is decided by Compute, a pure function of a Snapshot (nodes, services, tasks, the
// time) and Options; everything it needs to remember lives in the swarm itself, as labels on
// the services it changed (when it last rebalanced or resized each) and as the nodes' creation
// times, so that a new leader decides as the old one would have. Scaler runs a leader pass:
// it reads the snapshot, computes the plan, carries it out and counts what it did.
package scaleout

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Options tune the plan.
type Options struct {
	// Cooldown is how long after the last of a service's nodes joined the leader waits before
	// it rebalances or grows the service: joins that come together (a scale-out of ten
	// nodes) make one rebalance and one resize. A steady trickle of joins waits at most
	// MaxDelayFactor cooldowns from the first of them.
	Cooldown time.Duration
	// ResizeInterval is the least time between two changes of one service's replicas. A
	// leaving node's drain waits for its shrink (at most 2 minutes): keep it well below.
	ResizeInterval time.Duration
}

// MaxDelayFactor bounds the wait for joins to stop: a join older than this many cooldowns
// is served even while others keep coming.
const MaxDelayFactor = 5

// Defaults of Options.
const (
	DefaultCooldown       = time.Minute
	DefaultResizeInterval = 30 * time.Second
)

func (o Options) withDefaults() Options {
	o.Cooldown = cmp.Or(max(o.Cooldown, 0), DefaultCooldown)
	o.ResizeInterval = cmp.Or(max(o.ResizeInterval, 0), DefaultResizeInterval)
	return o
}

// Snapshot is the swarm at one moment, as the leader reads it.
type Snapshot struct {
	Now      time.Time
	Nodes    []swarm.Node
	Services []swarm.Service
	// Tasks are the tasks meant to run (desired state running) of the services whose
	// placement the plan must look at, by service id. A service the plan needs and does not
	// find here is named in Plan.NeedTasks instead of being planned.
	Tasks map[string][]swarm.Task
}

// Plan is what the leader does now, and what waits.
type Plan struct {
	// Resizes to make now, shrinking ones first.
	Resizes []Resize
	// Rebalances to start now, together: one rebalance of the services that need it.
	Rebalances []Rebalance
	// Count are nodes to label swarm-agent.replicas-counted (some replicas-per-node service
	// counts them); Release are leaving nodes whose label may be cleared: no service that
	// counted them still waits to shrink (after the Resizes above are made).
	Count, Release []string
	// Waiting says what the leader would do, once what it waits for passes.
	Waiting []Waiting
	// Problems are services left alone, and why (labels not of their shape, a global service).
	Problems []string
	// NeedTasks are the services whose tasks the plan needs and the snapshot lacks.
	NeedTasks []string
}

// Resize changes a replicas-per-node service's replicas.
type Resize struct {
	Service  swarm.Service
	From, To uint64
	// Nodes is how many nodes the service counts; Why says how To was reached.
	Nodes int
	Why   string
}

// Rebalance rolls a labelled service out again so that its tasks spread onto nodes that
// joined since its last rebalance.
type Rebalance struct {
	Service swarm.Service
	// Before is the service's running tasks per eligible node (node id -> count).
	Before map[string]int
	// Joined are the nodes that joined since the last rebalance and run fewer tasks than
	// their share; Moves is how many tasks at least must change node.
	Joined []string
	Moves  int
	// Nodes is the number of eligible nodes.
	Nodes int
}

// Waiting is something the leader will do once a wait ends.
type Waiting struct {
	Kind    string // "rebalance" or "resize"
	Service string // its name
	What    string // e.g. "6 -> 10 replicas"
	Until   time.Time
	// Because says what it waits for: a cooldown, the rate limit, a drain, a rebalance.
	Because string
}

// Event kinds (Waiting.Kind and Event.Kind).
const (
	KindRebalance = "rebalance"
	KindResize    = "resize"
)

// updating reports whether an update of the service is rolling out (its own or a rebalance).
func updating(s swarm.Service) bool {
	return s.UpdateState == "updating" || s.UpdateState == "rollback_started"
}

// leaving reports whether the node is on its way out (its drain marked it).
func leaving(n swarm.Node) bool { return n.Labels[swarm.LabelLeaving] != "" }

// placement is where a service may run.
type placement struct {
	constraints []constraint
	platforms   []string
}

func (p placement) allows(n swarm.Node) bool {
	if n.Availability != "active" || leaving(n) || !platformMatches(p.platforms, n) {
		return false
	}
	for _, c := range p.constraints {
		if !c.matches(n) {
			return false
		}
	}
	return true
}

// Compute decides what the leader does with the labelled services of s.
//
// A replicas-per-node service wants N per node it counts: every node that is active, not
// leaving and allowed by its placement constraints and platforms, in any state (a node that
// is down still counts until it is removed or marked leaving, so that a network blip or a
// leader election never shrinks a service), clamped to its min and max. It shrinks at once,
// and grows once the cooldown after its nodes' joins has passed; either at most once per
// ResizeInterval.
//
// A rebalance-labelled service is rolled out again when a node that joined after its last
// rebalance (or its creation) is ready, eligible (active, not leaving, allowed) and runs
// fewer of its tasks than its share: less than the even share it would get, or not its full
// share while another node runs more than its own (shares follow the service's spread
// preferences and its maximum per node). It waits for the cooldown after those joins, for no
// node to be draining and for no labelled service to be updating; it is skipped while its
// tasks are being placed, while it is being resized, and when its own update config would
// stop every task at once (parallelism 0 with stop-first). A resize never triggers a
// rebalance: new replicas go to the emptiest nodes by themselves.
func Compute(s Snapshot, o Options) Plan {
	o = o.withDefaults()
	var p Plan
	var draining []string
	for _, n := range s.Nodes {
		if leaving(n) && n.State != "down" {
			draining = append(draining, n.ID)
		}
	}
	var rolling []string
	services := slices.Clone(s.Services)
	sort.Slice(services, func(i, j int) bool { return services[i].Name < services[j].Name })
	for _, svc := range services {
		if labelled(svc.Labels) && updating(svc) {
			rolling = append(rolling, svc.Name)
		}
	}
	counted := map[string]bool{} // node id -> some replicas-per-node service counts it
	shrinkWaits := false         // some replicas-per-node service waits to shrink
	for _, svc := range services {
		if !labelled(svc.Labels) {
			continue
		}
		opt, err := ParseLabels(svc.Labels)
		if err != nil {
			p.Problems = append(p.Problems, fmt.Sprintf("service %s: %v: left alone", svc.Name, err))
			continue
		}
		if !opt.Any() {
			continue
		}
		if !svc.Replicated {
			p.Problems = append(p.Problems, fmt.Sprintf("service %s: not a replicated service: left alone", svc.Name))
			continue
		}
		cs, err := parseConstraints(svc.Constraints)
		if err != nil {
			p.Problems = append(p.Problems, fmt.Sprintf("service %s: %v: left alone", svc.Name, err))
			continue
		}
		pl := placement{constraints: cs, platforms: svc.Platforms}
		resizing := false
		if opt.PerNode > 0 {
			var waitsToShrink bool
			resizing, waitsToShrink = p.resize(s, o, svc, opt, pl, counted)
			shrinkWaits = shrinkWaits || waitsToShrink
		}
		if opt.Rebalance {
			p.rebalance(s, o, svc, pl, resizing, draining, rolling)
		}
	}
	for _, n := range s.Nodes {
		switch {
		case counted[n.ID] && n.Labels[swarm.LabelCounted] == "":
			p.Count = append(p.Count, n.ID)
		case leaving(n) && n.Labels[swarm.LabelCounted] != "" && !shrinkWaits:
			p.Release = append(p.Release, n.ID)
		}
	}
	// Shrink first: a leaving node's drain waits for it.
	grows := func(r Resize) int {
		if r.To > r.From {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(p.Resizes, func(a, b Resize) int { return grows(a) - grows(b) })
	return p
}

// joinsSince are the creation times of the nodes placement allows that joined after t, first
// first.
func joinsSince(nodes []swarm.Node, pl placement, t time.Time) []time.Time {
	var out []time.Time
	for _, n := range nodes {
		if n.CreatedAt.After(t) && pl.allows(n) {
			out = append(out, n.CreatedAt)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// settled returns when the last burst of joins (sorted; a burst ends where no node joined for
// a cooldown) has settled: Cooldown after its last join, or MaxDelayFactor cooldowns after
// its first, whichever comes first; zero without joins.
func settled(joins []time.Time, o Options) time.Time {
	if len(joins) == 0 {
		return time.Time{}
	}
	first := joins[0]
	for i := 1; i < len(joins); i++ {
		if joins[i].Sub(joins[i-1]) >= o.Cooldown {
			first = joins[i]
		}
	}
	last := joins[len(joins)-1].Add(o.Cooldown)
	if capped := first.Add(MaxDelayFactor * o.Cooldown); capped.Before(last) {
		return capped
	}
	return last
}

// Lines says the plan in words, one line each: what is done now, what waits and why, and
// the problems.
func (p Plan) Lines(now time.Time) []string {
	var out []string
	for _, r := range p.Resizes {
		out = append(out, fmt.Sprintf("resize %s now: %d -> %d replicas (%s)", r.Service.Name, r.From, r.To, r.Why))
	}
	for _, r := range p.Rebalances {
		out = append(out, fmt.Sprintf("rebalance %s now: %d tasks over %d nodes, onto joined node %s, at least %d to move (update parallelism %d, %s, delay %s)",
			r.Service.Name, r.Service.Replicas, r.Nodes, strings.Join(r.Joined, ", "), r.Moves, r.Service.Update.Parallelism, r.Service.Update.Order, r.Service.Update.Delay))
	}
	for _, w := range p.Waiting {
		when := "once that ends"
		if !w.Until.IsZero() {
			when = fmt.Sprintf("at %s (in %s)", w.Until.UTC().Format(time.RFC3339), w.Until.Sub(now).Round(time.Second))
		}
		out = append(out, fmt.Sprintf("%s %s %s: %s; waiting for %s", w.Kind, w.Service, when, w.What, w.Because))
	}
	if len(p.Count) > 0 {
		out = append(out, "label counted: node "+strings.Join(p.Count, ", "))
	}
	if len(p.Release) > 0 {
		out = append(out, "release leaving node "+strings.Join(p.Release, ", ")+" (its drain may complete)")
	}
	out = append(out, p.Problems...)
	return out
}
