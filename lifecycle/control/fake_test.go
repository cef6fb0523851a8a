package control

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// fakeSwarm is an in-memory swarm as a manager's engine shows it. Like Docker it refuses to
// remove a node that is not down unless forced, and answers lifecycle.ErrNoSuchNode for a
// node it does not know.
type fakeSwarm struct {
	mu    sync.Mutex
	nodes map[string]*swarm.Node
	tasks []swarm.Task
	calls []string // changes made, in order
}

var _ lifecycle.Swarm = (*fakeSwarm)(nil)

func newFakeSwarm(nodes ...swarm.Node) *fakeSwarm {
	f := &fakeSwarm{nodes: map[string]*swarm.Node{}}
	for _, n := range nodes {
		n.Labels, n.EngineLabels = maps.Clone(n.Labels), maps.Clone(n.EngineLabels)
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		if n.EngineLabels == nil {
			n.EngineLabels = map[string]string{}
		}
		f.nodes[n.ID] = &n
	}
	return f
}

func node(id string, role swarm.Role) swarm.Node {
	return swarm.Node{ID: id, Hostname: "host-" + id[:2], Role: role, Availability: "active", State: "ready"}
}

func (f *fakeSwarm) setState(id, state string) {
	f.update(id, func(n *swarm.Node) { n.State = state })
}

// update changes a node as the swarm would (not a change the API made: not recorded).
func (f *fakeSwarm) update(id string, change func(*swarm.Node)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f.nodes[id])
}

// snapshot is the fake's state as text, to compare before and after.
func (f *fakeSwarm) snapshot() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := slices.Sorted(maps.Keys(f.nodes))
	s := ""
	for _, id := range ids {
		n := f.nodes[id]
		s += fmt.Sprintf("%s %s %s %s %v\n", n.ID, n.Role, n.Availability, n.State, n.Labels)
	}
	return s
}

func (f *fakeSwarm) changes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeSwarm) find(id string) (*swarm.Node, error) {
	n := f.nodes[id]
	if n == nil {
		return nil, fmt.Errorf("node %s: %w", id, lifecycle.ErrNoSuchNode)
	}
	return n, nil
}

func view(n *swarm.Node) swarm.Node {
	out := *n
	out.Labels, out.EngineLabels = maps.Clone(n.Labels), maps.Clone(n.EngineLabels)
	return out
}

func (f *fakeSwarm) Node(_ context.Context, id string) (swarm.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.find(id)
	if err != nil {
		return swarm.Node{}, err
	}
	return view(n), nil
}

func (f *fakeSwarm) Nodes(context.Context) ([]swarm.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []swarm.Node
	for _, id := range slices.Sorted(maps.Keys(f.nodes)) {
		out = append(out, view(f.nodes[id]))
	}
	return out, nil
}

func (f *fakeSwarm) SetAvailability(_ context.Context, id, a string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.find(id)
	if err != nil {
		return err
	}
	n.Availability = a
	f.calls = append(f.calls, "availability "+id+" "+a)
	return nil
}

func (f *fakeSwarm) SetNodeLabels(_ context.Context, id string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.find(id)
	if err != nil {
		return err
	}
	maps.Copy(n.Labels, labels)
	f.calls = append(f.calls, fmt.Sprintf("labels %s %v", id, labels))
	return nil
}

func (f *fakeSwarm) SetRole(_ context.Context, id string, role swarm.Role) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.find(id)
	if err != nil {
		return err
	}
	n.Role = role
	f.calls = append(f.calls, "role "+id+" "+string(role))
	return nil
}

func (f *fakeSwarm) RemoveNode(_ context.Context, id string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.find(id)
	if err != nil {
		return err
	}
	if n.State != "down" && !force {
		return fmt.Errorf("node %s is not down and can't be removed", id)
	}
	delete(f.nodes, id)
	f.calls = append(f.calls, fmt.Sprintf("remove %s force=%t", id, force))
	return nil
}

func (f *fakeSwarm) Tasks(_ context.Context, nodeID, serviceID string) ([]swarm.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []swarm.Task
	for _, t := range f.tasks {
		if (nodeID == "" || t.NodeID == nodeID) && (serviceID == "" || t.ServiceID == serviceID) {
			out = append(out, t)
		}
	}
	return out, nil
}
