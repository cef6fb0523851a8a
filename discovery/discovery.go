package discovery

import (
	"context"
	"errors"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// What discovery offers the boot and the leader. Each provider implements what its backend
// can: Route 53 is a Discoverer, Registry, Registrar, Reconciler and Locker (its tokens live
// in discovery/ssmtokens or discovery/smtokens, each a TokenStore); Consul is all of these but
// a Reconciler, and its KV store is the TokenStore; static discovery is a Discoverer, Registry
// and Locker.

// Discoverer finds the managers of the cluster.
type Discoverer interface {
	// Managers lists manager addresses (host:port). An empty list and a nil error mean none
	// is registered yet; an error means discovery itself failed.
	Managers(ctx context.Context) ([]string, error)
}

// Registrar publishes and withdraws this manager in discovery.
type Registrar interface {
	Register(ctx context.Context, m swarm.Member) error
	Deregister(ctx context.Context, m swarm.Member) error
}

// Reconciler is implemented by registrars whose record the leader keeps true (Route 53);
// providers whose registrations expire by themselves (Consul's checks) do not need it.
type Reconciler interface {
	// Reconcile makes the registry list the live managers, leader first.
	Reconcile(ctx context.Context, leader swarm.Member, live []swarm.Member) error
}

// Holder names a node that takes the bootstrap lock: the lock records it so that a node that
// finds the lock expired can check whether its holder is really gone before taking it over.
type Holder struct {
	InstanceID string
	Addr       string // private IPv4, no port; "" when unknown (older lock records)
}

// AliveFunc tells whether a lock holder (or a registered manager) may still be alive, with the
// reason. It errs on the side of alive: only a holder proven gone may be displaced.
type AliveFunc func(ctx context.Context, h Holder) (alive bool, why string)

// Locker hands out the bootstrap lock that guards swarm init. Every provider keeps one
// contract (discovery/locktest runs it against each): a lock is a lease of TTL that its holder
// renews; a lease that is not renewed expires by itself; an expired lock is taken over only
// when alive says its holder is gone; a holder's clock cannot shorten its lease in the eyes of
// others (they time it on their own clocks).
type Locker interface {
	// TryLock takes the lock for me or returns an error wrapping ErrLockHeld (naming the
	// holder and why it counts as alive).
	TryLock(ctx context.Context, me Holder, alive AliveFunc) (Lock, error)
}

// Lock is a held bootstrap lock: a lease that lasts TTL from its last renewal.
type Lock interface {
	// Renew extends the lease by TTL from now. It returns an error wrapping ErrLockLost when
	// the lock is no longer this holder's (expired and taken over, session invalidated); any
	// other error leaves the question open (the lease runs out unless a later renewal works).
	Renew(ctx context.Context) error
	// TTL is the lease's length; 0 means it never expires (static discovery).
	TTL() time.Duration
	// Release gives the lock up; releasing a lock that is no longer ours changes nothing.
	Release(ctx context.Context) error
}

// RegisteringLock is implemented by locks that can register the manager that created the
// swarm and release the lock in one atomic step (Route 53: one change batch), so that the
// swarm becomes findable exactly when its lock is given up. It returns an error wrapping
// ErrLockLost, having changed nothing, when the lock is no longer the holder's.
type RegisteringLock interface {
	ReleaseRegistered(ctx context.Context, m swarm.Member) error
}

// LossNotifier is implemented by locks whose provider tells at once when the lease is lost
// (Consul's blocking queries); the lease keeper watches it besides renewing.
type LossNotifier interface {
	Lost() <-chan struct{}
}

// Registry is implemented by discoverers that read the registered managers from the source
// of truth (Route 53's API, Consul's catalog), past resolver caches, with their instance ids
// where the registry knows them. The lock holder asks it right before init.
type Registry interface {
	Registered(ctx context.Context) ([]swarm.Member, error)
}

// TokenStore keeps the join tokens where only the right role can read them.
type TokenStore interface {
	// PutTokens stores both tokens and the cluster id, replacing what was there.
	PutTokens(ctx context.Context, clusterID string, t swarm.JoinTokens) error
	// Token reads the token for role and the cluster id it belongs to; ErrNoToken if absent.
	Token(ctx context.Context, r swarm.Role) (token, clusterID string, err error)
}

// UnlockKeyStore is implemented by token stores that also keep an autolocked swarm's unlock key
// (every store here does), beside the join tokens and readable by managers only (IAM, Consul
// ACL): a restarted manager reads it to unlock itself.
type UnlockKeyStore interface {
	// PutUnlockKey stores k, replacing what was there; an empty key or cluster id is refused.
	PutUnlockKey(ctx context.Context, k swarm.UnlockKey) error
	// UnlockKey reads the stored key; ErrNoUnlockKey if absent.
	UnlockKey(ctx context.Context) (swarm.UnlockKey, error)
}

// Sentinel errors of discovery and the token stores; the agent maps them to exit codes.
var (
	ErrLockHeld        = errors.New("bootstrap lock held by another node")
	ErrLockLost        = errors.New("bootstrap lock lost")
	ErrNoToken         = errors.New("no join token published yet")
	ErrNoUnlockKey     = errors.New("no unlock key published")
	ErrDiscoveryConfig = errors.New("discovery configuration")
	// ErrOtherCluster marks a registry that belongs to another cluster (a Route 53 managers'
	// record whose owner record names another --cluster): two clusters were given one name.
	// Errors carrying it also carry ErrDiscoveryConfig (boot stops at once); the agent exits
	// with its usage code, since only a change of configuration fixes it.
	ErrOtherCluster = errors.New("managers' record of another cluster")
	// ErrAccessDenied marks a discovery or token-store request refused for lack of permission
	// (IAM, Consul ACL): retrying cannot fix it, so boot stops at once.
	ErrAccessDenied = errors.New("access denied")
)
