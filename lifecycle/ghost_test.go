package lifecycle

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// events records what an Observer is told.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) observe(event, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if reason != "" {
		event += " " + reason
	}
	e.got = append(e.got, event)
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

// TestReapGhosts: a node that left and joined again keeps its old, down node object with the
// same instance-id label. The old object is removed (demoted first if it was a manager), and
// nothing is completed on its account while the instance's live node drains; when several
// live node objects claim one instance nothing is done at all.
func TestReapGhosts(t *testing.T) {
	const grace = 5 * time.Minute
	tests := []struct {
		name string
		// setup makes the world: the instance of the node that rejoined is scaled in.
		setup       func(w *world)
		passes      int // passes, one every grace
		want        []string
		wantJournal []string
		wantEvents  []string
	}{
		{
			name: "rejoined worker: the ghost goes at once, the live node's action is left alone",
			setup: func(w *world) {
				w.c.label("w1", swarm.LabelLeaving, "2000-01-01T00:00:00Z") // its first drain, long ago
				w.c.kill("w1")
				w.c.addNode("w1b", swarm.RoleWorker, "i-w1") // the same instance, joined again, draining now
				w.c.label("w1b", swarm.LabelLeaving, "2000-01-02T00:00:00Z")
			},
			passes:      3,
			want:        []string{"w1"},
			wantJournal: []string{"remove w1"},
			wantEvents:  []string{EventGhostRemoved},
		},
		{
			name: "rejoined worker, ghost not labelled leaving",
			setup: func(w *world) {
				w.c.kill("w1")
				w.c.addNode("w1b", swarm.RoleWorker, "i-w1")
			},
			passes:      3,
			want:        []string{"w1"},
			wantJournal: []string{"remove w1"},
			wantEvents:  []string{EventGhostRemoved},
		},
		{
			name: "rejoined manager: the ghost is demoted, then removed",
			setup: func(w *world) {
				w.c.kill("m3")
				w.c.addNode("m3b", swarm.RoleManager, "i-m3")
			},
			passes:      3,
			want:        []string{"m3"},
			wantJournal: []string{"role m3 worker", "deregister i-m3 10.0.0.3", "remove m3"},
			wantEvents:  []string{EventGhostRemoved},
		},
		{
			name: "two live nodes claim the instance: nothing done, refused once",
			setup: func(w *world) {
				w.c.kill("w1")
				w.c.addNode("w1b", swarm.RoleWorker, "i-w1")
				w.c.addNode("w1c", swarm.RoleWorker, "i-w1")
			},
			passes:     3,
			wantEvents: []string{EventRefused + " " + ReasonAmbiguous},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.c.demoteDelay = 3 * time.Second
				tt.setup(w)
				id := "i-w1"
				if slices.ContainsFunc(w.c.managers(), func(m string) bool { return m == "m3b" }) {
					id = "i-m3"
				}
				hook := newFakeHook(w.j, id, time.Hour)
				hook.scaleIn()
				ev := &events{}
				ec2 := newFakeEC2(w)
				r := &Reaper{Swarm: w.c, Hook: hook, Grace: grace, Instances: ec2,
					Log: testLogger(t), Registrar: w.reg, Observe: ev.observe}
				var got []string
				for range tt.passes {
					removed, err := r.Reap(t.Context(), time.Now())
					if err != nil {
						t.Errorf("Reap: %v", err)
					}
					got = append(got, removed...)
					time.Sleep(grace)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("removed %v, want %v", got, tt.want)
				}
				if j := w.j.all(); !slices.Equal(j, tt.wantJournal) {
					t.Errorf("journal = %q, want %q", j, tt.wantJournal)
				}
				if c, _, _ := hook.status(); len(c) != 0 {
					t.Errorf("completions %v: the action of an instance with a live node was completed", c)
				}
				if e := ev.all(); !slices.Equal(e, tt.wantEvents) {
					t.Errorf("events %q, want %q", e, tt.wantEvents)
				}
			})
		})
	}
}

// TestReapLeftBehindRejoined: a leaving node is removed at once; when its instance has a live
// node object again by the time its action would be completed for it, the action is left to
// that node's own drain.
func TestReapLeftBehindRejoined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const grace = 5 * time.Minute
		w := newWorld(1, 1)
		hook := newFakeHook(w.j, "i-w1", time.Hour)
		hook.scaleIn()
		ev := &events{}
		r := &Reaper{Swarm: w.c, Hook: hook, Grace: grace, Instances: newFakeEC2(w), Log: testLogger(t), Observe: ev.observe}
		w.c.label("w1", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
		w.c.kill("w1")
		if got, err := r.Reap(t.Context(), time.Now()); err != nil || !slices.Equal(got, []string{"w1"}) {
			t.Fatalf("first pass = %v, %v; want the leaving node removed at once", got, err)
		}
		w.c.addNode("w1b", swarm.RoleWorker, "i-w1")
		time.Sleep(grace)
		if _, err := r.Reap(t.Context(), time.Now()); err != nil {
			t.Fatal(err)
		}
		if c, _, _ := hook.status(); len(c) != 0 {
			t.Errorf("completions %v while the instance has a live node", c)
		}
		if e := ev.all(); !slices.Equal(e, []string{EventRefused + " " + ReasonLiveNode}) {
			t.Errorf("events %q, want one live_node refusal", e)
		}
	})
}

