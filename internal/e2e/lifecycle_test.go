package e2e

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestIntegrationScaleIn is the lifecycle issue's proof on real engines: `swarm-agent run` on
// every node, a replicated service spread over them, and scale-in through the Auto Scaling
// front: the node's tasks run elsewhere, the node is gone from the node list, and the
// lifecycle action is completed exactly once with CONTINUE, with heartbeats while it took.
func TestIntegrationScaleIn(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 3, 5)
	ctx := t.Context()
	managers, workers := c.Bed.Nodes[:3], c.Bed.Nodes[3:]
	bootAll(t, c, 3)
	agents := startRuns(t, c, c.Bed.Nodes, "--watch-interval=300ms", "--heartbeat-interval=2s", "--drain-deadline=2m")
	leader := managers[0]
	d := must[*client.Client](t)(c.Docker(leader))
	// Busybox's sleep as PID 1 ignores SIGTERM: each task takes its stop grace period to stop,
	// so the drain outlasts a heartbeat interval.
	svc := sleepService(t, d, "web", 6, 4*time.Second)

	scaleIn := func(t *testing.T, n *testbed.Node, mgr *testbed.Node, during func()) awsfront.Action {
		t.Helper()
		id := c.InstanceID(n)
		nodeID := nodeIDOf(t, c, n)
		if err := c.Front.StartScaleIn(ctx, id); err != nil {
			t.Fatal(err)
		}
		if during != nil {
			during()
		}
		var act awsfront.Action
		waitfor.Until(t, 3*time.Minute, "lifecycle action of "+n.Name+" completed", func() error {
			a, ok := c.Front.LifecycleAction(id)
			if !ok || a.Result == "" {
				return fmt.Errorf("action %+v", a)
			}
			act = a
			return nil
		})
		if act.Result != "CONTINUE" || act.TimedOut || act.Completions != 1 {
			t.Fatalf("%s: result %s timed out %v completions %d; want one CONTINUE by the agent", n.Name, act.Result, act.TimedOut, act.Completions)
		}
		md := must[*client.Client](t)(c.Docker(mgr))
		on, running, err := localcluster.RunningTasks(ctx, md, svc)
		if err != nil {
			t.Fatal(err)
		}
		if running != 6 || on[nodeID] != 0 {
			t.Fatalf("after %s's drain: %d tasks running (want 6), %d still on it", n.Name, running, on[nodeID])
		}
		rows := must[[]localcluster.NodeRow](t)(c.Nodes(ctx, mgr))
		for _, r := range rows {
			if r.ID == nodeID {
				t.Fatalf("%s still in the node list: %+v", n.Name, r)
			}
		}
		return act
	}

	t.Run("worker", func(t *testing.T) {
		act := scaleIn(t, workers[2], leader, nil)
		if act.Heartbeats == 0 {
			t.Errorf("no heartbeat recorded during a drain longer than the heartbeat interval")
		}
		select {
		case <-agents[workers[2].Name].Done():
		case <-time.After(30 * time.Second):
			t.Errorf("the drained worker's agent did not exit")
		}
		completedSoonAfterLeaving(t, agents[workers[2].Name].Log())
	})

	t.Run("SIGTERM to the agent mid-drain", func(t *testing.T) {
		n := workers[1]
		a := agents[n.Name]
		scaleIn(t, n, leader, func() {
			waitfor.Until(t, time.Minute, "drain started on "+n.Name, func() error {
				if !strings.Contains(a.Log(), `"drain"`) && !strings.Contains(a.Log(), "draining") {
					return fmt.Errorf("not yet")
				}
				return nil
			})
			if err := a.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		})
	})

	t.Run("agent killed mid-drain and started again finishes once", func(t *testing.T) {
		n := workers[3]
		a := agents[n.Name]
		act := scaleIn(t, n, leader, func() {
			waitfor.Until(t, time.Minute, "drain started on "+n.Name, func() error {
				if !strings.Contains(a.Log(), "draining") {
					return fmt.Errorf("not yet")
				}
				return nil
			})
			if err := a.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-a.Done()
			again, err := c.StartRun(ctx, n, "--watch-interval=300ms", "--heartbeat-interval=2s", "--drain-deadline=2m")
			if err != nil {
				t.Fatal(err)
			}
			agents[n.Name] = again
			t.Cleanup(func() { again.Stop(10 * time.Second) })
		})
		if act.Completions != 1 {
			t.Fatalf("%d CompleteLifecycleAction calls, want exactly 1", act.Completions)
		}
	})

	// A drain that left the swarm and died before completing (SIGKILL, a failed completion)
	// is restarted by systemd: run must see the instance terminating and finish the drain,
	// never boot the node into the swarm again.
	t.Run("agent killed after leaving is not booted again", func(t *testing.T) {
		n := workers[0]
		a := agents[n.Name]
		id := c.InstanceID(n)
		nodeID := nodeIDOf(t, c, n)
		if err := c.Front.StartScaleIn(ctx, id); err != nil {
			t.Fatal(err)
		}
		waitfor.Until(t, 2*time.Minute, n.Name+" left the swarm", func() error {
			v, err := c.View(ctx, []*testbed.Node{n})
			if err != nil || len(v.Inactive) == 0 {
				return fmt.Errorf("still in the swarm (%v)", err)
			}
			return nil
		})
		if err := a.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-a.Done()
		again, err := c.StartRun(ctx, n, "--watch-interval=300ms", "--heartbeat-interval=2s", "--drain-deadline=2m")
		if err != nil {
			t.Fatal(err)
		}
		agents[n.Name] = again
		t.Cleanup(func() { again.Stop(10 * time.Second) })
		select {
		case <-again.Done():
		case <-time.After(2 * time.Minute):
			t.Fatal("the restarted agent did not finish the drain and exit")
		}
		if code := again.Code(); code != 0 {
			t.Errorf("restarted agent exit %d, want 0", code)
		}
		if !strings.Contains(again.Log(), "resuming its drain instead of booting") {
			t.Errorf("restarted agent did not say it resumed the drain:\n%s", tail(again.Log(), 20))
		}
		act, _ := c.Front.LifecycleAction(id)
		if act.Result != "CONTINUE" || act.Completions != 1 {
			t.Fatalf("action %+v, want one CONTINUE", act)
		}
		// A node that left has no certificate to ask the managers with: the leader's reaper
		// removes its object (down and labelled leaving).
		waitfor.Until(t, 2*time.Minute, n.Name+"'s node object removed", func() error {
			for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(ctx, leader)) {
				if r.ID == nodeID {
					return fmt.Errorf("%s is %s/%s", n.Name, r.State, r.Availability)
				}
			}
			return nil
		})
		v := must[localcluster.View](t)(c.View(ctx, []*testbed.Node{n}))
		if len(v.Inactive) != 1 {
			t.Fatalf("%s is in a swarm again after its instance started terminating: %+v", n.Name, v)
		}
	})

	t.Run("spot interruption notice drains within its two minutes", func(t *testing.T) {
		n := workers[4]
		nodeID := nodeIDOf(t, c, n)
		start := time.Now()
		if err := c.Front.SpotNotice(c.InstanceID(n), start.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		waitfor.Until(t, 2*time.Minute, n.Name+" gone from the node list", func() error {
			for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(ctx, leader)) {
				if r.ID == nodeID {
					return fmt.Errorf("%s is %s/%s", n.Name, r.State, r.Availability)
				}
			}
			return nil
		})
		on, running, err := localcluster.RunningTasks(ctx, d, svc)
		if err != nil || running != 6 || on[nodeID] != 0 {
			t.Fatalf("after the spot drain: %d running, %d on %s (%v)", running, on[nodeID], n.Name, err)
		}
		t.Logf("spot notice to removal: %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("manager out of 3", func(t *testing.T) {
		n := managers[2]
		scaleIn(t, n, leader, nil)
		select {
		case <-agents[n.Name].Done():
		case <-time.After(30 * time.Second):
			t.Errorf("the drained manager's agent did not exit")
		}
		completedSoonAfterLeaving(t, agents[n.Name].Log())
		v := must[localcluster.View](t)(c.View(ctx, managers[:2]))
		if v.Managers != 2 || len(v.ClusterIDs) != 1 {
			t.Fatalf("after a manager left: %d managers in %d swarms", v.Managers, len(v.ClusterIDs))
		}
		waitfor.Until(t, 30*time.Second, "DNS without the manager", func() error {
			dns := c.DNSManagers(ctx)
			if len(dns) != 2 || slices.Contains(dns, n.IP) {
				return fmt.Errorf("DNS answers %v", dns)
			}
			return nil
		})
	})

	t.Run("the last manager is not removed", func(t *testing.T) {
		scaleIn(t, managers[1], leader, nil) // 2 -> 1 keeps quorum
		last := managers[0]
		id := c.InstanceID(last)
		a := agents[last.Name]
		if err := c.Front.StartScaleIn(ctx, id); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.Done():
		case <-time.After(time.Minute):
			t.Fatal("the last manager's agent neither refused nor finished within a minute")
		}
		if code := a.Code(); code != 9 {
			t.Errorf("agent exit %d, want 9 (drain refused)", code)
		}
		if !strings.Contains(a.Log(), "last manager") {
			t.Errorf("agent log does not say it refused to remove the last manager:\n%s", tail(a.Log(), 10))
		}
		act, _ := c.Front.LifecycleAction(id)
		if act.Completions != 0 {
			t.Errorf("%d completions for the last manager, want 0 (the hook's default result applies)", act.Completions)
		}
		v := must[localcluster.View](t)(c.View(ctx, []*testbed.Node{last}))
		if v.Managers != 1 {
			t.Fatalf("the last manager is no longer a manager: %+v", v)
		}
	})
}

