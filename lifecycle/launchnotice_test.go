package lifecycle

import (
	"context"
	"maps"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// nodesOnly is a Swarm that only lists nodes (what a launch notice looks at).
type nodesOnly struct {
	mu    sync.Mutex
	nodes []swarm.Node
}

func (s *nodesOnly) set(nodes ...swarm.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes = nodes
}
func (s *nodesOnly) Nodes(context.Context) ([]swarm.Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]swarm.Node, len(s.nodes))
	for i, n := range s.nodes {
		n.Labels = maps.Clone(n.Labels)
		out[i] = n
	}
	return out, nil
}
func (s *nodesOnly) Node(context.Context, string) (swarm.Node, error) {
	return swarm.Node{}, ErrNoSuchNode
}
func (s *nodesOnly) SetAvailability(context.Context, string, string) error          { return nil }
func (s *nodesOnly) SetNodeLabels(context.Context, string, map[string]string) error { return nil }
func (s *nodesOnly) SetRole(context.Context, string, swarm.Role) error              { return nil }
func (s *nodesOnly) RemoveNode(context.Context, string, bool) error                 { return nil }
func (s *nodesOnly) Tasks(context.Context, string, string) ([]swarm.Task, error)    { return nil, nil }

// ec2Of answers for one instance with its addresses.
type ec2Of map[string][]string

func (e ec2Of) Instance(_ context.Context, id string) (Instance, error) {
	addrs, ok := e[id]
	return Instance{ID: id, Found: ok, State: "running", Addrs: addrs}, nil
}

// TestLaunchNoticeHandler: the leader completes a launch action on the instance's behalf only
// once the instance's node is in the swarm, its own agent has had the grace to complete it,
// and EC2 confirms the node's address; never for a warm pool launch, never with ABANDON.
func TestLaunchNoticeHandler(t *testing.T) {
	const id = "i-0123456789abcdef0"
	ready := swarm.Node{ID: "n1", Role: swarm.RoleWorker, State: "ready", Addr: "10.0.0.5",
		Labels: map[string]string{swarm.LabelInstanceID: id, "az": "us-east-1a"}, EngineLabels: map[string]string{"az": "us-east-1a"}}
	want := func(n swarm.Node) map[string]string { return map[string]string{"az": n.EngineLabels["az"]} }
	n := Notice{Kind: "launch", InstanceID: id, ASG: "asg", Hook: "boot", Source: "queue", Destination: "AutoScalingGroup"}
	setup := func(t *testing.T) (*LaunchNoticeHandler, *fakeLaunchHook, *nodesOnly, *[]string) {
		h := &fakeLaunchHook{states: []string{StatePendingWait}}
		sw := &nodesOnly{}
		var events []string
		return &LaunchNoticeHandler{Swarm: sw, Hook: h, Instances: ec2Of{id: {"10.0.0.5"}}, WantLabels: want,
			Grace: 30 * time.Second, Wait: 10 * time.Minute, Log: zerolog.Nop(),
			Observe: func(e, r string) { events = append(events, e+"/"+r) }}, h, sw, &events
	}

	t.Run("node in the swarm, agent silent: CONTINUE after the grace", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			lh, h, sw, events := setup(t)
			unready := ready
			unready.State = "unknown"
			sw.set(unready)
			start := time.Now()
			go func() {
				time.Sleep(time.Minute)
				sw.set(ready)
			}()
			if err := lh.Handle(t.Context(), n); err != nil {
				t.Fatal(err)
			}
			_, _, done := h.counts()
			if len(done) != 1 || done[0] != "asg/boot/"+id+"/CONTINUE" {
				t.Fatalf("completions %v", done)
			}
			if took := time.Since(start); took < time.Minute+30*time.Second {
				t.Fatalf("completed %s after the notice: before the node was in the swarm for the grace", took)
			}
			if len(*events) != 1 || (*events)[0] != EventTakeover+"/"+ReasonLaunch {
				t.Fatalf("events %v", *events)
			}
		})
	})
	t.Run("the agent completes it first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			lh, h, sw, _ := setup(t)
			sw.set(ready)
			go func() {
				time.Sleep(10 * time.Second)
				h.mu.Lock()
				h.states = []string{StateInService}
				h.mu.Unlock()
			}()
			if err := lh.Handle(t.Context(), n); err != nil {
				t.Fatal(err)
			}
			if _, _, done := h.counts(); len(done) != 0 {
				t.Fatalf("completions %v, want none by the leader", done)
			}
		})
	})
	t.Run("node never joins: nothing, until the watch ends", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			lh, h, _, _ := setup(t)
			if err := lh.Handle(t.Context(), n); err != nil {
				t.Fatal(err)
			}
			if _, _, done := h.counts(); len(done) != 0 {
				t.Fatalf("completions %v, want none", done)
			}
		})
	})
	t.Run("not labelled yet: waits", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			lh, h, sw, _ := setup(t)
			bare := ready
			bare.Labels = map[string]string{swarm.LabelInstanceID: id}
			sw.set(bare)
			lh.Wait = 5 * time.Minute
			if err := lh.Handle(t.Context(), n); err != nil {
				t.Fatal(err)
			}
			if _, _, done := h.counts(); len(done) != 0 {
				t.Fatalf("completions %v for a node without its labels", done)
			}
		})
	})
	t.Run("EC2 does not confirm the address", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			lh, h, sw, events := setup(t)
			lh.Instances = ec2Of{id: {"10.0.0.9"}}
			sw.set(ready)
			if err := lh.Handle(t.Context(), n); err != nil {
				t.Fatal(err)
			}
			if _, _, done := h.counts(); len(done) != 0 {
				t.Fatalf("completions %v on an unconfirmed claim", done)
			}
			if len(*events) != 1 || (*events)[0] != EventRefused+"/"+ReasonIdentity {
				t.Fatalf("events %v", *events)
			}
		})
	})
	t.Run("warm pool launch: done at once", func(t *testing.T) {
		lh, h, sw, _ := setup(t)
		sw.set(ready)
		warm := n
		warm.Destination = "WarmPool"
		if err := lh.Handle(t.Context(), warm); err != nil {
			t.Fatal(err)
		}
		if lookups, _, done := h.counts(); lookups != 0 || len(done) != 0 {
			t.Fatalf("%d lookups, completions %v for a warm pool launch", lookups, done)
		}
	})
}
