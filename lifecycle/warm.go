package lifecycle

import "strings"

// Warm pool target lifecycle states (instance metadata autoscaling/target-lifecycle-state).
const (
	StateWarmedStopped    = "Warmed:Stopped"
	StateWarmedRunning    = "Warmed:Running"
	StateWarmedHibernated = "Warmed:Hibernated"
	StateWarmedTerminated = "Warmed:Terminated"
)

// DestinationWarmPool is a lifecycle notice's Destination for an instance launched into, or
// returning to, its group's warm pool.
const DestinationWarmPool = "WarmPool"

// Warmed reports whether an instance whose target lifecycle state is state belongs in its
// group's warm pool: it prepares (Docker, images) and does not join the swarm, or, in the
// swarm, leaves it (a scale-in returning it to the pool). Warmed:Terminated is a pool
// instance's end, not a pool state: false, as for every other state.
func Warmed(state string) bool {
	rest, ok := strings.CutPrefix(state, "Warmed:")
	if !ok {
		return false
	}
	switch rest {
	case "Stopped", "Running", "Hibernated", "Pending", "Pending:Wait", "Pending:Proceed":
		return true
	}
	return false
}
