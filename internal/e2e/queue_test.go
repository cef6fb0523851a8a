package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestIntegrationQueueMode: a worker whose own agent is stopped is still drained on scale-in:
// the leader reads the hook's notice from SQS, drains the node on its behalf, completes the
// action once, and reaps the node when its engine goes with the instance.
func TestIntegrationQueueMode(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 3, 2)
	ctx := t.Context()
	managers, workers := c.Bed.Nodes[:3], c.Bed.Nodes[3:]
	bootAll(t, c, 3)
	url := noticeQueue(t, c)
	agents := startRuns(t, c, c.Bed.Nodes, "--watch-interval=300ms", "--heartbeat-interval=2s", "--drain-deadline=2m",
		"--queue-url="+url, "--queue-grace=3s")
	victim := workers[1]
	id := c.InstanceID(victim)
	nodeID := nodeIDOf(t, c, victim)
	waitfor.Until(t, 90*time.Second, victim.Name+" labelled with its instance id through the control API", func() error {
		for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(ctx, managers[0])) {
			if r.ID == nodeID && r.Labels["swarm-agent.instance-id"] == id {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	agents[victim.Name].Stop(10 * time.Second)

	d := must[*client.Client](t)(c.Docker(managers[0]))
	svc := sleepService(t, d, "api", 4, 0)

	if err := c.Front.StartScaleIn(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 3*time.Minute, "the lifecycle action completed by the leader", func() error {
		a, ok := c.Front.LifecycleAction(id)
		if !ok || a.Result == "" {
			return fmt.Errorf("action %+v", a)
		}
		return nil
	})
	act, _ := c.Front.LifecycleAction(id)
	if act.Result != "CONTINUE" || act.TimedOut || act.Completions != 1 {
		t.Fatalf("result %s timed out %v completions %d; want one CONTINUE", act.Result, act.TimedOut, act.Completions)
	}
	on, running, err := localcluster.RunningTasks(ctx, d, svc)
	if err != nil || running != 4 || on[nodeID] != 0 {
		t.Fatalf("after the drain: %d running, %d on %s (%v)", running, on[nodeID], victim.Name, err)
	}
	// Auto Scaling terminates the instance: its engine goes, and the leader reaps the node.
	if err := c.Bed.KillEngine(victim); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 2*time.Minute, victim.Name+" reaped", func() error {
		for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(ctx, managers[0])) {
			if r.ID == nodeID {
				return fmt.Errorf("%s is %s", victim.Name, r.State)
			}
		}
		return nil
	})
}
