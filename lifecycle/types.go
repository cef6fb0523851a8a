// Package lifecycle takes a node out of the swarm cleanly: it watches for the node's end
// (scale-in, spot interruption, a queue notice or a command), drains it, keeps the Auto
// Scaling hook alive, keeps manager quorum, deregisters, leaves, has the node removed and
// completes the lifecycle action. It also reaps nodes that died without warning.
package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Swarm is what draining needs from the swarm's managers. On a manager it is the local engine;
// on a worker it is the managers' control API, which allows only operations on the caller's
// own node.
type Swarm interface {
	Node(ctx context.Context, id string) (swarm.Node, error)
	Nodes(ctx context.Context) ([]swarm.Node, error)
	SetAvailability(ctx context.Context, nodeID, availability string) error
	SetNodeLabels(ctx context.Context, nodeID string, labels map[string]string) error
	SetRole(ctx context.Context, nodeID string, role swarm.Role) error
	RemoveNode(ctx context.Context, nodeID string, force bool) error
	// Tasks lists tasks; nodeID "" means every node, serviceID "" every service.
	Tasks(ctx context.Context, nodeID, serviceID string) ([]swarm.Task, error)
}

// Local is the node's own engine.
type Local interface {
	// Self returns this node's id and whether it is a manager; "" when not in a swarm.
	Self(ctx context.Context) (nodeID string, manager bool, err error)
	Leave(ctx context.Context, force bool) error
}

// Registrar withdraws a manager from discovery: the part of discovery.Registrar that the
// drain and the reaper use, so that a discovery provider serves as one. They name the manager
// by instance id and address (Port stays 0: no provider needs it to deregister).
type Registrar interface {
	Deregister(ctx context.Context, m swarm.Member) error
}

// Notice is a reason for a node to leave.
type Notice struct {
	Kind       string // scale-in | spot | rebalance | manual | launch
	InstanceID string
	ASG        string
	Hook       string
	Token      string    // LifecycleActionToken, when known
	Deadline   time.Time // spot: the interruption time
	Source     string    // imds | queue | command
	// Destination is where a hook's transition takes the instance, when the notice says:
	// EC2 (terminated), AutoScalingGroup (into service) or WarmPool (launched into, or
	// returning to, a warm pool).
	Destination string
}

// Sentinel errors.
var (
	ErrLastManager = errors.New("refusing to remove the last manager")
	ErrNoQuorum    = errors.New("removing this manager would lose quorum")
	ErrNotAllowed  = errors.New("not allowed")
	ErrNoAction    = errors.New("no active lifecycle action")
)

// More sentinel errors.
var (
	// ErrNoSuchNode is what a Swarm returns (wrapped) for a node id the swarm does not know,
	// e.g. one already removed. Drain and Reap treat it as "already removed".
	ErrNoSuchNode = errors.New("no such node")
	// ErrNoHook means the instance has no termination lifecycle hook to heartbeat or complete
	// (in no Auto Scaling group, or its group has no EC2_INSTANCE_TERMINATING hook).
	ErrNoHook = errors.New("no termination lifecycle hook")
	// ErrDrainTimeout means tasks had not moved away by the drain deadline and the
	// configured reaction was to abandon.
	ErrDrainTimeout = errors.New("drain timed out")
)
