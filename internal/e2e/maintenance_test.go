package e2e

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// TestIntegrationScheduledEvents is issue 15's proof for EC2 scheduled events and failing
// status checks on real engines, `swarm-agent run` on every node and a replicated service:
//
//   - a scheduled system reboot of a worker (instance metadata events/maintenance/scheduled,
//     as AWS serves it): the worker's own agent drains it before the event's NotBefore; the
//     instance "reboots" (agent and engine killed, the event completed, both started again)
//     and the node is made active again once it is back; all along, every replica runs, none
//     on the rebooting node;
//   - a worker whose instance's status checks fail (DescribeInstanceStatus impaired): the
//     leader drains it, and makes it active again once the checks pass;
//   - a scheduled instance stop: the worker drains and leaves the swarm before NotBefore, and
//     its agent exits 0.
func TestIntegrationScheduledEvents(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, 3)
	ctx := t.Context()
	mgr, w1, w2, w3 := c.Bed.Nodes[0], c.Bed.Nodes[1], c.Bed.Nodes[2], c.Bed.Nodes[3]
	bootAll(t, c, 1)
	runArgs := []string{"--watch-interval=300ms", "--maintenance-lead=10m", "--drain-deadline=2m"}
	agents := startRuns(t, c, c.Bed.Nodes, runArgs...)
	d := must[*client.Client](t)(c.Docker(mgr))
	svc := sleepService(t, d, "web", 6, 2*time.Second)

	nodeIDs := map[string]string{}
	for _, n := range c.Bed.Nodes {
		nodeIDs[n.Name] = nodeIDOf(t, c, n)
	}
	node := func(n *testbed.Node) (localcluster.NodeRow, error) {
		id := nodeIDs[n.Name]
		rows, err := c.Nodes(ctx, mgr)
		if err != nil {
			return localcluster.NodeRow{}, err
		}
		for _, r := range rows {
			if r.ID == id {
				return r, nil
			}
		}
		return localcluster.NodeRow{}, fmt.Errorf("%s (%s) not in the node list", n.Name, id)
	}
	// drainedAway: n is drained with mark=value (label), nothing of the service runs on it,
	// and every replica runs elsewhere.
	drainedAway := func(n *testbed.Node, label, value string) error {
		r, err := node(n)
		if err != nil {
			return err
		}
		on, running, err := localcluster.RunningTasks(ctx, d, svc)
		switch {
		case err != nil:
			return err
		case r.Availability != "drain":
			return fmt.Errorf("%s is %s", n.Name, r.Availability)
		case value != "" && r.Labels[label] != value || value == "" && r.Labels[label] == "":
			return fmt.Errorf("%s labels %v, want %s=%q", n.Name, r.Labels, label, value)
		case on[r.ID] != 0 || running != 6:
			return fmt.Errorf("%d replicas running, %d on %s", running, on[r.ID], n.Name)
		}
		return nil
	}
	activeAgain := func(n *testbed.Node, label string) func() error {
		return func() error {
			r, err := node(n)
			switch {
			case err != nil:
				return err
			case r.State != "ready" || r.Availability != "active" || r.Labels[label] != "":
				return fmt.Errorf("%s is %s/%s, labels %v", n.Name, r.State, r.Availability, r.Labels)
			}
			return nil
		}
	}

	t.Run("scheduled reboot: drained before its window, active again after", func(t *testing.T) {
		id := c.InstanceID(w1)
		nodeID := nodeIDOf(t, c, w1)
		notBefore := time.Now().Add(45 * time.Second).UTC().Truncate(time.Second)
		ev, err := c.Front.ScheduleEvent(id, imdsfake.Event{Code: "system-reboot", Description: "scheduled reboot",
			NotBefore: notBefore, NotAfter: notBefore.Add(15 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		waitfor.Until(t, time.Until(notBefore), w1.Name+" drained, its replicas elsewhere, before NotBefore", func() error {
			return drainedAway(w1, swarm.LabelMaintenance, ev.ID)
		})
		t.Logf("drained with %s to spare before NotBefore", time.Until(notBefore).Round(time.Second))

		// From here until the node is active again: every replica runs, none on w1.
		inv := watchInvariant(t, 300*time.Millisecond, func() error {
			on, running, err := localcluster.RunningTasks(ctx, d, svc)
			switch {
			case err != nil:
				return nil // the manager's API may be busy; a failed sample proves nothing
			case running != 6 || on[nodeID] != 0:
				return fmt.Errorf("%d replicas running, %d on %s", running, on[nodeID], w1.Name)
			}
			return nil
		})

		// The reboot, in its window: the power goes (agent and engine killed), AWS completes
		// the event, the machine starts again (engine, then the agent as systemd would).
		time.Sleep(time.Until(notBefore))
		a := agents[w1.Name]
		if err := a.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-a.Done()
		if err := c.Bed.KillEngine(w1); err != nil {
			t.Fatal(err)
		}
		if err := c.Front.EndEvent(id, ev.ID, imdsfake.EventCompleted); err != nil {
			t.Fatal(err)
		}
		waitfor.Until(t, time.Minute, "the manager to see "+w1.Name+" down", func() error {
			if r, err := node(w1); err != nil || r.State != "down" {
				return fmt.Errorf("%+v %v", r, err)
			}
			return nil
		})
		if err := c.Bed.StartEngine(ctx, w1); err != nil {
			t.Fatal(err)
		}
		again, err := c.StartRun(ctx, w1, runArgs...)
		if err != nil {
			t.Fatal(err)
		}
		agents[w1.Name] = again
		t.Cleanup(func() { again.Stop(10 * time.Second) })
		back := time.Now()
		waitfor.Until(t, 2*time.Minute, w1.Name+" active again after the reboot", activeAgain(w1, swarm.LabelMaintenance))
		samples := inv.stop(t)
		t.Logf("active again %s after the restart; %d samples of the replicas, all 6 running, none on %s",
			time.Since(back).Round(time.Millisecond), samples, w1.Name)
		waitfor.Until(t, time.Minute, w1.Name+"'s engine back in the swarm", func() error {
			v, err := c.View(ctx, []*testbed.Node{w1})
			switch {
			case err != nil:
				return err
			case v.NodeIDs[w1.Name] != nodeID:
				return fmt.Errorf("node id %q (inactive %v), want %s: it should have stayed in the swarm", v.NodeIDs[w1.Name], v.Inactive, nodeID)
			}
			return nil
		})
		if log := again.Log(); !strings.Contains(log, "node active again") {
			t.Errorf("the agent did not say it made the node active again:\n%s", tail(log, 20))
		}
	})

	t.Run("failing status checks: drained by the leader, active again once they pass", func(t *testing.T) {
		id := c.InstanceID(w2)
		if err := c.Front.SetStatusChecks(id, awsfront.StatusChecks{System: "ok", Instance: "impaired"}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitfor.Until(t, 2*time.Minute, w2.Name+" drained by the leader, its replicas elsewhere", func() error {
			return drainedAway(w2, swarm.LabelImpaired, "")
		})
		t.Logf("drained %s after the checks failed", time.Since(start).Round(time.Second))
		if err := c.Front.SetStatusChecks(id, awsfront.StatusChecks{System: "ok", Instance: "ok"}); err != nil {
			t.Fatal(err)
		}
		waitfor.Until(t, time.Minute, w2.Name+" active again", activeAgain(w2, swarm.LabelImpaired))
		if log := agents[mgr.Name].Log(); !strings.Contains(log, "status checks fail: node drained") {
			t.Errorf("the leader did not say why it drained %s:\n%s", w2.Name, tail(log, 20))
		}
	})

	t.Run("scheduled stop: drained out of the swarm before its window", func(t *testing.T) {
		id := c.InstanceID(w3)
		nodeID := nodeIDOf(t, c, w3)
		notBefore := time.Now().Add(90 * time.Second).UTC().Truncate(time.Second)
		if _, err := c.Front.ScheduleEvent(id, imdsfake.Event{Code: "instance-stop", Description: "The instance is running on degraded hardware",
			NotBefore: notBefore}); err != nil {
			t.Fatal(err)
		}
		a := agents[w3.Name]
		select {
		case <-a.Done():
		case <-time.After(time.Until(notBefore)):
			t.Fatalf("%s's agent did not drain and exit before NotBefore:\n%s", w3.Name, tail(a.Log(), 20))
		}
		if code := a.Code(); code != 0 {
			t.Fatalf("%s's agent exit %d, want 0:\n%s", w3.Name, code, tail(a.Log(), 20))
		}
		for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(ctx, mgr)) {
			if r.ID == nodeID {
				t.Fatalf("%s still in the node list: %+v", w3.Name, r)
			}
		}
		if on, running, err := localcluster.RunningTasks(ctx, d, svc); err != nil || running != 6 || on[nodeID] != 0 {
			t.Fatalf("after the stop's drain: %d running, %d on %s (%v)", running, on[nodeID], w3.Name, err)
		}
		v := must[localcluster.View](t)(c.View(ctx, []*testbed.Node{w3}))
		if len(v.Inactive) != 1 {
			t.Fatalf("%s is still in a swarm: %+v", w3.Name, v)
		}
		t.Logf("left the swarm %s before NotBefore", time.Until(notBefore).Round(time.Second))
	})
}

// invariant samples a condition in the background until stop; the first failure is kept.
type invariant struct {
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	samples int
}

func watchInvariant(t *testing.T, every time.Duration, cond func() error) *invariant {
	t.Helper()
	inv := &invariant{done: make(chan struct{})}
	inv.wg.Go(func() {
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			err := cond()
			inv.mu.Lock()
			inv.samples++
			if err != nil && inv.err == nil {
				inv.err = fmt.Errorf("sample %d at %s: %w", inv.samples, time.Now().Format("15:04:05.000"), err)
			}
			inv.mu.Unlock()
			select {
			case <-inv.done:
				return
			case <-tk.C:
			}
		}
	})
	t.Cleanup(func() { inv.halt() })
	return inv
}

func (inv *invariant) halt() {
	select {
	case <-inv.done:
	default:
		close(inv.done)
	}
	inv.wg.Wait()
}

// stop ends the sampling and fails the test if the invariant broke; it returns the samples.
func (inv *invariant) stop(t *testing.T) int {
	t.Helper()
	inv.halt()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.err != nil {
		t.Fatalf("invariant broke: %v", inv.err)
	}
	return inv.samples
}