// afterLeaving bounds the time from the node leaving the swarm to the lifecycle action's
// completion: the node's removal (forced: it had left) and the completion. Generous: the
// managers' heartbeat timeout this must not wait for is about 15 s.
const afterLeaving = 5 * time.Second

// completedSoonAfterLeaving checks, with the drain's own step timings from the agent's log,
// that the node was removed at once after it left (not when the managers saw it down) and
// the action completed right after.
func completedSoonAfterLeaving(t *testing.T, log string) {
	t.Helper()
	took := map[string]time.Duration{}
	detail := map[string]string{}
	steps := drainSteps(log)
	for _, step := range []string{"leave", "remove", "complete"} {
		if s, ok := steps[step]; ok {
			took[step] = s.took()
			detail[step] = s.State + ": " + s.Message
		}
	}
	for _, step := range []string{"leave", "remove", "complete"} {
		if !strings.HasPrefix(detail[step], "done") {
			t.Fatalf("drain step %s: %q, want done; agent log:\n%s", step, detail[step], tail(log, 30))
		}
	}
	after := took["remove"] + took["complete"]
	t.Logf("left the swarm in %s; then removal %s (%s), completion %s", took["leave"].Round(time.Millisecond),
		took["remove"].Round(time.Millisecond), detail["remove"], took["complete"].Round(time.Millisecond))
	if after > afterLeaving || !strings.Contains(detail["remove"], "at once") {
		t.Errorf("action completed %s after the node left (removal: %s), want within %s: removed at once, not after the managers' heartbeat timeout",
			after.Round(time.Millisecond), detail["remove"], afterLeaving)
	}
}

func nodeIDOf(t *testing.T, c *localcluster.Cluster, n *testbed.Node) string {
	t.Helper()
	v := must[localcluster.View](t)(c.View(t.Context(), []*testbed.Node{n}))
	id := v.NodeIDs[n.Name]
	if id == "" {
		t.Fatalf("%s is not in a swarm", n.Name)
	}
	return id
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
