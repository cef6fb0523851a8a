package e2e

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

// TestIntegrationConsulBoot is the Consul issue's proof on real engines and a real Consul
// agent: racing managers and workers form exactly one swarm, ten times; boot again changes
// nothing; managers are a healthy Consul service; a manager drained with `swarm-agent drain`
// is gone from it.
func TestIntegrationConsulBoot(t *testing.T) {
	bin, err := localcluster.ConsulBinary("../..")
	if err != nil {
		t.Skipf("Consul agent not built: %v", err)
	}
	c := newCluster(t, 3, 3)
	ctx := t.Context()
	if err := c.StartConsul(ctx, bin); err != nil {
		t.Fatal(err)
	}
	managers, workers := c.Bed.Nodes[:3], c.Bed.Nodes[3:]
	type job struct {
		n    *testbed.Node
		role string
	}
	var jobs []job
	for _, n := range managers {
		jobs = append(jobs, job{n, "manager"})
	}
	for _, n := range workers {
		jobs = append(jobs, job{n, "worker"})
	}
	for round := range 10 {
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
		var wg sync.WaitGroup
		runs := make([]localcluster.Run, len(jobs))
		for i, j := range jobs {
			delay := time.Duration(rand.IntN(300)) * time.Millisecond
			wg.Go(func() {
				time.Sleep(delay)
				runs[i] = c.Boot(ctx, j.n, j.role)
			})
		}
		wg.Wait()
		inits := 0
		for i, r := range runs {
			if r.Code != 0 {
				t.Fatalf("round %d: boot of %s (%s) exit %d:\n%s", round, jobs[i].n.Name, jobs[i].role, r.Code, keyLines(r.Stderr))
			}
			if r.Result.Action == "init" {
				inits++
			}
		}
		v := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
		if inits != 1 || len(v.ClusterIDs) != 1 || v.Managers != 3 || v.Workers != 3 {
			t.Fatalf("round %d: inits=%d clusters=%d managers=%d workers=%d; want exactly one swarm of 3+3",
				round, inits, len(v.ClusterIDs), v.Managers, v.Workers)
		}
		t.Logf("round %d: one swarm of 3+3", round)
	}
	waitFor(t, 30*time.Second, "3 passing manager instances in Consul", func() error {
		got, err := c.ConsulManagers()
		if err == nil && len(got) != 3 {
			err = fmt.Errorf("passing: %v", got)
		}
		return err
	})

	before := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
	for _, j := range jobs {
		if r := c.Boot(ctx, j.n, j.role); r.Code != 0 || r.Result.Action != "reconcile" {
			t.Fatalf("second boot of %s: exit %d action %q\n%s", j.n.Name, r.Code, r.Result.Action, keyLines(r.Stderr))
		}
	}
	after := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
	for name, id := range before.NodeIDs {
		if after.NodeIDs[name] != id {
			t.Errorf("%s node id changed %s -> %s", name, id, after.NodeIDs[name])
		}
	}

	// The other managers serve the control API that a demoted manager finishes through.
	for _, n := range managers[:2] {
		a, err := c.StartRun(ctx, n, "--watch-interval=300ms")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Stop(10 * time.Second) })
	}
	time.Sleep(2 * time.Second)
	leaving := managers[2]
	cmd := c.Command(ctx, leaving, "drain", "--drain-deadline=1m")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("drain of %s: %v\n%s", leaving.Name, err, tail(string(out), 30))
	}
	waitFor(t, 30*time.Second, leaving.Name+" gone from Consul", func() error {
		got, err := c.ConsulManagers()
		if err == nil && (len(got) != 2 || slices.Contains(got, leaving.IP)) {
			err = fmt.Errorf("passing: %v", got)
		}
		return err
	})
	v := must[localcluster.View](t)(c.View(ctx, managers[:2]))
	if v.Managers != 2 {
		t.Fatalf("%d managers after one left, want 2", v.Managers)
	}
}
