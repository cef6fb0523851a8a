// Package bootstrap decides whether a node creates the swarm, joins it or is already part of it,
// and carries that decision out through small interfaces that the Docker adapter and the
// discovery providers satisfy.
package bootstrap

import (
	"context"
	"errors"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

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
	ClusterID string // only known on managers with a working control plane
	// CertClusterID is the cluster id in the node's own swarm certificate on disk, known
	// whenever the node has an identity and the agent runs beside the engine (workers,
	// managers without quorum, nodes reconnecting): what the swarm itself says this node is.
	CertClusterID string
	// CertNodeID, CertManager and CertNotAfter are the rest of what that certificate says:
	// the node id, whether it is a manager's (Raft state may live beside it) and when it
	// expires. An engine that cannot load an expired certificate reports an error and no
	// node id: the certificate on disk is then the only sign of the identity it holds.
	CertNodeID   string
	CertManager  bool
	CertNotAfter time.Time
	IsManager    bool // ControlAvailable
	NodeAddr     string
	// RemoteManagers are the manager addresses (ip:port) the engine knows.
	RemoteManagers []string
	Error          string
}

// InitRequest asks the engine to create a new swarm.
type InitRequest struct {
	AdvertiseAddr string // ip or ip:port
	ListenAddr    string // defaults to 0.0.0.0:2377
	// Autolock creates the swarm locked (swarm init --autolock).
	Autolock bool
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
	JoinTokens(ctx context.Context) (swarm.JoinTokens, string, error)
	// SetNodeLabels merges labels into a node's spec labels; managers only.
	SetNodeLabels(ctx context.Context, nodeID string, labels map[string]string) error
}

// Autolocker is the engine's autolock side (Deps.Autolocker). Engines that lack it are never
// unlocked by boot.
type Autolocker interface {
	// UnlockKey reads the swarm's unlock key (managers only); "" when autolock is off.
	UnlockKey(ctx context.Context) (string, error)
	// Unlock unlocks this locked manager with key; the key never appears in its error.
	Unlock(ctx context.Context, key string) error
	// EnsureAutolock turns the swarm's autolock on (managers only); changed says it was off.
	EnsureAutolock(ctx context.Context) (changed bool, err error)
}

// Sentinel errors; the agent maps them to exit codes.
var (
	ErrNoManager   = errors.New("no manager found")
	ErrSwarmLocked = errors.New("swarm is locked (autolock): unlock it with the unlock key")
	ErrWaitElapsed = errors.New("wait elapsed")
	ErrEngineAPI   = errors.New("docker engine")
)
