package lifecycle

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestScheduledEventClasses(t *testing.T) {
	now := time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)
	ev := func(id, code, state string, in time.Duration) ScheduledEvent {
		return ScheduledEvent{ID: id, Code: code, State: state, NotBefore: now.Add(in)}
	}
	for _, tt := range []struct {
		code           string
		reboots, stops bool
	}{
		{EventInstanceReboot, true, false}, {EventSystemReboot, true, false}, {EventSystemMaintenance, true, false},
		{EventInstanceStop, false, true}, {EventInstanceRetirement, false, true}, {"something-new", false, false},
	} {
		e := ev("e", tt.code, EventActive, 0)
		if e.Reboots() != tt.reboots || e.Stops() != tt.stops {
			t.Errorf("%s: Reboots %v Stops %v, want %v %v", tt.code, e.Reboots(), e.Stops(), tt.reboots, tt.stops)
		}
	}
	events := []ScheduledEvent{
		ev("late", EventSystemReboot, EventActive, 2*time.Hour),
		ev("soon", EventInstanceReboot, EventActive, 20*time.Minute),
		ev("done", EventSystemReboot, EventCompleted, -time.Hour),
		ev("stop", EventInstanceStop, EventActive, 10*time.Minute),
		ev("started", EventSystemMaintenance, EventCanceled, -time.Minute),
	}
	if e, ok := DueEvent(events, now, 30*time.Minute, ScheduledEvent.Reboots); !ok || e.ID != "soon" {
		t.Errorf("due reboot within 30m: %+v %v, want soon", e, ok)
	}
	if e, ok := DueEvent(events, now, 3*time.Hour, ScheduledEvent.Reboots); !ok || e.ID != "soon" {
		t.Errorf("due reboot within 3h: %+v %v, want the earliest, soon", e, ok)
	}
	if e, ok := DueEvent(events, now, 5*time.Minute, ScheduledEvent.Reboots); ok {
		t.Errorf("due reboot within 5m: %+v, want none (ended events do not count)", e)
	}
	if e, ok := DueEvent(events, now, 30*time.Minute, ScheduledEvent.Stops); !ok || e.ID != "stop" {
		t.Errorf("due stop: %+v %v", e, ok)
	}
	if _, ok := DueEvent(events, now.Add(time.Hour), 0, ScheduledEvent.Stops); !ok {
		t.Errorf("a stop whose window started is still due")
	}
}

