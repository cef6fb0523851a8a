package lifecycle

import "fmt"

// Node roles, availability, states and reachability the drain and the reaper look at, as
// Node spells them.
const (
	roleManager       = "manager"
	roleWorker        = "worker"
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
func CheckDemotion(nodes []Node, nodeID string) error {
	managers, reachableOthers, isManager := 0, 0, false
	for _, n := range nodes {
		if n.Role != roleManager {
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
