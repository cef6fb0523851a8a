package lifecycle

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// noticeWorld is a leader handling queued notices in a world, with a real remote Drainer.
type noticeWorld struct {
	*world
	ec2       *fakeEC2
	ev        *events
	h         *NoticeHandler
	drains    int       // drains on an instance's behalf
	drainedAt time.Time // when the last one started
}

func newNoticeWorld(t *testing.T, w *world, scaleIn string) *noticeWorld {
	w.scaleIn(scaleIn, 5*time.Minute)
	nw := &noticeWorld{world: w, ec2: newFakeEC2(w), ev: &events{}}
	nw.h = &NoticeHandler{Swarm: w.c, Hook: w.hook, Instances: nw.ec2, Grace: 30 * time.Second,
		Observe: nw.ev.observe, Log: testLogger(t),
		DrainOnBehalf: func(ctx context.Context, n Notice) error {
			nw.drains++
			nw.drainedAt = time.Now()
			d := &Drainer{Swarm: w.c, Local: RemoteLocal{Swarm: w.c, InstanceID: n.InstanceID}, Hook: w.hook,
				Log: testLogger(t), Options: DrainOptions{Remote: true, InstanceID: n.InstanceID}}
			_, err := d.Drain(ctx, n)
			return err
		}}
	return nw
}

func (nw *noticeWorld) handle(t *testing.T, n Notice) error {
	var err error
	done := make(chan struct{})
	go func() { // as the queue consumer does: a crash inside a fake ends only this goroutine
		defer close(done)
		err = nw.h.Handle(t.Context(), n)
	}()
	<-done
	return err
}

// TestNoticeHandler: the leader drains a node on its instance's behalf only when its own
// agent does not, only the instance's one live node, and only once EC2 confirms the node's
// address is the instance's.
func TestNoticeHandler(t *testing.T) {
	t.Run("agent dead: drained on its behalf after the grace", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			nw := newNoticeWorld(t, newWorld(3, 2), "w1")
			start := time.Now()
			if err := nw.handle(t, notice("w1")); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if c, _, _ := nw.hook.status(); !slices.Equal(c, []string{ResultContinue}) {
				t.Errorf("completions %v, want one CONTINUE", c)
			}
			if nw.j.index("availability w1 drain") < 0 {
				t.Errorf("w1 not drained: %q", nw.j.all())
			}
			if nw.drains != 1 || nw.drainedAt.Sub(start) < nw.h.Grace {
				t.Errorf("%d drains on its behalf, the last %s after the notice; want one after the %s grace",
					nw.drains, nw.drainedAt.Sub(start), nw.h.Grace)
			}
		})
	})
	t.Run("own agent draining: left to it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			nw := newNoticeWorld(t, newWorld(3, 2), "w1")
			own := nw.drainer(t, "w1", DrainOptions{})
			go func() { _, _ = own.Drain(t.Context(), notice("w1")) }()
			if err := nw.handle(t, notice("w1")); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if nw.drains != 0 {
				t.Errorf("drained on its behalf %d times while its own agent drained it", nw.drains)
			}
			if c, _, _ := nw.hook.status(); !slices.Equal(c, []string{ResultContinue}) {
				t.Errorf("completions %v, want the agent's one", c)
			}
		})
	})
	t.Run("the live node, not a ghost listed first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			j := &journal{}
			c := newFakeCluster(j)
			for _, n := range []struct {
				id   string
				role swarm.Role
				inst string
			}{
				{"m1", swarm.RoleManager, "i-m1"}, {"m2", swarm.RoleManager, "i-m2"}, {"m3", swarm.RoleManager, "i-m3"},
				{"w9", swarm.RoleWorker, "i-w1"}, {"w1", swarm.RoleWorker, "i-w1"}, {"w2", swarm.RoleWorker, "i-w2"},
			} {
				c.addNode(n.id, n.role, n.inst)
			}
			c.kill("w9")
			c.addService("web", 6)
			nw := newNoticeWorld(t, &world{j: j, c: c, reg: &fakeRegistrar{j: j}}, "w1")
			if err := nw.handle(t, notice("w1")); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if j.countPrefix("labels w9")+j.countPrefix("availability w9")+j.countPrefix("remove w9") != 0 {
				t.Errorf("the ghost was acted on: %q", j.all())
			}
			if j.index("availability w1 drain") < 0 {
				t.Errorf("the live node w1 was not drained: %q", j.all())
			}
		})
	})
	refused := []struct {
		name   string
		setup  func(nw *noticeWorld)
		want   error
		reason string
	}{
		{name: "two live nodes carry the instance id", want: ErrAmbiguous, reason: ReasonAmbiguous,
			setup: func(nw *noticeWorld) { nw.c.addNode("w9", swarm.RoleWorker, "i-w1") }},
		{name: "a worker labelled with a manager's instance id", want: ErrIdentity, reason: ReasonIdentity,
			setup: func(nw *noticeWorld) {
				nw.scaleIn("m2", 5*time.Minute)
				nw.h.Hook = nw.hook
				// Only w1 claims i-m2 (the manager's node carries another label): EC2 knows
				// i-m2 at m2's address, not at w1's.
				nw.c.label("m2", swarm.LabelInstanceID, "i-m2-old")
				nw.c.label("w1", swarm.LabelInstanceID, "i-m2")
			}},
		{name: "EC2 does not know the instance", want: ErrIdentity, reason: ReasonIdentity,
			setup: func(nw *noticeWorld) { delete(nw.ec2.addrs, "i-w1") }},
		{name: "no EC2", want: ErrIdentity, reason: ReasonIdentity,
			setup: func(nw *noticeWorld) { nw.h.Instances = nil }},
	}
	for _, tt := range refused {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				nw := newNoticeWorld(t, newWorld(3, 2), "w1")
				tt.setup(nw)
				n := Notice{Kind: "scale-in", InstanceID: nw.hook.instanceID, Source: "queue"}
				err := nw.handle(t, n)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Handle error = %v, want %v", err, tt.want)
				}
				if got := nw.j.all(); len(got) != 0 {
					t.Errorf("a refused notice changed things: %q", got)
				}
				if c, beats, _ := nw.hook.status(); len(c) != 0 || beats != 0 {
					t.Errorf("completions %v and %d heartbeats for a refused notice", c, beats)
				}
				if e := nw.ev.all(); !slices.Equal(e, []string{EventRefused + " " + tt.reason}) {
					t.Errorf("events %q, want one %s refusal", e, tt.reason)
				}
			})
		})
	}
}
