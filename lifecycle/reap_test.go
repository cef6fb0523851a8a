package lifecycle

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// fakeEC2 is EC2 for the reaper (Instances): it knows every instance in addrs, running with
// those private addresses (or in states), or terminated and without any when gone; it
// counts the questions.
type fakeEC2 struct {
	mu     sync.Mutex
	gone   map[string]bool
	addrs  map[string][]string
	states map[string]string // a state other than running (or terminated when gone)
	err    error
	errFor string // err only for this instance; "" for all
	asked  []string
}

// newFakeEC2 knows the instance of every node of the world at the node's address.
func newFakeEC2(w *world) *fakeEC2 {
	f := &fakeEC2{gone: map[string]bool{}, addrs: map[string][]string{}}
	for _, n := range w.c.nodesNow() {
		if id := n.InstanceID(); id != "" {
			f.addrs[id] = append(f.addrs[id], n.Addr)
		}
	}
	return f
}

func (f *fakeEC2) Instance(_ context.Context, id string) (Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, id)
	addrs, ok := f.addrs[id]
	switch {
	case f.err != nil && (f.errFor == "" || f.errFor == id):
		return Instance{}, f.err
	case !ok:
		return Instance{ID: id}, nil
	case f.gone[id]:
		return Instance{ID: id, Found: true, State: EC2Terminated}, nil
	case f.states[id] != "":
		return Instance{ID: id, Found: true, State: f.states[id], Addrs: slices.Clone(addrs)}, nil
	}
	return Instance{ID: id, Found: true, State: "running", Addrs: slices.Clone(addrs)}, nil
}

// nodesNow lists the nodes without counting a call.
func (c *fakeCluster) nodesNow() []swarm.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]swarm.Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n.view())
	}
	return out
}

func (f *fakeEC2) terminate(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gone[id] = true
}

func (c *fakeCluster) label(id, key, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.findLocked(id).Labels[key] = value
}

// setState sets a node's state and nothing else (the fake's kill also moves leadership).
func (c *fakeCluster) setState(id, state string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.findLocked(id).State = state
}

