package lifecycle

import (
	"fmt"
	"maps"
	"slices"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// InSwarm reports whether node n, as the managers see it, is really in the swarm with role:
// ready, labelled with its instance id and with every label of want (the node labels its
// engine labels call for), and for a manager a reachable Raft member of a swarm that has a
// leader. When it is not, why says what is missing. It is the condition for completing a
// launch lifecycle action with CONTINUE.
func InSwarm(n swarm.Node, role swarm.Role, instanceID string, want map[string]string, leader bool) (ok bool, why string) {
	switch {
	case n.Role != role:
		return false, fmt.Sprintf("node %s is a %s, not a %s", n.ID, n.Role, role)
	case n.State != "ready":
		return false, fmt.Sprintf("node %s is %s, not ready", n.ID, orUnknown(n.State))
	case n.Labels[swarm.LabelInstanceID] != instanceID:
		return false, fmt.Sprintf("node %s is not labelled %s=%s yet", n.ID, swarm.LabelInstanceID, instanceID)
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if n.Labels[k] != want[k] {
			return false, fmt.Sprintf("node %s is not labelled %s=%s yet", n.ID, k, want[k])
		}
	}
	if role == swarm.RoleManager {
		switch {
		case n.Reachability != "reachable":
			return false, fmt.Sprintf("manager %s is %s as a Raft member, not reachable", n.ID, orUnknown(n.Reachability))
		case !leader:
			return false, "the swarm has no leader"
		}
	}
	return true, ""
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
