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
	"maps"
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

// resize plans the replicas of a replicas-per-node service. It reports whether the service's
// replicas are not at their target (a resize made now or waiting), and whether it waits to
// shrink.
func (p *Plan) resize(s Snapshot, o Options, svc swarm.Service, opt OptIn, pl placement, counted map[string]bool) (off, waitsToShrink bool) {
	nodes := 0
	var gone []string
	for _, n := range s.Nodes {
		if pl.allows(n) {
			nodes++
			counted[n.ID] = true
		} else if leaving(n) && n.Labels[swarm.LabelCounted] != "" {
			gone = append(gone, n.ID)
		}
	}
	target := opt.PerNode * uint64(nodes)
	why := fmt.Sprintf("%d per node x %d nodes", opt.PerNode, nodes)
	switch {
	case target < opt.Min:
		target, why = opt.Min, why+fmt.Sprintf(", raised to the minimum %d", opt.Min)
	case opt.Max > 0 && target > opt.Max:
		target, why = opt.Max, why+fmt.Sprintf(", capped at the maximum %d", opt.Max)
	}
	if target == svc.Replicas {
		return false, false
	}
	what := fmt.Sprintf("%d -> %d replicas (%s)", svc.Replicas, target, why)
	last, resized := unixLabel(svc.Labels, swarm.LabelResized)
	since := last
	if !resized {
		since = svc.CreatedAt
	}
	until, because := time.Time{}, ""
	if resized && s.Now.Before(last.Add(o.ResizeInterval)) {
		until, because = last.Add(o.ResizeInterval), fmt.Sprintf("rate limit: resized at %s, at most once per %s", last.UTC().Format(time.RFC3339), o.ResizeInterval)
	}
	if target > svc.Replicas {
		if at := settled(joinsSince(s.Nodes, pl, since), o); s.Now.Before(at) && at.After(until) {
			until, because = at, fmt.Sprintf("cooldown: nodes joined until %s", at.Add(-o.Cooldown).UTC().Format(time.RFC3339))
		}
	}
	if !until.IsZero() {
		p.Waiting = append(p.Waiting, Waiting{Kind: KindResize, Service: svc.Name, What: what, Until: until, Because: because})
		return true, target < svc.Replicas
	}
	if len(gone) > 0 && target < svc.Replicas {
		why += ", without leaving node " + strings.Join(gone, ", ")
	}
	p.Resizes = append(p.Resizes, Resize{Service: svc, From: svc.Replicas, To: target, Nodes: nodes, Why: why})
	return true, false
}

