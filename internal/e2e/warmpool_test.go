package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestIntegrationWarmPool is the warm pool's proof on real engines. The managers' group has a
// launching hook and a warm pool (one instance, stopped, ReuseOnScaleIn) whose instance is a
// spare engine. Its boot (as user_data runs it) prepares only: the engine checked, the
// --warm-pull-images present, the Warmed:Pending:Wait action completed with CONTINUE, exit 0
// without joining. Its run then waits in the pool; polled all along, the node is in no swarm,
// the managers' DNS name does not give its address, and the front's call log shows no call
// from the instance to the token store or Route 53. A scale-out takes it from the pool
// (Pending:Wait, IMDS InService): run boots it into the swarm as a reachable manager and
// completes the action with CONTINUE. A scale-in returns it to the pool: it drains, leaves
// (demoted, removed: the first manager lists it no more), completes its terminating action
// once (by its own agent), drops its swarm state, prepares again and completes the pool's launch action; the
// swarm keeps one manager and one cluster throughout. Then the instance is stopped in the pool
// as Warmed:Stopped does (its run stopped by SIGTERM, exit 0, then its engine): the next
// scale-out holds it in Pending:Wait, out of the swarm, until it starts again (the engine, then
// the unit's run, with no user_data), and its run boots it into the swarm: it joins fresh (a
// new node id), once (one node of its name, one completion). First, a preparation whose image cannot be pulled abandons the
// pool launch, and Auto Scaling replaces the instance in the pool.
func TestIntegrationWarmPool(t *testing.T) {
	t.Parallel()
	c := newClusterOpts(t, localcluster.Options{Managers: 1, Spare: 1})
	ctx := t.Context()
	mgr, warm := c.Bed.Nodes[0], c.Bed.Nodes[1]
	g := localcluster.ManagersGroup
	if r := c.Boot(ctx, mgr, "manager"); r.Code != 0 {
		t.Fatalf("boot of the first manager: exit %d\n%s", r.Code, keyLines(r.Stderr))
	}
	runs := startRuns(t, c, []*testbed.Node{mgr}, "--watch-interval=300ms")
	waitfor.Until(t, time.Minute, "the manager's run serving", func() error {
		if !strings.Contains(runs[mgr.Name].Log(), "control API serving") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if err := c.PutLaunchHook(ctx, g, 60, "ABANDON"); err != nil {
		t.Fatal(err)
	}
	// The first manager must stay: the scale-ins below take the warm one.
	if _, err := c.ASG.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{AutoScalingGroupName: aws.String(g),
		InstanceIds: []string{c.InstanceID(mgr)}, ProtectedFromScaleIn: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ASG.PutWarmPool(ctx, &autoscaling.PutWarmPoolInput{AutoScalingGroupName: aws.String(g),
		MaxGroupPreparedCapacity: aws.Int32(2), MinSize: aws.Int32(0), PoolState: asgtypes.WarmPoolStateStopped,
		InstanceReusePolicy: &asgtypes.InstanceReusePolicy{ReuseOnScaleIn: aws.Bool(true)}}); err != nil {
		t.Fatal(err)
	}
	pool := c.Front.WarmPool(g)
	if len(pool) != 1 {
		t.Fatalf("warm pool %v, want one instance", pool)
	}
	var id string
	for k := range pool {
		id = k
	}
	if err := c.Adopt(ctx, g, id, warm); err != nil {
		t.Fatal(err)
	}
	if s := c.Front.TargetLifecycleState(id); s != awsfront.StateWarmedStopped {
		t.Fatalf("IMDS target lifecycle state of the pool instance: %q", s)
	}

	// notInSwarm is the invariant of an instance in the pool: its engine in no swarm, the
	// managers' list without it, the managers' name without its address, and no call from it
	// to the token stores or Route 53.
	// warmNodes is the first manager's list of nodes of the pool instance's name: their ids.
	warmNodes := func() ([]string, error) {
		rows, err := c.Nodes(ctx, mgr)
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, r := range rows {
			if r.Hostname == warm.Name {
				ids = append(ids, r.ID)
			}
		}
		return ids, nil
	}
	notInSwarm := func() error {
		v, err := c.View(ctx, []*testbed.Node{warm})
		if err != nil {
			return err
		}
		if len(v.Inactive) != 1 {
			return fmt.Errorf("the pool instance's engine is in a swarm: %+v", v)
		}
		if ids, err := warmNodes(); err != nil || len(ids) > 0 {
			return fmt.Errorf("the pool instance in the node list: %v (%v)", ids, err)
		}
		if slices.Contains(c.DNSManagers(ctx), warm.IP) {
			return fmt.Errorf("the managers' name gives the pool instance's address %s", warm.IP)
		}
		for _, q := range c.Front.Requests() {
			if q.InstanceID == id && (q.Service == "ssm" || q.Service == "secretsmanager" || q.Service == "route53") {
				return fmt.Errorf("the pool instance called %s.%s", q.Service, q.Operation)
			}
		}
		return nil
	}
	c.Front.ResetRequests()
	// The user_data passes the group's launch hook (without it boot makes no Auto Scaling
	// call, and a pool launch is left to the hook's timeout).
	hookFlag := "--launch-hook-name=" + localcluster.LaunchHookName

	t.Run("a preparation that cannot pull its image ABANDONs the pool launch", func(t *testing.T) {
		// No registry answers for localhost:1 (refused at once on loopback) and the engine
		// does not have this image: the pull fails, the preparation gives up (exit 3, a
		// Docker failure) and abandons the launch; Auto Scaling terminates the instance and
		// fills the pool with another.
		r := c.Boot(ctx, warm, "manager", "--warm-pull-images=localhost:1/missing:warm", hookFlag)
		if r.Code != 3 || !strings.Contains(r.Stderr, "localhost:1/missing:warm") {
			t.Fatalf("boot with an image that cannot be pulled: exit %d, want 3 naming the image\n%s", r.Code, keyLines(r.Stderr))
		}
		a, _ := c.Front.LaunchAction(id)
		if a.Result != "ABANDON" || a.TimedOut || a.Completions != 1 {
			t.Fatalf("pool launch action %+v: want one ABANDON by the agent", a)
		}
		var repl string
		waitfor.Until(t, time.Minute, "a replacement in the pool", func() error {
			p := c.Front.WarmPool(g)
			if _, old := p[id]; old || len(p) != 1 {
				return fmt.Errorf("pool %v", p)
			}
			for k := range p {
				repl = k
			}
			return nil
		})
		id = repl
		if err := c.Adopt(ctx, g, id, warm); err != nil {
			t.Fatal(err)
		}
		if err := notInSwarm(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("boot in the pool prepares only and completes Warmed:Pending:Wait", func(t *testing.T) {
		if a, ok := c.Front.LaunchAction(id); !ok || a.State != awsfront.StateWarmedPendingWait {
			t.Fatalf("pool launch action %+v, %v: want Warmed:Pending:Wait", a, ok)
		}
		r := c.Boot(ctx, warm, "manager", "--warm-pull-images="+testbed.Image, "--heartbeat-interval=1s", hookFlag)
		if r.Code != 0 || r.Result.Action != "warm" {
			t.Fatalf("boot in the warm pool: exit %d, result %+v\n%s", r.Code, r.Result, keyLines(r.Stderr))
		}
		a, _ := c.Front.LaunchAction(id)
		if a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 {
			t.Fatalf("pool launch action %+v: want one CONTINUE by the agent", a)
		}
		waitfor.Until(t, time.Minute, "the instance Warmed:Stopped", func() error {
			if st := c.Front.WarmPool(g)[id]; st != awsfront.StateWarmedStopped {
				return fmt.Errorf("pool state %q", st)
			}
			return nil
		})
		if err := notInSwarm(); err != nil {
			t.Fatal(err)
		}
	})

	// Its unit's run waits in the pool (here the engine keeps running first, as in a pool of
	// Warmed:Running instances; the last subtest stops it and starts it again).
	wr := startRuns(t, c, []*testbed.Node{warm}, "--watch-interval=300ms")[warm.Name]
	waitfor.Until(t, time.Minute, "the warm run prepared", func() error {
		if !strings.Contains(wr.Log(), "prepared in the warm pool") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	waitfor.Throughout(t, 5*time.Second, 250*time.Millisecond, "the pool instance out of the swarm", notInSwarm)

	// joinFromPool scales the group out, which takes the pool instance (Pending:Wait), runs
	// stopped (nil for nothing) while the instance is held, and waits until the instance is
	// in the swarm as a reachable manager with its launch action completed once: its node id.
	joinFromPool := func(t *testing.T, stopped func()) string {
		t.Helper()
		start := time.Now()
		if _, err := c.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(g), DesiredCapacity: aws.Int32(2)}); err != nil {
			t.Fatal(err)
		}
		if st := must[map[string]string](t)(c.GroupInstances(ctx, g)); st[id] != awsfront.StatePendingWait {
			t.Fatalf("the group after the scale-out: %v; want %s in Pending:Wait", st, id)
		}
		if stopped != nil {
			stopped()
		}
		var nodeID string
		waitfor.Until(t, 2*time.Minute, "the instance from the pool in the swarm, its action CONTINUE", func() error {
			a, _ := c.Front.LaunchAction(id)
			rows, err := c.Nodes(ctx, mgr)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r.Hostname == warm.Name && r.State == "ready" && r.Role == "manager" && r.Reachability == "reachable" {
					nodeID = r.ID
				}
			}
			if a.State == awsfront.StatePendingWait && a.Result == "" {
				return fmt.Errorf("action waiting; node %q", nodeID)
			}
			if a.Result != "CONTINUE" || a.Completions != 1 || nodeID == "" {
				return fmt.Errorf("action %+v, node %q", a, nodeID)
			}
			return nil
		})
		if !slices.Contains(c.DNSManagers(ctx), warm.IP) {
			t.Errorf("the managers' name does not give the joined instance's address: %v", c.DNSManagers(ctx))
		}
		t.Logf("from the pool into the swarm in %s (node %s)", time.Since(start).Round(time.Millisecond), nodeID)
		return nodeID
	}

	var first string
	t.Run("scale-out: leaves the pool, joins, CONTINUE", func(t *testing.T) {
		first = joinFromPool(t, nil)
	})

	t.Run("scale-in: back to the pool, leaves cleanly", func(t *testing.T) {
		if _, err := c.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(g), DesiredCapacity: aws.Int32(1)}); err != nil {
			t.Fatal(err)
		}
		if s := c.Front.TargetLifecycleState(id); s != awsfront.StateWarmedStopped {
			t.Fatalf("IMDS target while returning: %q", s)
		}
		oneSwarm := func() error {
			v, err := c.View(ctx, []*testbed.Node{mgr})
			if err != nil {
				return err
			}
			if len(v.ClusterIDs) != 1 || v.Managers != 1 {
				return fmt.Errorf("the first manager's view: %+v", v)
			}
			return nil
		}
		waitfor.Until(t, 2*time.Minute, "the instance back in the pool, prepared", func() error {
			if err := oneSwarm(); err != nil {
				t.Fatal(err)
			}
			a, ok := c.Front.LifecycleAction(id)
			if !ok || a.Result == "" {
				return fmt.Errorf("terminating action %+v", a)
			}
			if st := c.Front.WarmPool(g)[id]; st != awsfront.StateWarmedStopped {
				return fmt.Errorf("pool state %q", st)
			}
			return nil
		})
		a, _ := c.Front.LifecycleAction(id)
		if a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 {
			t.Fatalf("terminating action %+v: want one CONTINUE by the agent", a)
		}
		la, _ := c.Front.LaunchAction(id)
		if la.State != awsfront.StateWarmedStopped || la.Result != "CONTINUE" || la.Completions != 1 {
			t.Fatalf("the pool's launch action on the return: %+v; want one CONTINUE", la)
		}
		for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(ctx, mgr)) {
			if r.Hostname == warm.Name || r.ID == first {
				t.Fatalf("the returned node is still listed: %+v", r)
			}
		}
		if st := must[map[string]string](t)(c.GroupInstances(ctx, g)); len(st) != 1 {
			t.Fatalf("the group after the return: %v; want the first manager only", st)
		}
		// The one accepted completion of the terminating action came from the instance's own
		// agent, not from the leader on its behalf.
		var accepted []string
		for _, q := range c.Front.Requests() {
			if q.Operation == "CompleteLifecycleAction" && q.Params["LifecycleHookName"] == localcluster.HookName && q.Status == 200 {
				accepted = append(accepted, q.InstanceID)
			}
		}
		if !slices.Equal(accepted, []string{id}) {
			t.Fatalf("accepted completions of the terminating action by %v, want one by %s", accepted, id)
		}
		c.Front.ResetRequests()
		waitfor.Throughout(t, 5*time.Second, 250*time.Millisecond, "the returned instance out of the swarm", notInSwarm)
		select {
		case <-wr.Done():
			t.Fatalf("the warm instance's run exited (code %d) instead of waiting in the pool", wr.Code())
		default:
		}
	})

	t.Run("stopped in the pool, started by the scale-out: joins once, fresh", func(t *testing.T) {
		// Warmed:Stopped: Auto Scaling stops the instance in the pool. Its shutdown stops the
		// agent's unit (SIGTERM: a clean stop in the pool) and then the engine.
		wr.Stop(30 * time.Second)
		if code := wr.Code(); code != 0 {
			t.Fatalf("the pool instance's run on its shutdown: exit %d\n%s", code, keyLines(wr.Log()))
		}
		if err := c.Bed.StopEngine(warm, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		logBefore := len(wr.Log()) // the run log goes on in the same file
		var rerun *localcluster.Agent
		second := joinFromPool(t, func() {
			// The scale-out takes the stopped instance: held in Pending:Wait while it starts,
			// nothing of it in the swarm, its action waiting.
			waitfor.Throughout(t, 3*time.Second, 250*time.Millisecond, "the stopped instance held, out of the swarm", func() error {
				if a, _ := c.Front.LaunchAction(id); a.State != awsfront.StatePendingWait || a.Result != "" {
					return fmt.Errorf("launch action %+v while the instance is stopped", a)
				}
				if ids, err := warmNodes(); err != nil || len(ids) > 0 {
					return fmt.Errorf("the stopped instance in the node list: %v (%v)", ids, err)
				}
				return nil
			})
			// It starts (cloud-init does not run user_data again): the engine, then the unit's
			// run, which finds the instance InService and boots it into the swarm.
			if err := c.Bed.StartEngine(ctx, warm); err != nil {
				t.Fatal(err)
			}
			rerun = startRuns(t, c, []*testbed.Node{warm}, "--watch-interval=300ms")[warm.Name]
		})
		if second == first {
			t.Fatalf("the node rejoined with its old node id %s: its swarm state was not wiped", first)
		}
		// Joined once: one node of its name, the same, its action completed once, and the
		// run, which boots once, still serving.
		waitfor.Throughout(t, 3*time.Second, 250*time.Millisecond, "the started instance in the swarm once", func() error {
			ids, err := warmNodes()
			if err != nil {
				return err
			}
			if !slices.Equal(ids, []string{second}) {
				return fmt.Errorf("nodes of %s: %v, want only %s", warm.Name, ids, second)
			}
			if a, _ := c.Front.LaunchAction(id); a.Result != "CONTINUE" || a.Completions != 1 {
				return fmt.Errorf("launch action %+v", a)
			}
			select {
			case <-rerun.Done():
				return fmt.Errorf("the run exited (code %d)", rerun.Code())
			default:
			}
			return nil
		})
		// The started run found the instance InService: it booted at once, joining once.
		started := rerun.Log()[logBefore:]
		if n, m := strings.Count(started, "the instance leaves the warm pool"), strings.Count(started, `"message":"joined swarm"`); n != 0 || m != 1 {
			t.Errorf("the started run: waited in the pool %d times, joined %d times; want 0 and 1\n%s", n, m, keyLines(started))
		}
		v := must[localcluster.View](t)(c.View(ctx, []*testbed.Node{mgr, warm}))
		if v.Managers != 2 || len(v.ClusterIDs) != 1 {
			t.Fatalf("after the rejoin: %+v", v)
		}
	})
}
