package engine

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/retry"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func node(n swarmapi.Node) swarm.Node {
	out := swarm.Node{
		ID:           n.ID,
		Hostname:     n.Description.Hostname,
		Addr:         n.Status.Addr,
		Role:         swarm.Role(n.Spec.Role),
		Availability: string(n.Spec.Availability),
		State:        string(n.Status.State),
		Labels:       maps.Clone(n.Spec.Labels),
		EngineLabels: maps.Clone(n.Description.Engine.Labels),
		CreatedAt:    n.CreatedAt,
		OS:           n.Description.Platform.OS,
		Arch:         n.Description.Platform.Architecture,
	}
	if m := n.ManagerStatus; m != nil {
		out.Leader, out.Reachability = m.Leader, string(m.Reachability)
		// Managers may report 0.0.0.0 as their status address; their raft address is right.
		if host, _, err := net.SplitHostPort(m.Addr); err == nil && (out.Addr == "" || out.Addr == "0.0.0.0") {
			out.Addr = host
		}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.EngineLabels == nil {
		out.EngineLabels = map[string]string{}
	}
	return out
}

// Nodes lists the swarm's nodes (managers only).
func (e *Engine) Nodes(ctx context.Context) ([]swarm.Node, error) {
	res, err := e.c.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return nil, e.wrap("list nodes", err)
	}
	out := make([]swarm.Node, 0, len(res.Items))
	for _, n := range res.Items {
		out = append(out, node(n))
	}
	return out, nil
}

// Node reads one node (managers only).
func (e *Engine) Node(ctx context.Context, id string) (swarm.Node, error) {
	res, err := e.c.NodeInspect(ctx, id, client.NodeInspectOptions{})
	if err != nil {
		return swarm.Node{}, e.wrap("inspect node "+id, err)
	}
	return node(res.Node), nil
}

// SetNodeLabels merges labels into the node's spec labels (managers only).
func (e *Engine) SetNodeLabels(ctx context.Context, nodeID string, labels map[string]string) error {
	return e.updateNode(ctx, nodeID, "label node "+nodeID, func(s *swarmapi.NodeSpec) bool {
		changed := false
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		for k, v := range labels {
			if old, ok := s.Labels[k]; !ok || old != v {
				s.Labels[k], changed = v, true
			}
		}
		return changed
	})
}

// SetAvailability sets the node's availability: active, pause or drain (managers only).
func (e *Engine) SetAvailability(ctx context.Context, nodeID, availability string) error {
	a := swarmapi.NodeAvailability(availability)
	switch a {
	case swarmapi.NodeAvailabilityActive, swarmapi.NodeAvailabilityPause, swarmapi.NodeAvailabilityDrain:
	default:
		return fmt.Errorf("availability %q: must be active, pause or drain", availability)
	}
	return e.updateNode(ctx, nodeID, "set availability of node "+nodeID+" to "+availability, func(s *swarmapi.NodeSpec) bool {
		if s.Availability == a {
			return false
		}
		s.Availability = a
		return true
	})
}

// SetRole promotes (manager) or demotes (worker) the node (managers only).
func (e *Engine) SetRole(ctx context.Context, nodeID string, role swarm.Role) error {
	r := swarmapi.NodeRole(role)
	switch r {
	case swarmapi.NodeRoleManager, swarmapi.NodeRoleWorker:
	default:
		return fmt.Errorf("role %q: must be manager or worker", role)
	}
	return e.updateNode(ctx, nodeID, "set role of node "+nodeID+" to "+string(role), func(s *swarmapi.NodeSpec) bool {
		if s.Role == r {
			return false
		}
		s.Role = r
		return true
	})
}

// RemoveNode removes the node from the swarm (managers only); force removes a node that is
// not down yet.
func (e *Engine) RemoveNode(ctx context.Context, nodeID string, force bool) error {
	if _, err := e.c.NodeRemove(ctx, nodeID, client.NodeRemoveOptions{Force: force}); err != nil {
		return e.wrap("remove node "+nodeID, err)
	}
	return nil
}

// updateAttempts bounds the retries of a node update that lost a race with another writer.
const updateAttempts = 8

// updateNode reads the node's spec and version, lets mutate change the spec (false: nothing to
// do) and writes it back at that version; when another writer got there first ("update out
// of sequence") it reads again and retries.
func (e *Engine) updateNode(ctx context.Context, nodeID, op string, mutate func(*swarmapi.NodeSpec) bool) error {
	var err error
	for attempt := range updateAttempts {
		var res client.NodeInspectResult
		res, err = e.c.NodeInspect(ctx, nodeID, client.NodeInspectOptions{})
		if err != nil {
			return e.wrap(op, err)
		}
		spec := res.Node.Spec
		spec.Labels = maps.Clone(spec.Labels)
		if !mutate(&spec) {
			return nil
		}
		_, err = e.c.NodeUpdate(ctx, nodeID, client.NodeUpdateOptions{Version: res.Node.Version, Spec: spec})
		if err == nil {
			return nil
		}
		if !outOfSequence(err) {
			return e.wrap(op, err)
		}
		// jitter so that racing writers do not collide again in step
		wait := time.Duration(attempt+1)*20*time.Millisecond + rand.N(20*time.Millisecond)
		if !retry.Sleep(ctx, wait) {
			return e.wrap(op, context.Cause(ctx))
		}
	}
	return e.wrap(op, fmt.Errorf("gave up after %d attempts: %w", updateAttempts, err))
}

func outOfSequence(err error) bool {
	return strings.Contains(err.Error(), "update out of sequence")
}

// TaskFilter selects tasks; empty fields select all.
type TaskFilter struct {
	NodeID       string
	ServiceID    string
	DesiredState string // running | shutdown | accepted
}

// Tasks lists tasks matching f (managers only).
func (e *Engine) Tasks(ctx context.Context, f TaskFilter) ([]swarm.Task, error) {
	filters := client.Filters{}
	if f.NodeID != "" {
		filters.Add("node", f.NodeID)
	}
	if f.ServiceID != "" {
		filters.Add("service", f.ServiceID)
	}
	if f.DesiredState != "" {
		filters.Add("desired-state", f.DesiredState)
	}
	res, err := e.c.TaskList(ctx, client.TaskListOptions{Filters: filters})
	if err != nil {
		return nil, e.wrap("list tasks", err)
	}
	out := make([]swarm.Task, 0, len(res.Items))
	for _, t := range res.Items {
		out = append(out, swarm.Task{ID: t.ID, ServiceID: t.ServiceID, NodeID: t.NodeID, Slot: t.Slot,
			DesiredState: string(t.DesiredState), State: string(t.Status.State)})
	}
	return out, nil
}
