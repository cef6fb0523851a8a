package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// launchWatch is what watching a launch saw.
type launchWatch struct {
	polls      int
	maxGap     time.Duration
	waitingNot int // polls where the action waited and the node was not (yet) in the swarm
	completed  localcluster.NodeRow
	action     awsfront.Action
	run        localcluster.Run
}

// watchLaunch boots node n (role) the way its user_data would, and polls every 150 ms, until
// the boot has exited and the instance's launch lifecycle action is over: first the action,
// then the node as the manager mgr lists it. The test fails at the first poll that finds the
// action completed with CONTINUE while the node, read after it, is not in the swarm: not ready,
// without its instance id and engine labels copied, or (a manager) not a reachable Raft
// member. Since a node in the swarm stays so here, a node not in the swarm after the
// completion was not in it at the completion either.
func watchLaunch(t *testing.T, c *localcluster.Cluster, mgr, n *testbed.Node, role, id string, extra ...string) launchWatch {
	t.Helper()
	ctx := t.Context()
	done := make(chan localcluster.Run, 1)
	go func() { done <- c.Boot(ctx, n, role, extra...) }()
	var w launchWatch
	exited := false
	last := time.Now()
	deadline := time.Now().Add(4 * time.Minute)
	for {
		a, ok := c.Front.LaunchAction(id)
		rows, err := c.Nodes(ctx, mgr)
		if err == nil {
			w.polls++
			w.maxGap = max(w.maxGap, time.Since(last))
			last = time.Now()
		}
		var row localcluster.NodeRow
		for _, r := range rows {
			if r.Hostname == n.Name && r.State != "down" {
				row = r
			}
		}
		in := row.State == "ready" && row.Labels[swarm.LabelInstanceID] == id && row.Labels["az"] != "" &&
			row.Labels["instance-type"] == "t3.medium" && row.Role == role && (role != "manager" || row.Reachability == "reachable")
		switch {
		case !ok:
			t.Fatalf("no launch action for %s", id)
		case a.Result == "" && err == nil && !in:
			w.waitingNot++
		case a.Result == "CONTINUE" && err == nil && !in:
			t.Fatalf("launch action of %s completed with CONTINUE while its node is not in the swarm: %+v (action %+v)", n.Name, row, a)
		case a.Result != "" && w.completed.ID == "" && err == nil:
			w.completed, w.action = row, a
		}
		if !exited {
			select {
			case w.run = <-done:
				exited = true
			default:
			}
		}
		if exited && a.Result != "" && err == nil {
			w.action = a
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 4 minutes: boot exited %v, action %+v", exited, a)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// TestIntegrationLaunchHook is the launch hooks' proof on real engines: the groups have a
// launching hook (default result ABANDON); a scale-out launches an instance that waits in
// Pending:Wait, and its agent's boot (as user_data runs it) completes the action with
// CONTINUE only once its node is in the swarm, polled all along: a worker whose boot first
// waits for its join token (heartbeating meanwhile), and a manager. A boot that gives up for
// good completes it with ABANDON, so that Auto Scaling replaces the instance at once: a bad
// discovery string (exit 2), then on the replacement a zone nobody registered in (--wait
// elapses, exit 6). In queue mode the leader completes the action of a node in the swarm
// whose own agent could not (its CompleteLifecycleAction refused), after the queue grace.
func TestIntegrationLaunchHook(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newClusterOpts(t, localcluster.Options{Managers: 1, Spare: 5})
	ctx := t.Context()
	mgr := c.Bed.Nodes[0]
	worker, manager, bad, orphan, quiet := c.Bed.Nodes[1], c.Bed.Nodes[2], c.Bed.Nodes[3], c.Bed.Nodes[4], c.Bed.Nodes[5]
	// The agent's launch hook, as user_data names it; a boot without it makes no Auto Scaling call.
	hookFlag := "--launch-hook-name=" + localcluster.LaunchHookName
	if r := c.Boot(ctx, mgr, "manager"); r.Code != 0 {
		t.Fatalf("boot of the first manager: exit %d\n%s", r.Code, keyLines(r.Stderr))
	}
	// An instance of a group, booted without --launch-hook-name: not one Auto Scaling call.
	if n := autoScalingCalls(c, c.InstanceID(mgr)); len(n) != 0 {
		t.Fatalf("the first manager's boot without --launch-hook-name made Auto Scaling calls %v, want none", n)
	}
	const grace = 5 * time.Second
	url := noticeQueue(t, c)
	runs := startRuns(t, c, []*testbed.Node{mgr}, "--watch-interval=300ms", "--queue-url="+url, fmt.Sprintf("--queue-grace=%s", grace))
	waitfor.Until(t, time.Minute, "the manager's run serving", func() error {
		if !strings.Contains(runs[mgr.Name].Log(), "control API serving") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	for _, g := range []string{localcluster.ManagersGroup, localcluster.WorkersGroup} {
		if err := c.PutLaunchHook(ctx, g, 30, "ABANDON"); err != nil {
			t.Fatal(err)
		}
	}
	// The first manager was in service before the hook: nothing holds it.
	if st := must[map[string]string](t)(c.GroupInstances(ctx, localcluster.ManagersGroup)); st[c.InstanceID(mgr)] != "InService" {
		t.Fatalf("the first manager's instance is %s", st[c.InstanceID(mgr)])
	}

	t.Run("worker: CONTINUE once in the swarm, heartbeats while boot waits", func(t *testing.T) {
		// No worker token in the store: the boot waits until the leader republishes it (one
		// leader pass), heartbeating the action meanwhile.
		if _, err := c.SSM.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String("/swarm-agent/" + localcluster.ClusterName + "/join-token/worker")}); err != nil {
			t.Fatal(err)
		}
		id := must[string](t)(c.Launch(ctx, localcluster.WorkersGroup, worker))
		if a, ok := c.Front.LaunchAction(id); !ok || a.State != awsfront.StatePendingWait {
			t.Fatalf("the launched worker's instance: %+v, %v; want Pending:Wait", a, ok)
		}
		w := watchLaunch(t, c, mgr, worker, "worker", id, hookFlag, "--heartbeat-interval=1s")
		if w.run.Code != 0 {
			t.Fatalf("boot of the launched worker: exit %d\n%s", w.run.Code, keyLines(w.run.Stderr))
		}
		a := w.action
		if a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 || a.State != awsfront.StateInService {
			t.Fatalf("launch action %+v; want one CONTINUE by the agent, in service", a)
		}
		if a.Heartbeats < 2 || w.waitingNot == 0 {
			t.Fatalf("%d heartbeats, %d polls with the action waiting and the node not in the swarm: the boot did not wait", a.Heartbeats, w.waitingNot)
		}
		if w.polls < 20 || w.maxGap > 2*time.Second {
			t.Fatalf("watched %d polls, largest gap %s: not watched throughout", w.polls, w.maxGap)
		}
		if st := must[map[string]string](t)(c.GroupInstances(ctx, localcluster.WorkersGroup)); st[id] != "InService" {
			t.Fatalf("Auto Scaling shows the worker %s", st[id])
		}
		t.Logf("worker: CONTINUE after %d heartbeats; %d polls (gap <= %s), %d of them waiting while the node was not in the swarm; node at completion %+v",
			a.Heartbeats, w.polls, w.maxGap.Round(time.Millisecond), w.waitingNot, w.completed)
		// Its service's run boots again (a reconcile): it finds the instance in service and
		// completes nothing.
		wr := startRuns(t, c, []*testbed.Node{worker}, "--watch-interval=300ms")[worker.Name]
		waitfor.Until(t, time.Minute, "the worker's run booted", func() error {
			if !strings.Contains(wr.Log(), "boot finished") {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		if a, _ := c.Front.LaunchAction(id); a.Completions != 1 {
			t.Fatalf("after run booted: %d completions, want still 1", a.Completions)
		}
	})

	t.Run("manager: CONTINUE once a reachable Raft member", func(t *testing.T) {
		id := must[string](t)(c.Launch(ctx, localcluster.ManagersGroup, manager))
		w := watchLaunch(t, c, mgr, manager, "manager", id, hookFlag, "--heartbeat-interval=1s")
		if w.run.Code != 0 {
			t.Fatalf("boot of the launched manager: exit %d\n%s", w.run.Code, keyLines(w.run.Stderr))
		}
		if a := w.action; a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 {
			t.Fatalf("launch action %+v; want one CONTINUE by the agent", a)
		}
		if w.completed.Role != "manager" || w.completed.Reachability != "reachable" {
			t.Fatalf("the manager at completion: %+v", w.completed)
		}
		v := must[localcluster.View](t)(c.View(ctx, []*testbed.Node{mgr, manager}))
		if v.Managers != 2 || len(v.ClusterIDs) != 1 {
			t.Fatalf("after the launch: %+v", v)
		}
	})

	t.Run("ABANDON: a bad discovery string, then --wait elapsed", func(t *testing.T) {
		before := must[map[string]string](t)(c.GroupInstances(ctx, localcluster.WorkersGroup))
		id := must[string](t)(c.Launch(ctx, localcluster.WorkersGroup, bad))
		known := map[string]bool{id: true}
		for k := range before {
			known[k] = true
		}
		// A discovery string with a key route53 does not know: refused at once (exit 2).
		r := c.Boot(ctx, bad, "worker", hookFlag, "--discovery=provider=route53 zone=Z123 name="+localcluster.ManagersName)
		if r.Code != 2 {
			t.Fatalf("boot with a bad discovery string: exit %d, want 2\n%s", r.Code, r.Stderr)
		}
		a, _ := c.Front.LaunchAction(id)
		if a.Result != "ABANDON" || a.TimedOut || a.Completions != 1 {
			t.Fatalf("launch action after a refused configuration: %+v; want one ABANDON by the agent", a)
		}
		if !strings.Contains(r.Stderr, "ABANDON") {
			t.Errorf("the boot does not say it abandoned the launch:\n%s", r.Stderr)
		}
		// Auto Scaling replaced the instance; the replacement waits as well.
		repl := must[string](t)(c.Replacement(ctx, localcluster.WorkersGroup, known))
		if st := must[map[string]string](t)(c.GroupInstances(ctx, localcluster.WorkersGroup)); st[id] != "" || st[repl] != awsfront.StatePendingWait {
			t.Fatalf("after ABANDON the group is %v: want %s gone and its replacement %s in Pending:Wait", st, id, repl)
		}
		if err := c.Adopt(ctx, localcluster.WorkersGroup, repl, bad); err != nil {
			t.Fatal(err)
		}
		// A well-formed discovery string naming a zone no manager registered in: the worker
		// waits for a manager until --wait elapses (exit 6), heartbeating meanwhile.
		zone := c.Discovery()
		zone = strings.Replace(zone, "name="+localcluster.ManagersName, "name=nobody.swarm.internal", 1)
		start := time.Now()
		r = c.Boot(ctx, bad, "worker", hookFlag, "--discovery="+zone, "--wait=12s", "--heartbeat-interval=2s")
		if r.Code != 6 {
			t.Fatalf("boot that finds no manager: exit %d, want 6\n%s", r.Code, keyLines(r.Stderr))
		}
		a, _ = c.Front.LaunchAction(repl)
		if a.Result != "ABANDON" || a.TimedOut || a.Completions != 1 || a.Heartbeats < 2 {
			t.Fatalf("launch action after --wait elapsed: %+v; want one ABANDON by the agent after heartbeats", a)
		}
		t.Logf("--wait elapsed: ABANDON %s after the boot started, %d heartbeats", time.Since(start).Round(time.Millisecond), a.Heartbeats)
		if v := must[localcluster.View](t)(c.View(ctx, []*testbed.Node{bad})); len(v.Inactive) != 1 {
			t.Fatalf("the abandoned node is in a swarm: %+v", v)
		}
		rows := must[[]localcluster.NodeRow](t)(c.Nodes(ctx, mgr))
		for _, row := range rows {
			if row.Hostname == bad.Name {
				t.Fatalf("the abandoned node is in the node list: %+v", row)
			}
		}
	})

	t.Run("queue mode: the leader completes it for an agent that cannot", func(t *testing.T) {
		id := must[string](t)(c.Launch(ctx, localcluster.WorkersGroup, orphan))
		// This instance's profile may not complete lifecycle actions: its agent's calls are
		// refused (AccessDenied), the leader's are not.
		c.Front.InjectFault(awsfront.Fault{Service: "autoscaling", Operation: "CompleteLifecycleAction", InstanceID: id,
			Kind: awsfront.FaultDenied, Count: 100})
		w := watchLaunch(t, c, mgr, orphan, "worker", id, hookFlag)
		if w.run.Code != 0 {
			t.Fatalf("boot of the worker whose completion is refused: exit %d, want 0 (it is in the swarm)\n%s", w.run.Code, keyLines(w.run.Stderr))
		}
		a := w.action
		if a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 {
			t.Fatalf("launch action %+v; want one CONTINUE, by the leader", a)
		}
		var denied, byLeader int
		for _, q := range c.Front.Requests() {
			if q.Operation != "CompleteLifecycleAction" {
				continue
			}
			switch {
			case q.InstanceID == id && q.ErrorCode != "":
				denied++
			case q.InstanceID == c.InstanceID(mgr) && q.Status == 200:
				byLeader++
			}
		}
		if denied == 0 || byLeader != 1 {
			t.Fatalf("CompleteLifecycleAction: %d refused calls from the instance, %d accepted from the leader; want some and 1", denied, byLeader)
		}
		if n := metric(t, c, mgr, "swarm_agent_takeovers_total", `reason="launch"`); n != 1 {
			t.Errorf("swarm_agent_takeovers_total{reason=\"launch\"} = %v on the leader, want 1", n)
		}
	})

	t.Run("no --launch-hook-name: no Auto Scaling call from the boot, the leader completes", func(t *testing.T) {
		id := must[string](t)(c.Launch(ctx, localcluster.WorkersGroup, quiet))
		w := watchLaunch(t, c, mgr, quiet, "worker", id)
		if w.run.Code != 0 {
			t.Fatalf("boot of the worker without --launch-hook-name: exit %d\n%s", w.run.Code, keyLines(w.run.Stderr))
		}
		if ops := autoScalingCalls(c, id); len(ops) != 0 {
			t.Fatalf("the boot without --launch-hook-name made Auto Scaling calls %v, want none", ops)
		}
		if a := w.action; a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 {
			t.Fatalf("launch action %+v; want one CONTINUE, by the leader", a)
		}
		if n := metric(t, c, mgr, "swarm_agent_takeovers_total", `reason="launch"`); n != 2 {
			t.Errorf("swarm_agent_takeovers_total{reason=\"launch\"} = %v on the leader, want 2", n)
		}
	})
}

// autoScalingCalls lists the Auto Scaling operations the front logged from instance id.
func autoScalingCalls(c *localcluster.Cluster, id string) []string {
	var ops []string
	for _, q := range c.Front.Requests() {
		if q.Service == "autoscaling" && q.InstanceID == id {
			ops = append(ops, q.Operation)
		}
	}
	return ops
}
