package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestIntegrationEngineLabels: boot merges the engine labels into the engine's daemon.json and
// has the engine reload it; the leader's agent copies them into node labels, so that a
// placement constraint on node.labels.workload lands the task on the labelled worker. Boot
// again leaves daemon.json alone.
func TestIntegrationEngineLabels(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 1, 2)
	ctx := t.Context()
	manager, db, other := c.Bed.Nodes[0], c.Bed.Nodes[1], c.Bed.Nodes[2]
	if r := c.Boot(ctx, manager, "manager"); r.Code != 0 {
		t.Fatalf("boot manager: %s", r.Stderr)
	}
	if r := c.Boot(ctx, db, "worker", "--labels=workload=database"); r.Code != 0 {
		t.Fatalf("boot worker: %s", r.Stderr)
	}
	if r := c.Boot(ctx, other, "worker"); r.Code != 0 {
		t.Fatalf("boot worker: %s", r.Stderr)
	}
	info := must[client.SystemInfoResult](t)(must[*client.Client](t)(c.Docker(db)).Info(ctx, client.InfoOptions{}))
	if !contains(info.Info.Labels, "swarm-agent.instance-id="+c.InstanceID(db)) || !contains(info.Info.Labels, "workload=database") {
		t.Fatalf("engine labels after boot: %v", info.Info.Labels)
	}
	a, err := c.StartRun(ctx, manager, "--watch-interval=500ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(10 * time.Second) })
	dbID := nodeIDOf(t, c, db)
	waitfor.Until(t, 60*time.Second, "node labels copied by the leader", func() error {
		for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(ctx, manager)) {
			if r.ID == dbID {
				if r.Labels["workload"] == "database" && r.Labels["az"] != "" && r.Labels["instance-type"] == "t3.medium" {
					return nil
				}
				return fmt.Errorf("labels %v", r.Labels)
			}
		}
		return fmt.Errorf("node %s not listed", dbID)
	})
	d := must[*client.Client](t)(c.Docker(manager))
	replicas := uint64(2)
	svc, err := d.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "pg"},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: testbed.Image, Command: []string{"sleep", "3600"}},
			Placement:     &swarm.Placement{Constraints: []string{"node.labels.workload==database"}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}, QueryRegistry: false})
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 60*time.Second, "the constrained tasks on the database worker", func() error {
		on, n, err := localcluster.RunningTasks(ctx, d, svc.ID)
		if err == nil && (n != 2 || on[dbID] != 2) {
			err = fmt.Errorf("%d running, %d on the database worker", n, on[dbID])
		}
		return err
	})

	st, err := os.Stat(db.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Boot(ctx, db, "worker", "--labels=workload=database"); r.Code != 0 || r.Result.Action != "reconcile" {
		t.Fatalf("boot again: exit %d %q\n%s", r.Code, r.Result.Action, r.Stderr)
	}
	if st2, err := os.Stat(db.ConfigPath()); err != nil || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("boot again rewrote daemon.json (%v)", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
