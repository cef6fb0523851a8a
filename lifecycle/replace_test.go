package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestReplacementWait(t *testing.T) {
	mgr := func(id, reach string, leaving bool) swarm.Node {
		n := swarm.Node{ID: id, Role: swarm.RoleManager, Reachability: reach, Labels: map[string]string{}}
		if leaving {
			n.Labels[swarm.LabelLeaving] = "2026-12-01T10:00:00Z"
		}
		return n
	}
	worker := swarm.Node{ID: "w1", Role: swarm.RoleWorker, Labels: map[string]string{}}
	three := []swarm.Node{mgr("m1", reachable, true), mgr("m2", reachable, false), mgr("m3", reachable, false), worker}
	tests := []struct {
		name      string
		nodes     []swarm.Node // m1 decides
		desired   int
		wantStay  int
		wantWant  int
		wantWaits bool
	}{
		{name: "3 managers, refreshed (terminate first): wait for the replacement", nodes: three, desired: 3, wantStay: 2, wantWant: 3, wantWaits: true},
		{name: "3 managers, scaled in to 2: no wait", nodes: three, desired: 2, wantStay: 2, wantWant: 2},
		{name: "replacement joined but not yet reachable", nodes: append(slices.Clone(three), mgr("m4", "unknown", false)), desired: 3, wantStay: 2, wantWant: 3, wantWaits: true},
		{name: "replacement reachable: go", nodes: append(slices.Clone(three), mgr("m4", reachable, false)), desired: 3, wantStay: 3, wantWant: 3},
		{name: "launch first: the replacement came before", nodes: append(slices.Clone(three), mgr("m4", reachable, false)), desired: 3, wantStay: 3, wantWant: 3},
		{name: "a down manager does not count", nodes: []swarm.Node{mgr("m1", reachable, true), mgr("m2", reachable, false), mgr("m3", "unreachable", false), mgr("m4", reachable, false)}, desired: 3, wantStay: 2, wantWant: 3, wantWaits: true},
		{
			name: "5 managers, two refreshed at once: the first waits for both replacements",
			nodes: []swarm.Node{mgr("m1", reachable, true), mgr("m2", reachable, true), mgr("m3", reachable, false), mgr("m4", reachable, false),
				mgr("m5", reachable, false), mgr("m6", reachable, false)},
			desired: 5, wantStay: 4, wantWant: 5, wantWaits: true,
		},
		{
			name: "5 managers, two refreshed, both replacements in: go",
			nodes: []swarm.Node{mgr("m1", reachable, true), mgr("m2", reachable, true), mgr("m3", reachable, false), mgr("m4", reachable, false),
				mgr("m5", reachable, false), mgr("m6", reachable, false), mgr("m7", reachable, false)},
			desired: 5, wantStay: 5, wantWant: 5,
		},
		{name: "group of managers and workers: wants at most the managers there are", nodes: append(slices.Clone(three), mgr("m4", reachable, false)), desired: 8, wantStay: 3, wantWant: 4, wantWaits: true},
		{name: "a leaving manager is no replacement", nodes: append(slices.Clone(three), mgr("m4", reachable, true)), desired: 3, wantStay: 2, wantWant: 3, wantWaits: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stay, want, wait := ReplacementWait(tt.nodes, "m1", tt.desired)
			if stay != tt.wantStay || want != tt.wantWant || wait != tt.wantWaits {
				t.Errorf("ReplacementWait = %d, %d, %v; want %d, %d, %v", stay, want, wait, tt.wantStay, tt.wantWant, tt.wantWaits)
			}
		})
	}
}

// fakeCapacity is a group's desired capacity.
type fakeCapacity struct {
	mu      sync.Mutex
	desired map[string]int
	err     error
	calls   int
}

func (f *fakeCapacity) DesiredCapacity(_ context.Context, name string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return 0, f.err
	}
	d, ok := f.desired[name]
	if !ok {
		return 0, errors.New("auto scaling group " + name + " not found")
	}
	return d, nil
}

// replacedManager is a world of 3 managers and 2 workers in which m2's instance waits in
// Terminating:Wait, and a Drainer for m2 that reads the group's capacity from capacity.
func replacedManager(t *testing.T, opts DrainOptions, capacity *fakeCapacity) (*world, *Drainer) {
	w := newWorld(3, 2)
	w.scaleIn("m2", time.Minute)
	d := w.drainer(t, "m2", opts)
	d.Capacity = capacity
	return w, d
}

