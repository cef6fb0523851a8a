package lifecycle

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// TestScheduledChanges: the leader's side of AWS Health's scheduled changes (queue mode).
func TestScheduledChanges(t *testing.T) {
	now := time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC)
	lead, grace := 30*time.Minute, 30*time.Second
	reboot := ScheduledEvent{ID: "arn:aws:health:eu-west-1::event/EC2/AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED/x", Code: EventSystemReboot,
		State: EventActive, NotBefore: now.Add(20 * time.Minute), NotAfter: now.Add(2 * time.Hour)}
	setup := func(t *testing.T) (*world, *ScheduledChanges, *fakeEC2, *events, *[]Notice) {
		w := newWorld(3, 3)
		ec2, ev := newFakeEC2(w), &events{}
		var stops []Notice
		sc := &ScheduledChanges{Swarm: w.c, Instances: ec2, Lead: lead, Grace: grace, Self: "i-m1",
			Owns: func(_ context.Context, id string) (bool, error) { return id != "i-other", nil },
			Stop: func(_ context.Context, n Notice) error { stops = append(stops, n); return nil },
			Log:  testLogger(t), Observe: ev.observe}
		return w, sc, ec2, ev, &stops
	}
	node := func(w *world, id string) swarm.Node { n, _ := w.c.node(id); return n }

	t.Run("a reboot whose node's agent is dead: drained after the grace, once", func(t *testing.T) {
		w, sc, _, ev, _ := setup(t)
		again, err := sc.Handle(t.Context(), reboot, []string{"i-w1"}, now)
		if err != nil || again != grace || node(w, "w1").Availability != "active" {
			t.Fatalf("first look: again %s err %v, w1 %s; want the agent's grace, w1 left active", again, err, node(w, "w1").Availability)
		}
		again, err = sc.Handle(t.Context(), reboot, []string{"i-w1"}, now.Add(grace))
		n := node(w, "w1")
		if err != nil || again != 0 || n.Availability != "drain" || n.Labels[swarm.LabelMaintenance] != reboot.ID {
			t.Fatalf("after the grace: again %s err %v, w1 %s labels %v; want drained and marked", again, err, n.Availability, n.Labels)
		}
		if _, err := sc.Handle(t.Context(), reboot, []string{"i-w1"}, now.Add(time.Minute)); err != nil || !slices.Equal(ev.all(), []string{"maintenance drained"}) {
			t.Fatalf("events %q err %v; want one drain", ev.all(), err)
		}
	})
	t.Run("not due yet: looked at again when the lead begins", func(t *testing.T) {
		w, sc, _, _, _ := setup(t)
		early := now.Add(-2 * time.Hour)
		again, err := sc.Handle(t.Context(), reboot, []string{"i-w1"}, early)
		if err != nil || again != reboot.NotBefore.Add(-lead).Sub(early) || node(w, "w1").Availability != "active" {
			t.Fatalf("again %s err %v; want %s, nothing done", again, err, reboot.NotBefore.Add(-lead).Sub(early))
		}
	})
	t.Run("the node's own agent drained it: left to it", func(t *testing.T) {
		w, sc, _, ev, _ := setup(t)
		if err := w.c.SetNodeLabels(t.Context(), "w1", map[string]string{swarm.LabelMaintenance: "instance-event-0123"}); err != nil {
			t.Fatal(err)
		}
		if again, err := sc.Handle(t.Context(), reboot, []string{"i-w1"}, now); err != nil || again != 0 || len(ev.all()) != 0 || node(w, "w1").Labels[swarm.LabelMaintenance] != "instance-event-0123" {
			t.Fatalf("again %s err %v events %q; want nothing done", again, err, ev.all())
		}
	})
	t.Run("an operator's drain, another cluster's instance, this node: left alone", func(t *testing.T) {
		w, sc, _, ev, _ := setup(t)
		if err := w.c.SetAvailability(t.Context(), "w2", "pause"); err != nil {
			t.Fatal(err)
		}
		again, err := sc.Handle(t.Context(), reboot, []string{"i-w2", "i-other", "i-m1"}, now.Add(time.Hour/2))
		if err != nil || again != ForeignRecheck || len(ev.all()) != 0 || node(w, "w2").Availability != "pause" || node(w, "m1").Availability != "active" {
			t.Fatalf("again %s err %v events %q; want nothing done, another look for the other cluster", again, err, ev.all())
		}
	})
	t.Run("EC2 does not confirm the node's instance", func(t *testing.T) {
		w, sc, ec2, ev, _ := setup(t)
		ec2.addrs["i-w1"] = []string{"10.9.9.9"}
		_, _ = sc.Handle(t.Context(), reboot, []string{"i-w1"}, now)
		if _, err := sc.Handle(t.Context(), reboot, []string{"i-w1"}, now.Add(grace)); err != nil || node(w, "w1").Availability != "active" || !slices.Equal(ev.all(), []string{"refused identity"}) {
			t.Fatalf("err %v w1 %s events %q; want refused", err, node(w, "w1").Availability, ev.all())
		}
	})
	t.Run("a retirement goes the termination notice's way, with its window as deadline", func(t *testing.T) {
		_, sc, _, _, stops := setup(t)
		ret := reboot
		ret.Code, ret.ID = EventInstanceRetirement, "arn:retire"
		if again, err := sc.Handle(t.Context(), ret, []string{"i-w1", "i-w3"}, now); err != nil || again != 0 {
			t.Fatalf("again %s err %v", again, err)
		}
		want := []Notice{{Kind: EventInstanceRetirement, InstanceID: "i-w1", Source: "queue", Deadline: ret.NotBefore},
			{Kind: EventInstanceRetirement, InstanceID: "i-w3", Source: "queue", Deadline: ret.NotBefore}}
		if !slices.Equal(*stops, want) {
			t.Fatalf("stops %+v, want %+v", *stops, want)
		}
		_, _ = sc.Handle(t.Context(), ret, []string{"i-w1", "i-w3"}, now.Add(time.Minute))
		if len(*stops) != 2 {
			t.Fatalf("a redelivered event drained again: %d stops", len(*stops))
		}
	})
	t.Run("a failing stop is retried", func(t *testing.T) {
		_, sc, _, _, _ := setup(t)
		sc.Stop = func(context.Context, Notice) error { return errors.New("swarm unreachable") }
		ret := reboot
		ret.Code = EventInstanceStop
		if _, err := sc.Handle(t.Context(), ret, []string{"i-w1"}, now); err == nil {
			t.Fatal("no error: the event would be deleted unhandled")
		}
	})
	t.Run("closed or past its window: nothing", func(t *testing.T) {
		w, sc, _, _, _ := setup(t)
		closed := reboot
		closed.State = EventCompleted
		for _, c := range []struct {
			ev ScheduledEvent
			at time.Time
		}{{closed, now}, {reboot, reboot.NotAfter.Add(time.Minute)}} {
			if again, err := sc.Handle(t.Context(), c.ev, []string{"i-w1"}, c.at); err != nil || again != 0 || node(w, "w1").Availability != "active" {
				t.Fatalf("again %s err %v; want nothing", again, err)
			}
		}
	})
}
