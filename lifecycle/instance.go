package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// ErrAmbiguous means several live node objects (not down) carry one instance's id: at most
// one of them is really on the instance, and a label cannot tell which. Nothing is done to
// any of them on the instance's behalf.
var ErrAmbiguous = errors.New("several live nodes are labelled with the instance")

// Decisions the leader takes about other nodes, reported to an Observer (for metrics).
const (
	// EventGhostRemoved: a down node object of an instance that has a newer, live node
	// object (it left and joined again) was removed.
	EventGhostRemoved = "ghost_removed"
	// EventRefused: an action on an instance's behalf was refused; the reason says why.
	EventRefused = "refused"
	// EventTakeover: the leader took over the drain of a node whose agent did not do it.
	EventTakeover = "takeover"
)

// Reasons of EventRefused and EventTakeover.
const (
	ReasonAmbiguous = "ambiguous" // several live node objects carry the instance's id
	ReasonLiveNode  = "live_node" // another node object of the instance is not down
	ReasonIdentity  = "identity"  // EC2 does not confirm that the node is on the instance
	ReasonNoAgent   = "no_agent"  // the node's agent did not start draining within the grace
	ReasonStale     = "stale"     // the node's agent stopped reporting progress
)

// Observer is told of each decision (event, reason); nil observes nothing.
type Observer func(event, reason string)

func (o Observer) observe(event, reason string) {
	if o != nil {
		o(event, reason)
	}
}

// nodesOf splits the node objects labelled with instanceID into the live ones (any state
// but down) and the down ones.
func nodesOf(nodes []swarm.Node, instanceID string) (live, down []swarm.Node) {
	if instanceID == "" {
		return nil, nil
	}
	for _, n := range nodes {
		switch {
		case n.InstanceID() != instanceID:
		case n.State == stateDown:
			down = append(down, n)
		default:
			live = append(live, n)
		}
	}
	return live, down
}

// NodeOfInstance returns the live node object labelled with instanceID; ok is false when
// there is none (no node, or only down ones). More than one live node is ErrAmbiguous
// (wrapped, naming them): the caller must act on none of them.
func NodeOfInstance(nodes []swarm.Node, instanceID string) (n swarm.Node, ok bool, err error) {
	live, _ := nodesOf(nodes, instanceID)
	switch len(live) {
	case 0:
		return swarm.Node{}, false, nil
	case 1:
		return live[0], true, nil
	}
	ids := make([]string, len(live))
	for i, l := range live {
		ids[i] = l.ID + " (" + l.Addr + ")"
	}
	return swarm.Node{}, false, fmt.Errorf("instance %s: nodes %s: %w", instanceID, strings.Join(ids, ", "), ErrAmbiguous)
}

// RemoteLocal is the Local of a node that a manager drains on its behalf (queue mode: its
// own agent is not running). The node is the one live node object labelled with the
// instance's id (NodeOfInstance: several are ErrAmbiguous, never "the first"); it is never
// made to leave: its engine ends with the instance.
type RemoteLocal struct {
	Swarm      Swarm
	InstanceID string
}

var _ Local = RemoteLocal{}

// Self returns the instance's live node; "" when it has none.
func (r RemoteLocal) Self(ctx context.Context) (string, bool, error) {
	nodes, err := r.Swarm.Nodes(ctx)
	if err != nil {
		return "", false, err
	}
	n, ok, err := NodeOfInstance(nodes, r.InstanceID)
	if err != nil || !ok {
		return "", false, err
	}
	return n.ID, n.Role == swarm.RoleManager || n.Reachability != "", nil
}

// Leave refuses: a node drained on its behalf cannot be made to leave.
func (r RemoteLocal) Leave(context.Context, bool) error {
	return fmt.Errorf("node of instance %s is drained on its behalf: it cannot be made to leave: %w", r.InstanceID, ErrNotAllowed)
}
