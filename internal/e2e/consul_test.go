package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestIntegrationConsulBoot is the Consul issue's proof on real engines and a real Consul
// agent: racing managers and workers form exactly one swarm, ten times; boot again changes
// nothing; managers are a healthy Consul service; a manager drained with `swarm-agent drain`
// is gone from it; Consul lost while the swarm runs leaves the swarm and the agents untouched.
func TestIntegrationConsulBoot(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	bin, err := localcluster.ConsulBinary("../..")
	if err != nil {
		t.Skipf("Consul agent not built: %v", err)
	}
	c := newCluster(t, 3, 3)
	ctx := t.Context()
	if err := c.StartConsul(ctx, bin); err != nil {
		t.Fatal(err)
	}
	managers := c.Bed.Nodes[:3]
	for round := range 10 {
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		inits, v := raceRound(t, c, 3, fmt.Sprintf("consul-round%d", round))
		if inits != 1 || len(v.ClusterIDs) != 1 || v.Managers != 3 || v.Workers != 3 {
			t.Fatalf("round %d: inits=%d clusters=%d managers=%d workers=%d; want exactly one swarm of 3+3",
				round, inits, len(v.ClusterIDs), v.Managers, v.Workers)
		}
		t.Logf("round %d: one swarm of 3+3", round)
	}

	// A lock holder that died before swarm init (its session is not renewed) holds the cluster
	// back no longer than Consul takes to invalidate the session (up to twice lock_ttl=10s), its
	// 1 s lock-delay and a boot retry (at most 7.5 s), plus the round's own init and joins (about
	// 20 s on a loaded machine, more under a load of 20-30): 2 minutes. A lock that never
	// expired would hold it to --wait (10 minutes), far beyond.
	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.TakeDeadConsulLock("10s"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	inits, v := raceRound(t, c, 3, "consul-dead-holder")
	if el := time.Since(start); inits != 1 || len(v.ClusterIDs) != 1 || el < 8*time.Second || el > 2*time.Minute {
		t.Fatalf("after a dead holder: inits=%d clusters=%d in %s; want one swarm, after the holder's session expired", inits, len(v.ClusterIDs), el)
	}
	t.Logf("one swarm %s after a dead holder took the lock", time.Since(start).Round(time.Millisecond))

	waitfor.Until(t, 30*time.Second, "3 passing manager instances in Consul", func() error {
		got, err := c.ConsulManagers()
		if err == nil && len(got) != 3 {
			err = fmt.Errorf("passing: %v", got)
		}
		return err
	})

	before := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
	for i, n := range c.Bed.Nodes {
		role := "worker"
		if i < 3 {
			role = "manager"
		}
		if r := c.Boot(ctx, n, role); r.Code != 0 || r.Result.Action != "reconcile" {
			t.Fatalf("second boot of %s: exit %d action %q\n%s", n.Name, r.Code, r.Result.Action, keyLines(r.Stderr))
		}
	}
	after := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
	for name, id := range before.NodeIDs {
		if after.NodeIDs[name] != id {
			t.Errorf("%s node id changed %s -> %s", name, id, after.NodeIDs[name])
		}
	}

	// The other managers serve the control API that a demoted manager finishes through.
	var runs []*localcluster.Agent
	for _, n := range managers[:2] {
		a, err := c.StartRun(ctx, n, "--watch-interval=300ms")
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, a)
		t.Cleanup(func() { a.Stop(10 * time.Second) })
	}
	for i, a := range runs {
		waitfor.Until(t, time.Minute, "the control API of "+managers[i].Name, func() error {
			if !strings.Contains(a.Log(), "control API serving") {
				return errors.New("not serving yet")
			}
			return nil
		})
	}
	leaving := managers[2]
	cmd := c.Command(ctx, leaving, "drain", "--drain-deadline=1m")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("drain of %s: %v\n%s", leaving.Name, err, tail(string(out), 30))
	}
	waitfor.Until(t, 30*time.Second, leaving.Name+" gone from Consul", func() error {
		got, err := c.ConsulManagers()
		if err == nil && (len(got) != 2 || slices.Contains(got, leaving.IP)) {
			err = fmt.Errorf("passing: %v", got)
		}
		return err
	})
	if v := must[localcluster.View](t)(c.View(ctx, managers[:2])); v.Managers != 2 {
		t.Fatalf("%d managers after one left, want 2", v.Managers)
	}

	// Consul lost while the swarm runs: no node leaves, is demoted or removed, and the agents
	// keep running (their leader loop has nothing to ask Consul; checks are Consul's own).
	rest := append(slices.Clone(managers[:2]), c.Bed.Nodes[3:]...)
	prior := must[localcluster.View](t)(c.View(ctx, rest))
	c.StopConsul()
	// Watched for more than a leader round (15 s), every second.
	waitfor.Throughout(t, 20*time.Second, time.Second, "the swarm and its agents while Consul is gone", func() error {
		for i, a := range runs {
			select {
			case <-a.Done():
				return fmt.Errorf("run on %s exited (code %d):\n%s", managers[i].Name, a.Code(), tail(a.Log(), 20))
			default:
			}
		}
		later, err := c.View(ctx, rest)
		if err != nil {
			return err
		}
		if len(later.ClusterIDs) != 1 || later.Managers != 2 || later.Workers != 3 || len(later.Inactive) != 0 {
			return fmt.Errorf("%+v, want the same swarm of 2 managers and 3 workers", later)
		}
		for name, id := range prior.NodeIDs {
			if later.NodeIDs[name] != id {
				return fmt.Errorf("%s node id changed %s -> %s", name, id, later.NodeIDs[name])
			}
		}
		return nil
	})
}
