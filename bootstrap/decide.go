package bootstrap

// Action is one step of the boot loop.
type Action string

// The steps the boot loop can take.
const (
	// ActReconcile: the node already belongs to this cluster; only registration and labels
	// are brought up to date.
	ActReconcile Action = "reconcile"
	// ActLeave: local swarm state is stale (pending, error, another cluster); leave it first.
	ActLeave Action = "leave"
	// ActJoin: a manager answers; join it with this node's role.
	ActJoin Action = "join"
	// ActLock: nobody answers and this node is a manager; try the bootstrap lock.
	ActLock Action = "lock"
	// ActInit: the lock is held by this node and discovery, asked again, is still empty.
	ActInit Action = "init"
	// ActRelease: the lock is held but a manager appeared meanwhile; release and join.
	ActRelease Action = "release-and-join"
	// ActWait: nothing to do yet (worker without managers, lock held elsewhere, token not
	// published); wait and look again.
	ActWait Action = "wait"
	// ActFail: the node cannot proceed without a person (autolocked swarm).
	ActFail Action = "fail"
)

// LockOutcome is what happened when the lock was tried.
type LockOutcome string

// Lock outcomes.
const (
	LockNotTried LockOutcome = ""
	LockAcquired LockOutcome = "acquired"
	LockHeld     LockOutcome = "held-elsewhere"
)

// Observation is everything a decision depends on.
type Observation struct {
	Role  Role
	Local SwarmState
	// Foreign is true when the active local swarm is not this cluster's.
	Foreign bool
	// Managers is true when discovery lists at least one manager that answers.
	Managers bool
	// TokenReady is true when the join token for Role is published.
	TokenReady bool
	// Lock is the outcome of the last lock attempt in this round.
	Lock LockOutcome
}

// Decide is the whole init-or-join policy as a pure function. It is the single place where
// "exactly one swarm" is decided: only a manager that holds the lock and still finds no
// manager may init.
func Decide(o Observation) Action {
	switch o.Local {
	case StateLocked:
		return ActFail
	case StatePending, StateError:
		return ActLeave
	case StateActive:
		if o.Foreign {
			return ActLeave
		}
		return ActReconcile
	}
	// inactive (or unknown, treated as inactive)
	if o.Managers {
		if o.Lock == LockAcquired {
			return ActRelease
		}
		if !o.TokenReady {
			return ActWait
		}
		return ActJoin
	}
	if o.Role != RoleManager {
		return ActWait
	}
	switch o.Lock {
	case LockAcquired:
		return ActInit
	case LockHeld:
		return ActWait
	}
	return ActLock
}
