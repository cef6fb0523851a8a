package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
)

// TestIntegrationMaxInstanceLifetime: the managers' group (3 managers, each running its agent,
// a worker, a replicated service of 6 tasks at most 2 per node) gets a maximum instance
// lifetime of one day (AWS's least) and its instances are made a day and an hour old (the
// front's clock for lifetimes): the front replaces them as Auto Scaling does, one at a time,
// each terminated through the managers' terminating hook with its replacement launched at the
// same time. The rest is testReplaceManagers, as for an instance refresh: each replacement
// becomes a spare engine booting as user_data would, instanceStart after its launch, each old
// manager holds its terminate hook until its replacement is a reachable manager, and polled
// every 250 ms throughout: at least 3 reachable managers, one cluster id, at least 4 tasks
// running. Here also: the three replacements started one after another, each once the
// previous old manager's action had been completed.
func TestIntegrationMaxInstanceLifetime(t *testing.T) { testReplaceManagers(t, 3, &byLifetime{}) }

// byLifetime replaces the managers by their reaching the group's maximum instance lifetime.
type byLifetime struct {
	old map[string]bool
}

func (l *byLifetime) name() string { return "maximum instance lifetime" }

func (l *byLifetime) start(t *testing.T, c *localcluster.Cluster, old map[string]bool) {
	ctx := t.Context()
	l.old = old
	if _, err := c.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(localcluster.ManagersGroup), MaxInstanceLifetime: aws.Int32(86400)}); err != nil {
		t.Fatal(err)
	}
	aged, err := c.Front.AgeInstances(ctx, localcluster.ManagersGroup, 25*time.Hour)
	if err != nil || len(aged) != len(old) {
		t.Fatalf("age the managers' instances: %v, %v; want %d", aged, err, len(old))
	}
}

func (l *byLifetime) progress(ctx context.Context, c *localcluster.Cluster) error {
	st, err := c.GroupInstances(ctx, localcluster.ManagersGroup)
	if err != nil {
		return err
	}
	reps := c.Front.LifetimeReplacements(localcluster.ManagersGroup)
	for id, s := range st {
		if l.old[id] || s != "InService" {
			return fmt.Errorf("%d replacements started; the group: %v", len(reps), st)
		}
	}
	if len(st) != len(l.old) {
		return fmt.Errorf("%d replacements started; the group: %v", len(reps), st)
	}
	return nil
}

func (l *byLifetime) check(t *testing.T, c *localcluster.Cluster) {
	reps := c.Front.LifetimeReplacements(localcluster.ManagersGroup)
	var ids []string
	for i, r := range reps {
		ids = append(ids, r.InstanceID)
		if !l.old[r.InstanceID] || r.Age < 24*time.Hour {
			t.Errorf("replacement %+v: want an old manager at least a day old", r)
		}
		if i == 0 {
			continue
		}
		prev := reps[i-1]
		if a, _ := c.Front.LifecycleAction(prev.InstanceID); a.Ended.IsZero() || r.Start.Before(a.Ended) {
			t.Errorf("%s replaced from %s, before %s's termination action ended (%s): not one at a time",
				r.InstanceID, r.Start.Format("15:04:05.000"), prev.InstanceID, a.Ended.Format("15:04:05.000"))
		}
	}
	slices.Sort(ids)
	if len(ids) != len(l.old) || len(slices.Compact(ids)) != len(l.old) {
		t.Errorf("replaced for their lifetime: %+v, want each of the %d old managers once", reps, len(l.old))
	}
	for i, r := range reps {
		t.Logf("replacement %d: %s, %s old, from %s", i+1, r.InstanceID, r.Age.Round(time.Minute), r.Start.Format("15:04:05.000"))
	}
}
