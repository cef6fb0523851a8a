package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestIntegrationReapDeadNode: a worker whose engine dies without warning stays in the node
// list while Auto Scaling still has its instance in service, even past the grace period; once
// Auto Scaling terminates the instance (held by the termination hook in Terminating:Wait, with
// nobody to drain it: no agent there, no queue), the leader removes the node and completes
// the lifecycle action instead of leaving the instance to wait out the hook's timeout.
func TestIntegrationReapDeadNode(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 1, 1)
	ctx := t.Context()
	manager, worker := c.Bed.Nodes[0], c.Bed.Nodes[1]
	bootAll(t, c, 1)
	a, err := c.StartRun(ctx, manager, "--reap-grace=1m")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("manager run log:\n%s", tail(a.Log(), 30))
		}
	})
	nodeID := nodeIDOf(t, c, worker)
	state := func() string {
		for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(ctx, manager)) {
			if r.ID == nodeID {
				return r.State
			}
		}
		return "removed"
	}
	if err := c.Bed.KillEngine(worker); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 90*time.Second, "the dead worker shown down", func() error {
		if s := state(); s != "down" {
			return fmt.Errorf("state %s", s)
		}
		return nil
	})
	down := time.Now()
	// Past the grace period, with the instance still InService: never reaped (every 2 s).
	waitfor.Throughout(t, time.Minute+20*time.Second, 2*time.Second, "a dead worker whose instance is alive stays listed", func() error {
		if s := state(); s != "down" {
			return fmt.Errorf("%s after %s down with its instance alive, want still listed as down", s, time.Since(down).Round(time.Second))
		}
		return nil
	})
	id := c.InstanceID(worker)
	if _, err := c.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if act, ok := c.Front.LifecycleAction(id); !ok || act.State != "Terminating:Wait" {
		t.Fatalf("lifecycle action after TerminateInstanceInAutoScalingGroup = %+v, %v; want Terminating:Wait", act, ok)
	}
	waitfor.Until(t, time.Minute, "the dead worker reaped and its lifecycle action completed", func() error {
		if s := state(); s != "removed" {
			return fmt.Errorf("state %s", s)
		}
		if act, _ := c.Front.LifecycleAction(id); act.Result == "" {
			return fmt.Errorf("lifecycle action %s", act.State)
		}
		return nil
	})
	// The leader completed it: no waiting out the hook's timeout, and only once.
	if act, _ := c.Front.LifecycleAction(id); act.Result != "CONTINUE" || act.TimedOut || act.Completions != 1 {
		t.Fatalf("lifecycle action = %+v, want completed once with CONTINUE by the leader", act)
	}
}
