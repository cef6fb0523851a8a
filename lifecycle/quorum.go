package lifecycle

import (
	"fmt"
	"sort"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Node availability, states and reachability the drain and the reaper look at, as
// swarm.Node spells them.
const (
	availabilityDrain = "drain"
	stateDown         = "down"
	reachable         = "reachable"
)

// KeepsQuorum reports whether demoting one manager out of managers keeps the swarm's raft
// quorum, given how many of the other managers are reachable: the managers that remain
// (managers-1) must still have a reachable majority. The last manager never keeps quorum.
func KeepsQuorum(managers, reachableOthers int) bool {
	remaining := managers - 1
	return remaining > 0 && reachableOthers > remaining/2
}

// CheckDemotion decides whether node nodeID may be demoted, from a manager's node list. It
// returns nil when it may (or when nodeID is not a manager: nothing to demote),
// ErrLastManager when it is the only manager, and ErrNoQuorum when too few of the other
// managers are reachable for the rest to keep quorum without it.
func CheckDemotion(nodes []swarm.Node, nodeID string) error {
	managers, reachableOthers, isManager := 0, 0, false
	for _, n := range nodes {
		if n.Role != swarm.RoleManager {
			continue
		}
		managers++
		switch {
		case n.ID == nodeID:
			isManager = true
		case n.Reachability == reachable:
			reachableOthers++
		}
	}
	switch {
	case !isManager:
		return nil
	case managers == 1:
		return fmt.Errorf("node %s is the only manager: %w", nodeID, ErrLastManager)
	case !KeepsQuorum(managers, reachableOthers):
		return fmt.Errorf("node %s is one of %d managers and only %d of the others are reachable, %d needed: %w",
			nodeID, managers, reachableOthers, (managers-1)/2+1, ErrNoQuorum)
	}
	return nil
}

// turn is what a leaving manager does next (turnOf).
type turn int

const (
	turnGo    turn = iota // it holds the turn and nobody else does: go
	turnClaim             // nobody holds the turn: claim it, then look again
	turnWait              // another manager holds the turn: wait
	turnYield             // it holds the turn, and so does one that comes first: give it back
)

// turnOf decides, for leaving manager self (marked leaving at since; mine: it holds the turn),
// from a manager's node list, whether it may leave the managers now. The turn is claimed
// with a label, then the list is read again: two managers that claim it at once both see the
// other's claim, and the one that comes second (by mark time, then node id: any order will
// do) gives it back, so at most one manager leaves at a time. The leader leaves last: while
// other managers are leaving it waits, and gives back a turn it holds (leaderWaits). Holders
// that are no managers any more (demoted) or whose drain stopped (alive false) do not count.
// It returns the other holders.
func turnOf(nodes []swarm.Node, selfID string, since time.Time, mine bool, alive func(swarm.Node) bool) (turn, []swarm.Node) {
	var holders []swarm.Node
	yield := false
	if waiters := leaderWaits(nodes, selfID, alive); len(waiters) > 0 {
		// The leader leaves last: while another manager is leaving, it neither claims the
		// turn nor keeps it, so that leadership moves once, after the others left.
		if mine {
			return turnYield, waiters
		}
		return turnWait, waiters
	}
	for _, n := range nodes {
		if n.ID == selfID || n.Role != swarm.RoleManager || n.Labels[swarm.LabelLeaving] == "" || n.Labels[swarm.LabelTurn] == "" || !alive(n) {
			continue
		}
		holders = append(holders, n)
		if comesFirst(n, selfID, since) {
			yield = true
		}
	}
	sort.Slice(holders, func(i, j int) bool { return holders[i].ID < holders[j].ID })
	switch {
	case !mine && len(holders) == 0:
		return turnClaim, nil
	case !mine:
		return turnWait, holders
	case len(holders) == 0:
		return turnGo, nil
	case yield:
		return turnYield, holders
	}
	return turnWait, holders
}

// leaderWaits returns, when selfID is the leader, the other managers that are leaving (and
// whose drain runs, alive): the leader leaves after them. Otherwise it returns nil.
func leaderWaits(nodes []swarm.Node, selfID string, alive func(swarm.Node) bool) []swarm.Node {
	var others []swarm.Node
	leader := false
	for _, n := range nodes {
		switch {
		case n.ID == selfID:
			leader = n.Leader
		case n.Role == swarm.RoleManager && n.Labels[swarm.LabelLeaving] != "" && alive(n):
			others = append(others, n)
		}
	}
	if !leader {
		return nil
	}
	sort.Slice(others, func(i, j int) bool { return others[i].ID < others[j].ID })
	return others
}

// comesFirst reports whether leaving manager n comes before manager selfID, marked at since:
// an earlier mark (an unreadable one counts as earliest), at the same second a smaller id.
func comesFirst(n swarm.Node, selfID string, since time.Time) bool {
	at, err := time.Parse(time.RFC3339, n.Labels[swarm.LabelLeaving])
	if err != nil {
		at = time.Time{}
	}
	self := since.Truncate(time.Second)
	return at.Before(self) || at.Equal(self) && n.ID < selfID
}
