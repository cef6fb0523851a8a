package scaleout

// The plan of one service: resize (replicas-per-node) and rebalance, and the even shares both
// aim at.

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