func TestReap(t *testing.T) {
	const grace = 10 * time.Minute
	type pass struct {
		at      time.Duration // since the start
		do      func(w *world, ec2 *fakeEC2)
		want    []string
		wantErr bool
	}
	kill := func(ids ...string) func(*world, *fakeEC2) {
		return func(w *world, ec2 *fakeEC2) {
			for _, id := range ids {
				w.c.kill(id)
			}
		}
	}
	killGone := func(id string) func(*world, *fakeEC2) {
		return func(w *world, ec2 *fakeEC2) {
			w.c.kill(id)
			ec2.terminate("i-" + id)
		}
	}
	tests := []struct {
		name        string
		demoteDelay time.Duration
		passes      []pass
		wantAsked   int // EC2 questions over all passes
		wantJournal []string
	}{
		{
			name: "down, gone, grace passed",
			passes: []pass{
				{at: 0, do: killGone("w1")},
				{at: grace / 2},
				{at: grace, want: []string{"w1"}},
				{at: 2 * grace},
			},
			wantAsked:   1,
			wantJournal: []string{"remove w1"},
		},
		{
			name: "down, gone, grace not passed",
			passes: []pass{
				{at: 0, do: killGone("w1")},
				{at: grace - time.Second},
			},
			wantAsked: 0, // Auto Scaling is not asked before the grace period
		},
		{
			name: "down, instance alive",
			passes: []pass{
				{at: 0, do: kill("w1")},
				{at: grace},
				{at: 3 * grace},
			},
			wantAsked: 2,
		},
		{
			name: "down, instance terminated later",
			passes: []pass{
				{at: 0, do: kill("w1")},
				{at: grace},
				{at: 2 * grace, do: func(_ *world, ec2 *fakeEC2) { ec2.terminate("i-w1") }, want: []string{"w1"}},
			},
			wantAsked:   2,
			wantJournal: []string{"remove w1"},
		},
		{
			name: "leaving, down, instance gone: at once",
			passes: []pass{
				{at: 0, do: func(w *world, ec2 *fakeEC2) {
					w.c.label("w2", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
					killGone("w2")(w, ec2)
				}, want: []string{"w2"}},
			},
			wantAsked:   1,
			wantJournal: []string{"remove w2"},
		},
		{
			// a drain that was aborted (or a mark the node set on itself): the leaving label
			// alone does not make a node go
			name: "leaving, down, instance alive: kept like any down node",
			passes: []pass{
				{at: 0, do: func(w *world, _ *fakeEC2) {
					w.c.label("w2", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
					w.c.kill("w2")
				}},
				{at: grace},
				{at: 10 * grace},
			},
			wantAsked: 3,
		},
		{
			name: "leaving, down, instance alive, terminated later",
			passes: []pass{
				{at: 0, do: func(w *world, _ *fakeEC2) {
					w.c.label("w2", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
					w.c.kill("w2")
				}},
				{at: time.Minute, do: func(_ *world, ec2 *fakeEC2) { ec2.terminate("i-w2") }, want: []string{"w2"}},
			},
			wantAsked:   2,
			wantJournal: []string{"remove w2"},
		},
		{
			// detached from its group and stopped for maintenance: EC2 says stopped, not gone
			name: "down, instance stopped: never",
			passes: []pass{
				{at: 0, do: func(w *world, ec2 *fakeEC2) {
					w.c.kill("w1")
					ec2.states = map[string]string{"i-w1": "stopped"}
				}},
				{at: grace},
				{at: 10 * grace},
			},
			wantAsked: 2,
		},
		{
			name: "leaving, up: never",
			passes: []pass{
				{at: 0, do: func(w *world, ec2 *fakeEC2) {
					w.c.label("w2", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
					ec2.terminate("i-w2")
				}},
				{at: 10 * grace},
			},
		},
		{
			name: "up: never",
			passes: []pass{
				{at: 0, do: func(_ *world, ec2 *fakeEC2) { ec2.terminate("i-w1"); ec2.terminate("i-m2") }},
				{at: 10 * grace},
			},
		},
		{
			name: "no instance-id label: never",
			passes: []pass{
				{at: 0, do: func(w *world, _ *fakeEC2) {
					w.c.addNode("x1", swarm.RoleWorker, "")
					w.c.kill("x1")
				}},
				{at: 10 * grace},
			},
		},
		{
			name: "no instance-id label but leaving: never (no instance to ask about)",
			passes: []pass{
				{at: 0, do: func(w *world, _ *fakeEC2) {
					w.c.addNode("x1", swarm.RoleWorker, "")
					w.c.label("x1", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
					w.c.kill("x1")
				}},
				{at: 10 * grace},
			},
		},
		{
			name: "back up resets the grace period",
			passes: []pass{
				{at: 0, do: killGone("w1")},
				{at: grace / 2, do: func(w *world, _ *fakeEC2) { w.c.revive("w1") }},
				{at: grace/2 + time.Minute, do: kill("w1")},
				{at: grace}, // down since grace/2+1m only
				{at: grace + grace/2 + time.Minute, want: []string{"w1"}},
			},
			wantAsked:   1,
			wantJournal: []string{"remove w1"},
		},
		{
			name:        "manager down, gone: demoted, then removed",
			demoteDelay: 3 * time.Second,
			passes: []pass{
				{at: 0, do: killGone("m3")},
				{at: grace}, // demoted; raft lets go of it a little later
				{at: grace + 30*time.Second, want: []string{"m3"}},
			},
			wantAsked:   2, // asked again on the pass that removes it
			wantJournal: []string{"role m3 worker", "deregister i-m3 10.0.0.3", "remove m3"},
		},
		{
			name: "leaving manager down: demoted and removed in one pass",
			passes: []pass{
				{at: 0, do: func(w *world, ec2 *fakeEC2) {
					w.c.label("m2", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
					killGone("m2")(w, ec2)
				}, want: []string{"m2"}},
			},
			wantAsked:   1,
			wantJournal: []string{"role m2 worker", "deregister i-m2 10.0.0.2", "remove m2"},
		},
		{
			name: "never the leader's own node",
			passes: []pass{
				{at: 0, do: func(w *world, ec2 *fakeEC2) {
					w.c.label("m1", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
					w.c.setState("m1", "down")
					ec2.terminate("i-m1")
				}},
				{at: 10 * grace},
			},
		},
		{
			name: "several at once",
			passes: []pass{
				{at: 0, do: func(w *world, ec2 *fakeEC2) {
					killGone("w1")(w, ec2)
					killGone("w2")(w, ec2)
					w.c.label("w3", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
					killGone("w3")(w, ec2)
				}, want: []string{"w3"}},
				{at: grace, want: []string{"w1", "w2"}},
			},
			wantAsked:   3,
			wantJournal: []string{"remove w3", "remove w1", "remove w2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 3)
				w.c.demoteDelay = tt.demoteDelay
				ec2 := newFakeEC2(w)
				r := &Reaper{Swarm: w.c, Instances: ec2, Grace: grace, Log: testLogger(t), Registrar: w.reg}
				start := time.Now()
				for i, p := range tt.passes {
					time.Sleep(time.Until(start.Add(p.at)))
					if p.do != nil {
						p.do(w, ec2)
					}
					got, err := r.Reap(t.Context(), time.Now())
					if (err != nil) != p.wantErr {
						t.Errorf("pass %d at %s: error %v, want error %t", i, p.at, err, p.wantErr)
					}
					if !slices.Equal(got, p.want) {
						t.Errorf("pass %d at %s: removed %v, want %v", i, p.at, got, p.want)
					}
				}
				if got := len(ec2.asked); got != tt.wantAsked {
					t.Errorf("EC2 asked %d times (%v), want %d", got, ec2.asked, tt.wantAsked)
				}
				if got := w.j.all(); !slices.Equal(got, tt.wantJournal) {
					t.Errorf("journal = %q, want %q", got, tt.wantJournal)
				}
			})
		})
	}
}

func TestReapErrors(t *testing.T) {
	t.Run("EC2 fails", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(1, 2)
			w.c.kill("w1")
			w.c.kill("w2")
			w.c.label("w2", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
			ec2 := newFakeEC2(w)
			ec2.terminate("i-w1")
			ec2.terminate("i-w2")
			ec2.err, ec2.errFor = errors.New("throttled"), "i-w1"
			r := &Reaper{Swarm: w.c, Instances: ec2, Log: testLogger(t)}
			got, err := r.Reap(t.Context(), time.Now())
			if err == nil {
				t.Errorf("Reap error = nil, want EC2's failure")
			}
			// one node's error does not stop the pass
			if !slices.Equal(got, []string{"w2"}) {
				t.Errorf("removed %v, want [w2]", got)
			}
			if _, ok := w.c.node("w1"); !ok {
				t.Errorf("w1 removed although EC2 failed")
			}
		})
	})
	t.Run("listing fails", func(t *testing.T) {
		w := newWorld(1, 1)
		w.c.inject("Nodes", failErr, 0)
		r := &Reaper{Swarm: w.c, Log: testLogger(t)}
		if _, err := r.Reap(t.Context(), time.Now()); err == nil {
			t.Errorf("Reap error = nil, want the listing failure")
		}
	})
	t.Run("removed by someone else", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(1, 2)
			w.c.kill("w1")
			ec2 := newFakeEC2(w)
			ec2.terminate("i-w1")
			r := &Reaper{Swarm: w.c, Instances: ec2, Grace: time.Minute, Log: testLogger(t)}
			if _, err := r.Reap(t.Context(), time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := w.c.RemoveNode(t.Context(), "w1", false); err != nil {
				t.Fatal(err)
			}
			got, err := r.Reap(t.Context(), time.Now().Add(time.Hour))
			if err != nil || len(got) != 0 {
				t.Errorf("Reap = %v, %v; want nothing to do", got, err)
			}
			if len(r.downSince) != 0 {
				t.Errorf("reaper still remembers %v", r.downSince)
			}
		})
	})
}

// TestReapCompletesHeldAction: a node whose agent died and whose instance Auto Scaling holds
// in Terminating:Wait is removed after the grace period and its lifecycle action completed
// with CONTINUE, instead of waiting out the hook's timeout.
func TestReapCompletesHeldAction(t *testing.T) {
	const grace = 5 * time.Minute
	tests := []struct {
		name         string
		scaleIn      bool
		failComplete bool
		noHook, gone bool // the instance is in no hooked group; EC2 says it is gone
		wantAsked    int  // EC2 questions: the identity check when completing; whether it is gone when no hook answers
		want         []string
		wantErr      bool
		wantJournal  []string
	}{
		{name: "held in Terminating:Wait", scaleIn: true, wantAsked: 1, want: []string{"w1"},
			wantJournal: []string{"remove w1", "complete i-w1 CONTINUE"}},
		{name: "instance in service: kept", scaleIn: false},
		{name: "no hooked group: EC2 says gone", noHook: true, gone: true, wantAsked: 1, want: []string{"w1"},
			wantJournal: []string{"remove w1"}},
		{name: "no hooked group: EC2 says alive", noHook: true, wantAsked: 1},
		{name: "completion fails: removed, error told", scaleIn: true, failComplete: true, wantAsked: 1, want: []string{"w1"}, wantErr: true,
			wantJournal: []string{"remove w1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(1, 2)
				hook := newFakeHook(w.j, "i-w1", time.Hour)
				if tt.failComplete {
					hook.inject("Complete", failErr, 0)
				}
				hook.noHook = tt.noHook
				ec2 := newFakeEC2(w)
				ec2.gone["i-w1"] = tt.gone
				r := &Reaper{Swarm: w.c, Grace: grace, Hook: hook, Instances: ec2, Log: testLogger(t)}
				w.c.kill("w1")
				if tt.scaleIn {
					hook.scaleIn()
				}
				if got, err := r.Reap(t.Context(), time.Now()); err != nil || len(got) != 0 {
					t.Fatalf("first pass = %v, %v; want nothing before the grace period", got, err)
				}
				time.Sleep(grace)
				got, err := r.Reap(t.Context(), time.Now())
				if (err != nil) != tt.wantErr {
					t.Errorf("Reap error = %v, want error %t", err, tt.wantErr)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("removed %v, want %v", got, tt.want)
				}
				if j := w.j.all(); !slices.Equal(j, tt.wantJournal) {
					t.Errorf("journal = %q, want %q", j, tt.wantJournal)
				}
				if _, ok := w.c.node("w2"); !ok {
					t.Errorf("w2, which is up, was removed")
				}
				if len(ec2.asked) != tt.wantAsked {
					t.Errorf("EC2 asked %d times, want %d", len(ec2.asked), tt.wantAsked)
				}
			})
		})
	}
	for _, agentCompletes := range []bool{false, true} {
		name := "leaving node removed, its agent dead: completed after the grace"
		if agentCompletes {
			name = "leaving node removed, its agent completes: no second completion"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(1, 1)
				hook := newFakeHook(w.j, "i-w1", time.Hour)
				hook.scaleIn()
				ec2 := newFakeEC2(w)
				r := &Reaper{Swarm: w.c, Grace: grace, Hook: hook, Instances: ec2, Log: testLogger(t)}
				w.c.label("w1", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
				w.c.kill("w1") // it left the swarm
				if got, err := r.Reap(t.Context(), time.Now()); err != nil || !slices.Equal(got, []string{"w1"}) {
					t.Fatalf("first pass = %v, %v; want the leaving node removed at once", got, err)
				}
				if agentCompletes {
					if err := hook.Complete(t.Context(), "asg-1", "drain", "i-w1", ResultContinue); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(grace - time.Second)
				if _, err := r.Reap(t.Context(), time.Now()); err != nil {
					t.Fatal(err)
				}
				if c, _, _ := hook.status(); len(c) != btoi(agentCompletes) {
					t.Fatalf("completions %v before the grace passed", c)
				}
				time.Sleep(time.Second)
				if _, err := r.Reap(t.Context(), time.Now()); err != nil {
					t.Fatal(err)
				}
				if c, _, _ := hook.status(); !slices.Equal(c, []string{ResultContinue}) {
					t.Errorf("completions %v, want exactly one CONTINUE", c)
				}
				if len(r.leftBehind) != 0 {
					t.Errorf("reaper still watches %v", r.leftBehind)
				}
			})
		})
	}
	t.Run("action already ended", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(1, 1)
			hook := newFakeHook(w.j, "i-w1", time.Hour)
			hook.scaleIn()
			// The node's own agent completes the action between the reaper's look and its
			// completion: the node is removed and the late completion is not an error.
			late := agentCompletesAfterLook{hook, t}
			ec2 := newFakeEC2(w)
			r := &Reaper{Swarm: w.c, Hook: late, Instances: ec2, Log: testLogger(t)}
			w.c.kill("w1")
			got, err := r.Reap(t.Context(), time.Now())
			if err != nil || !slices.Equal(got, []string{"w1"}) {
				t.Fatalf("Reap = %v, %v; want [w1] and no error", got, err)
			}
			if c, _, _ := hook.status(); !slices.Equal(c, []string{ResultContinue}) {
				t.Errorf("completions %v, want exactly the agent's one", c)
			}
		})
	})
}

// agentCompletesAfterLook is a Hook whose action the node's own agent completes right after
// the reaper has looked at it.
type agentCompletesAfterLook struct {
	*fakeHook
	t *testing.T
}

func (h agentCompletesAfterLook) Action(ctx context.Context, id string) (HookAction, error) {
	a, err := h.fakeHook.Action(ctx, id)
	if err == nil {
		if cerr := h.Complete(ctx, a.ASG, a.Hook, id, ResultContinue); cerr != nil {
			h.t.Errorf("the agent's completion: %v", cerr)
		}
	}
	return a, err
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