// TestDrainWaitsForReplacement: a manager terminated while its group keeps its desired
// capacity (a refresh) holds its lifecycle action, heartbeating, and stays a manager until a
// replacement manager is a reachable Raft member; one scaled in (capacity lowered) goes at
// once; one whose replacement never comes goes at the bound, the others keeping quorum.
func TestDrainWaitsForReplacement(t *testing.T) {
	t.Run("refresh: held until the replacement is reachable", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, d := replacedManager(t, DrainOptions{}, &fakeCapacity{desired: map[string]int{"asg-1": 3}})
			done := make(chan outcome, 1)
			go func() { done <- run(t.Context(), d, notice("m2")) }()

			// Five minutes later it still waits: a manager, its action heartbeated, nothing completed.
			time.Sleep(5 * time.Minute)
			synctest.Wait()
			if n, _ := w.c.node("m2"); n.Role != swarm.RoleManager {
				t.Fatalf("m2 = %+v before any replacement, want a manager", n)
			}
			if c, beats, expired := w.hook.status(); len(c) != 0 || beats < 5 || expired {
				t.Fatalf("before any replacement: completions %v, %d heartbeats, expired %v; want none, >= 5, false", c, beats, expired)
			}
			w.j.add("replacement m4 joined")
			w.c.addNode("m4", swarm.RoleManager, "i-m4")
			o := <-done
			if o.err != nil {
				t.Fatalf("Drain: %v", o.err)
			}
			w.checkGone(t, "m2", ResultContinue)
			w.inOrder(t, "labels m2", "availability m2 drain", "replacement m4 joined", "role m2 worker", "complete i-m2")
			if got := w.c.managers(); len(got) != 3 {
				t.Errorf("managers = %v, want 3", got)
			}
			if s, _ := o.rep.Step(StepReplace); s.Outcome != OutcomeDone || !strings.Contains(s.Detail, "replacement in") {
				t.Errorf("replace step %+v, want done", s)
			}
		})
	})
	t.Run("scale-in: no wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, d := replacedManager(t, DrainOptions{}, &fakeCapacity{desired: map[string]int{"asg-1": 2}})
			start := time.Now()
			o := run(t.Context(), d, notice("m2"))
			if o.err != nil {
				t.Fatalf("Drain: %v", o.err)
			}
			w.checkGone(t, "m2", ResultContinue)
			if s, ok := o.rep.Step(StepReplace); ok || time.Since(start) > 2*time.Minute {
				t.Errorf("replace step %+v, drain took %s: waited for a replacement on a scale-in", s, time.Since(start))
			}
		})
	})
	t.Run("no replacement within the bound: goes, the others keep quorum", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, d := replacedManager(t, DrainOptions{Deadline: 3 * time.Minute}, &fakeCapacity{desired: map[string]int{"asg-1": 3}})
			start := time.Now()
			o := run(t.Context(), d, notice("m2"))
			if o.err != nil {
				t.Fatalf("Drain: %v", o.err)
			}
			w.checkGone(t, "m2", ResultContinue)
			if took := time.Since(start); took < 3*time.Minute {
				t.Errorf("drain took %s, want the 3m bound spent waiting for a replacement", took)
			}
			if s, _ := o.rep.Step(StepReplace); s.Outcome != OutcomeTimeout {
				t.Errorf("replace step %+v, want a timeout", s)
			}
		})
	})
	t.Run("capacity unreadable: the quorum rule alone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, d := replacedManager(t, DrainOptions{}, &fakeCapacity{err: errors.New("AccessDenied")})
			start := time.Now()
			if o := run(t.Context(), d, notice("m2")); o.err != nil {
				t.Fatalf("Drain: %v", o.err)
			}
			w.checkGone(t, "m2", ResultContinue)
			if took := time.Since(start); took > 2*time.Minute {
				t.Errorf("drain took %s", took)
			}
		})
	})
}

func TestTurnOfLeaderLast(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	mgr := func(id string, leader, leaving, holds bool) swarm.Node {
		n := swarm.Node{ID: id, Role: swarm.RoleManager, Reachability: reachable, Leader: leader, Labels: map[string]string{}}
		if leaving {
			n.Labels[swarm.LabelLeaving] = at.Add(time.Minute).Format(time.RFC3339) // marked after the leader
		}
		if holds {
			n.Labels[swarm.LabelTurn] = "1"
		}
		return n
	}
	alive := func(swarm.Node) bool { return true }
	tests := []struct {
		name  string
		nodes []swarm.Node // m1 decides
		mine  bool
		want  turn
	}{
		{name: "leader, another manager leaving: does not claim", nodes: []swarm.Node{mgr("m1", true, true, false), mgr("m2", false, true, false)}, want: turnWait},
		{name: "leader holding the turn, another manager leaving: gives it back", nodes: []swarm.Node{mgr("m1", true, true, true), mgr("m2", false, true, false)}, mine: true, want: turnYield},
		{name: "leader, nobody else leaving: claims", nodes: []swarm.Node{mgr("m1", true, true, false), mgr("m2", false, false, false)}, want: turnClaim},
		{name: "non-leader marked later than the leader: claims", nodes: []swarm.Node{mgr("m1", false, true, false), mgr("m2", true, true, false)}, want: turnClaim},
		{name: "leader, the other leaving one already demoted: claims", nodes: []swarm.Node{mgr("m1", true, true, false), {ID: "m2", Role: swarm.RoleWorker, Labels: map[string]string{swarm.LabelLeaving: at.Format(time.RFC3339)}}}, want: turnClaim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := turnOf(tt.nodes, "m1", at, tt.mine, alive); got != tt.want {
				t.Errorf("turnOf = %d, want %d", got, tt.want)
			}
		})
	}
}
