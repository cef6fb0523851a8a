package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// TestIntegrationHealthEvents: queue mode with AWS Health scheduled changes (the front sends
// them to the queue as EventBridge does) and workers whose own agents are dead (none runs):
// the leader alone drains, before each event's window, the node of a scheduled system reboot
// (marked with the event, availability drain, its replicas elsewhere) and the node of a
// scheduled instance retirement (drained on its behalf: marked leaving, its replicas
// elsewhere).
func TestIntegrationHealthEvents(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, 3)
	ctx := t.Context()
	mgr, w1, w2 := c.Bed.Nodes[0], c.Bed.Nodes[1], c.Bed.Nodes[2]
	bootAll(t, c, 1)
	q := noticeQueue(t, c)
	c.Front.SetHealthQueue(q)
	const lead = time.Minute
	agents := startRuns(t, c, []*testbed.Node{mgr}, "--queue-url="+q, fmt.Sprintf("--maintenance-lead=%s", lead), "--queue-grace=5s", "--drain-deadline=2m")
	d := must[*client.Client](t)(c.Docker(mgr))
	svc := sleepService(t, d, "web", 4, 2*time.Second)

	ids := map[*testbed.Node]string{w1: nodeIDOf(t, c, w1), w2: nodeIDOf(t, c, w2)}
	node := func(n *testbed.Node) (localcluster.NodeRow, error) {
		if r, ok := nodeRow(t, c, mgr, ids[n]); ok {
			return r, nil
		}
		return localcluster.NodeRow{}, fmt.Errorf("%s not in the node list", n.Name)
	}
	drainedAway := func(n *testbed.Node, label, prefix string) func() error {
		return func() error {
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
			case !strings.HasPrefix(r.Labels[label], prefix):
				return fmt.Errorf("%s labels %v, want %s=%s...", n.Name, r.Labels, label, prefix)
			case on[r.ID] != 0 || running != 4:
				return fmt.Errorf("%d replicas running, %d on %s", running, on[r.ID], n.Name)
			}
			return nil
		}
	}
	// The leader copies the engines' instance ids into node labels: wait for them (a leader
	// pass's length was not always enough on a loaded machine).
	for _, n := range []*testbed.Node{w1, w2} {
		waitLabel(t, c, mgr, ids[n], swarm.LabelInstanceID, c.InstanceID(n))
	}

	// A system reboot of w1: due 20 s from now.
	reboot := time.Now().Add(lead + 20*time.Second).UTC().Truncate(time.Second)
	if _, err := c.Front.ScheduleEvent(c.InstanceID(w1), imdsfake.Event{Code: "system-reboot", Description: "scheduled reboot",
		NotBefore: reboot, NotAfter: reboot.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Not before the lead begins: the event comes long before its window in AWS.
	waitfor.Throughout(t, time.Until(reboot.Add(-lead))-time.Second, 500*time.Millisecond, w1.Name+" active until the lead begins", func() error {
		if r, err := node(w1); err == nil && r.Availability != "active" {
			return fmt.Errorf("%s is %s %s before the event's window", w1.Name, r.Availability, time.Until(reboot).Round(time.Second))
		}
		return nil
	})
	waitfor.Until(t, time.Until(reboot), w1.Name+" drained by the leader for the reboot, before NotBefore", drainedAway(w1, swarm.LabelMaintenance, "arn:aws:health:"))
	t.Logf("reboot: drained with %s to spare before NotBefore", time.Until(reboot).Round(time.Second))

	// An instance retirement of w2: due 20 s from now; it leaves the swarm's placement.
	retire := time.Now().Add(lead + 20*time.Second).UTC().Truncate(time.Second)
	if _, err := c.Front.ScheduleEvent(c.InstanceID(w2), imdsfake.Event{Code: "instance-retirement", Description: "degraded hardware",
		NotBefore: retire}); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, time.Until(retire), w2.Name+" drained on its behalf for the retirement, before NotBefore", drainedAway(w2, swarm.LabelLeaving, ""))
	t.Logf("retirement: drained with %s to spare before NotBefore", time.Until(retire).Round(time.Second))
	if log := agents[mgr.Name].Log(); !strings.Contains(log, "announced by AWS Health") {
		t.Errorf("the leader did not say it acted on the AWS Health event:\n%s", tail(log, 30))
	}
}
