package bootstrap

import (
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Action is one step of the boot loop.
type Action string

// The steps the boot loop can take.
const (
	// ActReconcile: the node already belongs to this cluster; only registration and labels
	// are brought up to date.
	ActReconcile Action = "reconcile"
	// ActLeave: local swarm state is proven stale (another cluster's swarm, as its managers'
	// certificates show; a node certificate that expired, for a worker, or for a manager while
	// managers of its swarm answer; or a join that never got a node identity); leave it first.
	ActLeave Action = "leave"
	// ActSettle: the engine has a swarm identity and reports pending or error (a manager
	// waiting for its quorum, a node reconnecting): wait for it to settle, never force-leave.
	ActSettle Action = "settle"
	// ActHold: the node is active in a swarm that managers answer for, but nothing proves
	// whether it is this cluster's: leave it alone, report, and look again.
	ActHold Action = "hold"
	// ActJoin: a manager answers; join it with this node's role.
	ActJoin Action = "join"
	// ActLock: nobody answers and this node is a manager; try the bootstrap lock.
	ActLock Action = "lock"
	// ActInit: the lock is held by this node and the registry, read again, has no manager
	// that may still be alive.
	ActInit Action = "init"
	// ActRelease: the lock is held but a manager exists (it answers, or it is registered and
	// not proven gone); release the lock and join it or wait for it.
	ActRelease Action = "release-and-join"
	// ActWait: nothing to do yet (worker without managers, lock held elsewhere, token not
	// published, registered managers that do not answer); wait and look again.
	ActWait Action = "wait"
	// ActFail: the node cannot proceed without a person (autolocked swarm, and no unlock key
	// of its swarm in the token store): boot waits for the unlock until --wait, touching
	// nothing, then fails with ErrSwarmLocked.
	ActFail Action = "fail"
	// ActUnlock: the node is autolocked and the token store holds its swarm's unlock key:
	// unlock it (through the engine's API), touching nothing else.
	ActUnlock Action = "unlock"
)

// LockOutcome is what happened when the lock was tried.
type LockOutcome string

// Lock outcomes.
const (
	LockNotTried LockOutcome = ""
	LockAcquired LockOutcome = "acquired"
	LockHeld     LockOutcome = "held-elsewhere"
)

// Membership is what the managers' own certificates say about the swarm this node is in.
type Membership string

// Memberships.
const (
	// MemberUnknown: no manager of the cluster answers, so there is nothing to compare with.
	MemberUnknown Membership = ""
	// MemberSame: a manager that answers belongs to the node's swarm.
	MemberSame Membership = "same"
	// MemberForeign: managers answer, and they show a cluster id other than the node's.
	MemberForeign Membership = "foreign"
	// MemberUnproven: managers answer, but the node's own cluster id is unknown.
	MemberUnproven Membership = "unproven"
)

// Observation is everything a decision depends on.
type Observation struct {
	Role  swarm.Role
	Local SwarmState
	// HasNodeID: the engine has a swarm identity (certificates), hence possibly Raft state.
	HasNodeID bool
	// Unsettled is how long this boot has seen the local state pending or error.
	Unsettled time.Duration
	// Settle is how long a pending or error state WITHOUT a node identity (a join that never
	// completed) may last before it counts as stuck.
	Settle time.Duration
	// CertExpired: the node's own swarm certificate has expired (the node was off longer
	// than its validity). Nobody renews it: the swarm refuses the node for good, so its state
	// is stale for the swarm, and only its Raft copy (CertManager) may still matter.
	CertExpired bool
	// CertManager: that certificate is a manager's (the node may hold a copy of Raft).
	CertManager bool
	// Membership compares the node's swarm with the managers' (active, pending, error).
	Membership Membership
	// Managers is true when discovery lists at least one manager that answers.
	Managers bool
	// Registered is true when discovery lists managers (other than this node) that do not
	// answer and are not proven gone: a partition, a security group, a swarm without quorum.
	Registered bool
	// TokenReady is true when the join token for Role is published.
	TokenReady bool
	// Lock is the outcome of the last lock attempt in this round.
	Lock LockOutcome
	// UnlockKey is true when the node is locked and the token store holds the unlock key of
	// the node's own swarm (as its certificate names it).
	UnlockKey bool
}

// Decide is the whole init-or-join policy as a pure function. It is the single place where
// "exactly one swarm" and "never destroy what is not proven stale" are decided: only a
// manager that holds the lock and finds no manager that may be alive may init, and only state
// proven stale is left.
func Decide(o Observation) Action {
	switch o.Local {
	case StateLocked:
		// A locked node has a node identity and Raft state: it is unlocked or left alone.
		if o.UnlockKey {
			return ActUnlock
		}
		return ActFail
	case StatePending, StateError:
		switch {
		case o.Membership == MemberForeign:
			return ActLeave
		case o.CertExpired && (!o.CertManager || o.Membership == MemberSame):
			// A worker's expired identity holds nothing; a manager's Raft copy is safe to
			// drop only while managers of its own swarm answer (they hold the state).
			return ActLeave
		case !o.HasNodeID && o.Unsettled >= o.Settle:
			return ActLeave
		}
		return ActSettle
	case StateActive:
		switch o.Membership {
		case MemberForeign:
			return ActLeave
		case MemberUnproven:
			return ActHold
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
	if o.Registered {
		if o.Lock == LockAcquired {
			return ActRelease
		}
		return ActWait
	}
	if o.Role != swarm.RoleManager {
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