// rebalance plans a rebalance of svc (see Compute).
func (p *Plan) rebalance(s Snapshot, o Options, svc swarm.Service, pl placement, resizing bool, draining, rolling []string) {
	since, ok := unixLabel(svc.Labels, swarm.LabelRebalanced)
	if !ok {
		since = svc.CreatedAt
	}
	var eligible []swarm.Node
	joined := false
	for _, n := range s.Nodes {
		if n.State == "ready" && pl.allows(n) {
			eligible = append(eligible, n)
			joined = joined || n.CreatedAt.After(since)
		}
	}
	if !joined || len(eligible) < 2 || resizing {
		return
	}
	tasks, ok := s.Tasks[svc.ID]
	if !ok {
		p.NeedTasks = append(p.NeedTasks, svc.ID)
		return
	}
	count := map[string]int{}
	for _, n := range eligible {
		count[n.ID] = 0
	}
	for _, t := range tasks {
		if t.DesiredState != "running" {
			continue
		}
		if t.NodeID == "" {
			return // the scheduler is still placing tasks (or cannot): look again later
		}
		if _, ok := count[t.NodeID]; ok {
			count[t.NodeID]++
		}
	}
	lo, hi := shares(eligible, svc.Spread, int(svc.Replicas), int(svc.MaxPerNode))
	over := false
	for id, c := range count {
		over = over || c > hi[id]
	}
	var under []string
	moves, surplus := 0, 0
	for _, n := range eligible {
		c := count[n.ID]
		moves += max(0, lo[n.ID]-c)
		surplus += max(0, c-hi[n.ID])
		if n.CreatedAt.After(since) && (c < lo[n.ID] || over && c < hi[n.ID]) {
			under = append(under, n.ID)
		}
	}
	if len(under) == 0 {
		return
	}
	moves = max(moves, surplus, 1)
	what := fmt.Sprintf("spread %d tasks over %d nodes: %s now, at least %d to move (update parallelism %d, %s)",
		svc.Replicas, len(eligible), distribution(eligible, count), moves, svc.Update.Parallelism, svc.Update.Order)
	switch {
	case svc.Update.Parallelism == 0 && svc.Update.Order != "start-first":
		p.Problems = append(p.Problems, fmt.Sprintf("service %s: update parallelism 0 with stop-first would stop every task at once: not rebalanced (%s)", svc.Name, what))
		return
	case svc.UpdateState == "paused" || svc.UpdateState == "rollback_paused":
		p.Problems = append(p.Problems, fmt.Sprintf("service %s: its last update is %s: not rebalanced until it is updated again (%s)", svc.Name, svc.UpdateState, what))
		return
	case len(draining) > 0:
		p.Waiting = append(p.Waiting, Waiting{Kind: KindRebalance, Service: svc.Name, What: what,
			Because: "drain in progress: node " + strings.Join(draining, ", ") + " leaving"})
		return
	case len(rolling) > 0:
		p.Waiting = append(p.Waiting, Waiting{Kind: KindRebalance, Service: svc.Name, What: what,
			Because: "rebalance or update in progress: service " + strings.Join(rolling, ", ")})
		return
	}
	if at := settled(joinsSince(s.Nodes, pl, since), o); s.Now.Before(at) {
		p.Waiting = append(p.Waiting, Waiting{Kind: KindRebalance, Service: svc.Name, What: what, Until: at,
			Because: fmt.Sprintf("cooldown: nodes joined until %s", at.Add(-o.Cooldown).UTC().Format(time.RFC3339))})
		return
	}
	// A node that joined but is not ready yet would be left out of the rebalance for good (it
	// joined before it): wait for it, a while.
	for _, n := range s.Nodes {
		if until := n.CreatedAt.Add(MaxDelayFactor * o.Cooldown); n.CreatedAt.After(since) && n.State != "ready" && pl.allows(n) && s.Now.Before(until) {
			p.Waiting = append(p.Waiting, Waiting{Kind: KindRebalance, Service: svc.Name, What: what, Until: until,
				Because: fmt.Sprintf("node %s joined at %s and is %s", n.ID, n.CreatedAt.UTC().Format(time.RFC3339), n.State)})
			return
		}
	}
	p.Rebalances = append(p.Rebalances, Rebalance{Service: svc, Before: count, Joined: under, Moves: moves, Nodes: len(eligible)})
}

// distribution shows tasks per node, nodes by hostname (else id): "a:2 b:2 c:0".
func distribution(nodes []swarm.Node, count map[string]int) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s:%d", cmp.Or(n.Hostname, n.ID), count[n.ID]))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// shares returns, for each of nodes, the fewest (lo) and the most (hi) of n tasks it holds in
// an even spread: split evenly over the values of each spread descriptor in turn (a node
// without the label has the empty value; a descriptor that is not node.labels.* or
// engine.labels.* is ignored, as the scheduler does), then evenly over the nodes of a group,
// each node at most maxPer (0: no maximum).
func shares(nodes []swarm.Node, spread []string, n, maxPer int) (lo, hi map[string]int) {
	lo, hi = map[string]int{}, map[string]int{}
	var split func(nodes []swarm.Node, spread []string, nLo, nHi int)
	split = func(nodes []swarm.Node, spread []string, nLo, nHi int) {
		for len(spread) > 0 {
			if _, ok := labelOf(spread[0], swarm.Node{}); ok {
				break
			}
			spread = spread[1:]
		}
		if len(spread) == 0 {
			k := len(nodes)
			for _, nd := range nodes {
				lo[nd.ID], hi[nd.ID] = nLo/k, (nHi+k-1)/k
				if maxPer > 0 {
					lo[nd.ID], hi[nd.ID] = min(lo[nd.ID], maxPer), min(hi[nd.ID], maxPer)
				}
			}
			return
		}
		groups := map[string][]swarm.Node{}
		for _, nd := range nodes {
			v, _ := labelOf(spread[0], nd)
			groups[v] = append(groups[v], nd)
		}
		k := len(groups)
		for _, v := range slices.Sorted(maps.Keys(groups)) {
			split(groups[v], spread[1:], nLo/k, (nHi+k-1)/k)
		}
	}
	if len(nodes) > 0 {
		split(nodes, spread, n, n)
	}
	return lo, hi
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