// TestMaintainer: a reboot event drains the node ahead of its window, once; the node stays
// drained (its tasks elsewhere) while the event is due; once the event is over and the node
// is ready it is made active again. A node drained by someone else is left drained, before
// and after; a crash between the mark and the drain is mended by the next pass.
func TestMaintainer(t *testing.T) {
	now := time.Now()
	reboot := ScheduledEvent{ID: "instance-event-1", Code: EventSystemReboot, State: EventActive, NotBefore: now.Add(10 * time.Minute)}
	far := reboot
	far.NotBefore = now.Add(48 * time.Hour)
	stop := ScheduledEvent{ID: "instance-event-2", Code: EventInstanceStop, State: EventActive, NotBefore: now.Add(time.Minute)}
	done := reboot
	done.State = EventCompleted

	newM := func(t *testing.T, w *world) (*Maintainer, *events) {
		ev := &events{}
		return &Maintainer{Swarm: w.c, Lead: 30 * time.Minute, Log: testLogger(t), Observe: ev.observe}, ev
	}
	pass := func(t *testing.T, m *Maintainer, evs []ScheduledEvent) MaintenanceState {
		t.Helper()
		st, err := m.Pass(t.Context(), "w1", evs, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	node := func(w *world) swarm.Node { n, _ := w.c.node("w1"); return n }

	t.Run("reboot: drain ahead, active again after", func(t *testing.T) {
		w := newWorld(1, 2)
		m, ev := newM(t, w)
		if st := pass(t, m, []ScheduledEvent{far, stop}); st.Drained || node(w).Availability != "active" {
			t.Fatalf("an event 48 h away and a stop event: %+v, node %s; want left active", st, node(w).Availability)
		}
		st := pass(t, m, []ScheduledEvent{reboot})
		if !st.Drained || st.Event.ID != reboot.ID || node(w).Availability != "drain" || node(w).Labels[swarm.LabelMaintenance] != reboot.ID {
			t.Fatalf("due reboot: %+v, node %+v", st, node(w))
		}
		pass(t, m, []ScheduledEvent{reboot}) // still due: nothing more
		w.inOrder(t, "labels w1 map["+swarm.LabelMaintenance+":instance-event-1]", "availability w1 drain")
		if n := w.j.countPrefix("availability w1"); n != 1 {
			t.Errorf("availability changed %d times while the event stood, want once: %v", n, w.j.all())
		}
		w.c.setState("w1", "down") // the reboot
		if st := pass(t, m, []ScheduledEvent{done}); st.Restored || node(w).Availability != "drain" {
			t.Fatalf("event over but node down: %+v; want it kept drained until it is back", st)
		}
		w.c.setState("w1", "ready")
		if st := pass(t, m, []ScheduledEvent{done}); !st.Restored || node(w).Availability != "active" || node(w).Labels[swarm.LabelMaintenance] != "" {
			t.Fatalf("back after the event: %+v, node %+v; want active, unmarked", st, node(w))
		}
		w.inOrder(t, "availability w1 active", "labels w1 map["+swarm.LabelMaintenance+":]")
		if got := ev.all(); !slices.Equal(got, []string{"maintenance drained", "maintenance restored"}) {
			t.Errorf("events %q", got)
		}
	})
	t.Run("canceled event: active again", func(t *testing.T) {
		w := newWorld(1, 2)
		m, _ := newM(t, w)
		pass(t, m, []ScheduledEvent{reboot})
		if st := pass(t, m, nil); !st.Restored || node(w).Availability != "active" {
			t.Fatalf("event gone: %+v", st)
		}
	})
	t.Run("an operator's drain stays", func(t *testing.T) {
		w := newWorld(1, 2)
		m, ev := newM(t, w)
		if err := w.c.SetAvailability(t.Context(), "w1", "drain"); err != nil {
			t.Fatal(err)
		}
		if st := pass(t, m, []ScheduledEvent{reboot}); st.Drained || node(w).Labels[swarm.LabelMaintenance] != "" {
			t.Fatalf("operator's drain: %+v, labels %v; want no mark", st, node(w).Labels)
		}
		pass(t, m, nil)
		if node(w).Availability != "drain" || len(ev.all()) != 0 {
			t.Fatalf("after the event: %s, events %v; want the operator's drain kept", node(w).Availability, ev.all())
		}
	})
	t.Run("crash between mark and drain", func(t *testing.T) {
		w := newWorld(1, 2)
		m, _ := newM(t, w)
		w.c.label("w1", swarm.LabelMaintenance, reboot.ID) // marked, still active
		if st := pass(t, m, []ScheduledEvent{reboot}); !st.Drained || node(w).Availability != "drain" {
			t.Fatalf("%+v: want drained", st)
		}
		w.c.label("w1", swarm.LabelMaintenance, "old-event") // made active, mark not yet taken away
		if err := w.c.SetAvailability(t.Context(), "w1", "active"); err != nil {
			t.Fatal(err)
		}
		pass(t, m, nil)
		if n := node(w); n.Availability != "active" || n.Labels[swarm.LabelMaintenance] != "" {
			t.Fatalf("%+v: want active, unmarked", n)
		}
	})
	t.Run("swarm fails", func(t *testing.T) {
		w := newWorld(1, 2)
		m, _ := newM(t, w)
		w.c.inject("SetAvailability", failErr, 0)
		if _, err := m.Pass(t.Context(), "w1", []ScheduledEvent{reboot}, time.Now()); err == nil {
			t.Fatal("no error while the swarm refuses the drain")
		}
		w.c.clearFaults()
		if st := pass(t, m, []ScheduledEvent{reboot}); !st.Drained {
			t.Fatalf("next pass: %+v, want drained", st)
		}
	})
}

// fakeStatuses is EC2's DescribeInstanceStatus: every instance healthy unless set.
type fakeStatuses struct {
	mu  sync.Mutex
	bad map[string]string // instance id -> impaired check ("system" or "instance")
	err error
}

func (f *fakeStatuses) set(id, check string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bad == nil {
		f.bad = map[string]string{}
	}
	if check == "" {
		delete(f.bad, id)
		return
	}
	f.bad[id] = check
}

func (f *fakeStatuses) Statuses(_ context.Context, ids []string) (map[string]InstanceStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := map[string]InstanceStatus{}
	for _, id := range ids {
		st := InstanceStatus{InstanceID: id, State: "running", System: StatusOK, Instance: StatusOK}
		switch f.bad[id] {
		case "system":
			st.System = StatusImpaired
		case "instance":
			st.Instance = StatusImpaired
		case "insufficient":
			st.Instance = "insufficient-data"
		}
		out[id] = st
	}
	return out, nil
}

// TestHealth: the leader drains a node whose instance fails a status check, once EC2
// confirms the node's instance, and makes it active again when the checks pass; never more
// than a third of the nodes at once; an operator's drain and an ambiguous instance id are
// left alone.
func TestHealth(t *testing.T) {
	pass := func(t *testing.T, h *Health, w *world) {
		t.Helper()
		nodes, err := w.c.Nodes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Pass(t.Context(), nodes); err != nil {
			t.Fatal(err)
		}
	}
	avail := func(w *world, id string) string { n, _ := w.c.node(id); return n.Availability }
	setup := func(t *testing.T, managers, workers int) (*world, *Health, *fakeStatuses, *fakeEC2, *events) {
		w := newWorld(managers, workers)
		st, ec2, ev := &fakeStatuses{}, newFakeEC2(w), &events{}
		return w, &Health{Swarm: w.c, Status: st, Instances: ec2, Log: testLogger(t), Observe: ev.observe}, st, ec2, ev
	}

	t.Run("impaired, then healthy", func(t *testing.T) {
		w, h, st, _, ev := setup(t, 3, 3)
		pass(t, h, w)
		st.set("i-w2", "system")
		pass(t, h, w)
		pass(t, h, w)
		if avail(w, "w2") != "drain" {
			t.Fatalf("w2 %s, want drain", avail(w, "w2"))
		}
		n, _ := w.c.node("w2")
		if n.Labels[swarm.LabelImpaired] == "" {
			t.Fatalf("w2 not marked: %v", n.Labels)
		}
		st.set("i-w2", "insufficient") // not a pass: stays drained
		pass(t, h, w)
		if avail(w, "w2") != "drain" {
			t.Fatalf("insufficient data: w2 %s, want still drained", avail(w, "w2"))
		}
		st.set("i-w2", "")
		pass(t, h, w)
		n, _ = w.c.node("w2")
		if n.Availability != "active" || n.Labels[swarm.LabelImpaired] != "" {
			t.Fatalf("healthy again: %+v", n)
		}
		if got := ev.all(); !slices.Equal(got, []string{"impaired drained", "impaired restored"}) {
			t.Errorf("events %q", got)
		}
	})
	t.Run("at most a third", func(t *testing.T) {
		w, h, st, _, ev := setup(t, 3, 3) // 6 nodes: 2 at most
		for _, id := range []string{"i-w1", "i-w2", "i-w3", "i-m2"} {
			st.set(id, "instance")
		}
		pass(t, h, w)
		pass(t, h, w)
		drained := 0
		for _, n := range w.c.nodesNow() {
			if n.Availability == "drain" {
				drained++
			}
		}
		if drained != 2 {
			t.Fatalf("%d nodes drained, want 2 of 6", drained)
		}
		if got := ev.all(); !slices.Equal(got, []string{"impaired drained", "impaired drained", "impaired limit", "impaired limit"}) {
			t.Errorf("events %q (the limit told once per node)", got)
		}
	})
	t.Run("EC2 does not confirm the node's instance", func(t *testing.T) {
		w, h, st, ec2, ev := setup(t, 1, 2)
		ec2.addrs["i-w1"] = []string{"10.9.9.9"}
		st.set("i-w1", "system")
		pass(t, h, w)
		pass(t, h, w)
		if avail(w, "w1") != "active" || !slices.Equal(ev.all(), []string{"refused identity"}) {
			t.Fatalf("w1 %s, events %q; want active, refused once", avail(w, "w1"), ev.all())
		}
	})
	t.Run("an operator's drain stays", func(t *testing.T) {
		w, h, st, _, _ := setup(t, 1, 2)
		if err := w.c.SetAvailability(t.Context(), "w1", "drain"); err != nil {
			t.Fatal(err)
		}
		st.set("i-w1", "system")
		pass(t, h, w)
		st.set("i-w1", "")
		pass(t, h, w)
		if avail(w, "w1") != "drain" {
			t.Fatalf("w1 %s: the operator's drain was undone", avail(w, "w1"))
		}
	})
	t.Run("two live nodes claim the instance", func(t *testing.T) {
		w, h, st, _, ev := setup(t, 1, 2)
		w.c.label("w2", swarm.LabelInstanceID, "i-w1")
		st.set("i-w1", "system")
		pass(t, h, w)
		if avail(w, "w1") != "active" || avail(w, "w2") != "active" || !slices.Contains(ev.all(), "refused ambiguous") {
			t.Fatalf("w1 %s w2 %s events %q", avail(w, "w1"), avail(w, "w2"), ev.all())
		}
	})
	t.Run("EC2 fails", func(t *testing.T) {
		w, h, st, _, _ := setup(t, 1, 1)
		st.err = errors.New("RequestLimitExceeded")
		nodes, _ := w.c.Nodes(t.Context())
		if err := h.Pass(t.Context(), nodes); err == nil {
			t.Fatal("no error")
		}
	})
}
