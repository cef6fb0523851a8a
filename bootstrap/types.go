// Package bootstrap decides whether a node creates the swarm, joins it or is already part of it,
// and carries that decision out through small interfaces that the Docker adapter and the
// discovery providers satisfy.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
)

// Role is the swarm role a node boots into.
type Role string

// The two roles.
const (
	RoleManager Role = "manager"
	RoleWorker  Role = "worker"
)

// ParseRole validates a role given by an operator.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RoleManager, RoleWorker:
		return Role(s), nil
	}
	return "", fmt.Errorf("role %q: must be manager or worker", s)
}

// SwarmState is the engine's local swarm state (docker info .Swarm.LocalNodeState).
type SwarmState string

// Local node states as the engine reports them.
const (
	StateInactive SwarmState = "inactive"
	StatePending  SwarmState = "pending"
	StateActive   SwarmState = "active"
	StateError    SwarmState = "error"
	StateLocked   SwarmState = "locked"
)

// LocalNode is what the engine says about this node's swarm membership.
type LocalNode struct {
	State     SwarmState
	NodeID    string
	ClusterID string // only known on managers
	IsManager bool   // ControlAvailable
	NodeAddr  string
	// RemoteManagers are the manager addresses (ip:port) the engine knows.
	RemoteManagers []string
	Error          string
}

// JoinTokens are the swarm's join secrets. String never shows them.
type JoinTokens struct {
	Worker  string
	Manager string
}

// String redacts the tokens so that a stray %v cannot leak them.
func (JoinTokens) String() string { return "JoinTokens{<redacted>}" }

// For returns the token for role.
func (t JoinTokens) For(r Role) string {
	if r == RoleManager {
		return t.Manager
	}
	return t.Worker
}

// InitRequest asks the engine to create a new swarm.
type InitRequest struct {
	AdvertiseAddr string // ip or ip:port
	ListenAddr    string // defaults to 0.0.0.0:2377
}

// JoinRequest asks the engine to join an existing swarm.
type JoinRequest struct {
	RemoteAddrs   []string
	Token         string
	AdvertiseAddr string
	ListenAddr    string
}

// Engine is the narrow view of the Docker engine that booting needs.
type Engine interface {
	// Local reads the node's swarm state.
	Local(ctx context.Context) (LocalNode, error)
	// Init creates a new swarm with this node as its first manager and returns its node id.
	Init(ctx context.Context, req InitRequest) (string, error)
	// Join joins an existing swarm and returns once the node is active (or fails).
	Join(ctx context.Context, req JoinRequest) error
	// Leave leaves the swarm; force is needed for managers and broken state.
	Leave(ctx context.Context, force bool) error
	// JoinTokens reads the tokens and the cluster id; managers only.
	JoinTokens(ctx context.Context) (JoinTokens, string, error)
	// SetNodeLabels merges labels into a node's spec labels; managers only.
	SetNodeLabels(ctx context.Context, nodeID string, labels map[string]string) error
}

// Member is a manager as discovery registers it.
type Member struct {
	InstanceID string
	Addr       string // private IPv4, no port
	Port       int    // swarm port, 2377
}

// Discoverer finds the managers of the cluster.
type Discoverer interface {
	// Managers lists manager addresses (host:port). An empty list and a nil error mean none
	// is registered yet; an error means discovery itself failed.
	Managers(ctx context.Context) ([]string, error)
}

// Registrar publishes and withdraws this manager in discovery.
type Registrar interface {
	Register(ctx context.Context, m Member) error
	Deregister(ctx context.Context, m Member) error
}

// Locker hands out the bootstrap lock that guards swarm init.
type Locker interface {
	// TryLock takes the lock for owner or returns ErrLockHeld. The lock expires by itself if
	// its holder dies.
	TryLock(ctx context.Context, owner string) (Lock, error)
}

// Lock is a held bootstrap lock.
type Lock interface {
	Release(ctx context.Context) error
}

// TokenStore keeps the join tokens where only the right role can read them.
type TokenStore interface {
	// PutTokens stores both tokens and the cluster id, replacing what was there.
	PutTokens(ctx context.Context, clusterID string, t JoinTokens) error
	// Token reads the token for role and the cluster id it belongs to; ErrNoToken if absent.
	Token(ctx context.Context, r Role) (token, clusterID string, err error)
}

// Sentinel errors; the agent maps them to exit codes.
var (
	ErrLockHeld        = errors.New("bootstrap lock held by another node")
	ErrNoToken         = errors.New("no join token published yet")
	ErrNoManager       = errors.New("no manager found")
	ErrSwarmLocked     = errors.New("swarm is locked (autolock): unlock it with the unlock key")
	ErrWaitElapsed     = errors.New("wait elapsed")
	ErrEngineAPI       = errors.New("docker engine")
	ErrDiscoveryConfig = errors.New("discovery configuration")
	// ErrAccessDenied marks a discovery or token-store request refused for lack of permission
	// (IAM, Consul ACL): retrying cannot fix it, so boot stops at once.
	ErrAccessDenied = errors.New("access denied")
)