// TestRemoteDrainPicksTheLiveNode: the node a manager drains on an instance's behalf is its
// one live node object, never the first one labelled with the instance (a ghost); several
// live ones are refused before anything changes.
func TestRemoteDrainPicksTheLiveNode(t *testing.T) {
	t.Run("ghost listed first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			j := &journal{}
			c := newFakeCluster(j)
			c.addNode("m1", swarm.RoleManager, "i-m1")
			c.addNode("m2", swarm.RoleManager, "i-m2")
			c.addNode("m3", swarm.RoleManager, "i-m3")
			c.addNode("w9", swarm.RoleWorker, "i-w1") // the old object, first in the list
			c.addNode("w1", swarm.RoleWorker, "i-w1")
			c.addNode("w2", swarm.RoleWorker, "i-w2")
			c.kill("w9")
			c.addService("web", 6)
			w := &world{j: j, c: c, reg: &fakeRegistrar{j: j}}
			w.scaleIn("w1", 5*time.Minute)
			d := &Drainer{Swarm: c, Local: RemoteLocal{Swarm: c, InstanceID: "i-w1"}, Hook: w.hook, Log: testLogger(t),
				Options: DrainOptions{Remote: true}}
			o := run(t.Context(), d, notice("w1"))
			if o.err != nil {
				t.Fatalf("Drain: %v", o.err)
			}
			if o.rep.NodeID != "w1" {
				t.Errorf("drained node %q, want w1 (the live one)", o.rep.NodeID)
			}
			if j.countPrefix("labels w9")+j.countPrefix("availability w9") != 0 {
				t.Errorf("the ghost was acted on: %q", j.all())
			}
			if cs, _, _ := w.hook.status(); !slices.Equal(cs, []string{ResultContinue}) {
				t.Errorf("completions %v, want one CONTINUE", cs)
			}
		})
	})
	t.Run("two live nodes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(3, 2)
			w.c.addNode("w9", swarm.RoleWorker, "i-w1")
			w.scaleIn("w1", 5*time.Minute)
			d := &Drainer{Swarm: w.c, Local: RemoteLocal{Swarm: w.c, InstanceID: "i-w1"}, Hook: w.hook, Log: testLogger(t),
				Options: DrainOptions{Remote: true}}
			o := run(t.Context(), d, notice("w1"))
			if !errors.Is(o.err, ErrAmbiguous) {
				t.Fatalf("Drain error = %v, want ErrAmbiguous", o.err)
			}
			if got := w.j.all(); len(got) != 0 {
				t.Errorf("an ambiguous drain changed things: %q", got)
			}
			if cs, _, _ := w.hook.status(); len(cs) != 0 {
				t.Errorf("completions %v, want none", cs)
			}
		})
	})
}

// TestReapSpoofedGhost: a down worker labelled with a live manager's instance id (a node may
// label itself) is no ghost of the manager: EC2 says its address is not the instance's, so it
// is neither removed nor is anything completed on its account; the refusal is reported once.
func TestReapSpoofedGhost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const grace = 5 * time.Minute
		w := newWorld(3, 2)
		ec2 := newFakeEC2(w) // EC2 knows the true addresses
		hook := newFakeHook(w.j, "i-m3", time.Hour)
		hook.scaleIn()
		w.c.label("w1", swarm.LabelInstanceID, "i-m3")
		w.c.kill("w1")
		ev := &events{}
		r := &Reaper{Swarm: w.c, Hook: hook, Grace: grace, Instances: ec2, Log: testLogger(t), Registrar: w.reg, Observe: ev.observe}
		for range 3 {
			removed, err := r.Reap(t.Context(), time.Now())
			if err != nil {
				t.Errorf("Reap: %v", err)
			}
			if len(removed) != 0 {
				t.Errorf("removed %v: a node claiming another's instance was taken for its ghost", removed)
			}
			time.Sleep(grace)
		}
		if j := w.j.all(); len(j) != 0 {
			t.Errorf("journal = %q, want nothing done", j)
		}
		if c, _, _ := hook.status(); len(c) != 0 {
			t.Errorf("completions %v of the manager's action on the worker's account", c)
		}
		if e := ev.all(); !slices.Equal(e, []string{EventRefused + " " + ReasonIdentity}) {
			t.Errorf("events %q, want one identity refusal", e)
		}
	})
}
