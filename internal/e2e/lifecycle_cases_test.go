package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// The remaining proofs of the lifecycle-correctness issue on real engines: ghosts of rejoined
// nodes, a node claiming another's instance, a takeover after SIGKILL in queue mode, token
// rotation, two managers scaled in at once, and scale-in protection.

// leaderPass bounds one pass of the leader's duties: they run every 15 s, checked every 5 s.
const leaderPass = 20 * time.Second

// newClusterOpts is newCluster with options (a long hook timeout, so that an action nobody
// completes waits instead of timing out while a test watches it).
func newClusterOpts(t *testing.T, opts localcluster.Options) *localcluster.Cluster {
	t.Helper()
	if err := testbed.Available(); err != nil {
		t.Skipf("real engines cannot start here: %v", err)
	}
	opts.AgentBin = agentBin
	c, err := localcluster.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// startRuns starts `swarm-agent run` on each node with args, stops them at the end of the
// test and shows their logs when it failed.
func startRuns(t *testing.T, c *localcluster.Cluster, nodes []*testbed.Node, args ...string) map[string]*localcluster.Agent {
	t.Helper()
	agents := map[string]*localcluster.Agent{}
	for _, n := range nodes {
		a, err := c.StartRun(t.Context(), n, args...)
		if err != nil {
			t.Fatal(err)
		}
		agents[n.Name] = a
		t.Cleanup(func() {
			a.Stop(10 * time.Second)
			if t.Failed() {
				t.Logf("%s run log:\n%s", n.Name, tail(a.Log(), 40))
			}
		})
	}
	return agents
}

// noticeQueue makes an SQS queue and has the front send the termination notices there.
func noticeQueue(t *testing.T, c *localcluster.Cluster) string {
	t.Helper()
	q := sqs.NewFromConfig(c.AWS, func(o *sqs.Options) { o.BaseEndpoint = aws.String(c.Front.APIURL()) })
	qo, err := q.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String("swarm-notices")})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(qo.QueueUrl)
	c.Front.SetNoticeQueue(url)
	return url
}

// sleepService creates a service of sleeping busybox tasks through manager engine d and
// waits until its replicas run; it returns the service id. Busybox's sleep as PID 1 ignores
// SIGTERM: each task takes its stop grace period (0: Docker's default) to stop.
func sleepService(t *testing.T, d *client.Client, name string, replicas uint64, grace time.Duration) string {
	t.Helper()
	spec := &swarmapi.ContainerSpec{Image: testbed.Image, Command: []string{"sleep", "3600"}}
	if grace > 0 {
		spec.StopGracePeriod = &grace
	}
	return createService(t, d, swarmapi.ServiceSpec{
		Annotations:  swarmapi.Annotations{Name: name},
		TaskTemplate: swarmapi.TaskSpec{ContainerSpec: spec},
		Mode:         swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
	})
}

// createService creates the replicated service spec through manager engine d and waits until
// its replicas run; it returns the service id.
func createService(t *testing.T, d *client.Client, spec swarmapi.ServiceSpec) string {
	t.Helper()
	svc, err := d.ServiceCreate(t.Context(), client.ServiceCreateOptions{Spec: spec, QueryRegistry: false})
	name, replicas := spec.Name, *spec.Mode.Replicated.Replicas
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 90*time.Second, fmt.Sprintf("%d running tasks of %s", replicas, name), func() error {
		_, n, err := localcluster.RunningTasks(t.Context(), d, svc.ID)
		if err == nil && n != int(replicas) {
			err = fmt.Errorf("%d running", n)
		}
		return err
	})
	return svc.ID
}

// leaderOf returns the swarm's leader among managers, as the first one that answers sees it.
func leaderOf(t *testing.T, c *localcluster.Cluster, managers []*testbed.Node) *testbed.Node {
	t.Helper()
	var leader *testbed.Node
	waitfor.Until(t, time.Minute, "a leader", func() error {
		for _, m := range managers {
			rows, err := c.Nodes(t.Context(), m)
			if err != nil {
				continue
			}
			for _, r := range rows {
				if r.Leader != "" {
					if i := slices.IndexFunc(managers, func(n *testbed.Node) bool { return n.Name == r.Hostname }); i >= 0 {
						leader = managers[i]
						return nil
					}
				}
			}
		}
		return fmt.Errorf("no manager names a leader")
	})
	return leader
}

// others returns nodes without the excluded ones.
func others(nodes []*testbed.Node, not ...*testbed.Node) []*testbed.Node {
	return slices.DeleteFunc(slices.Clone(nodes), func(n *testbed.Node) bool { return slices.Contains(not, n) })
}

// nodeRow returns node id's row as mgr sees it, false when it is not in the list.
func nodeRow(t *testing.T, c *localcluster.Cluster, mgr *testbed.Node, id string) (localcluster.NodeRow, bool) {
	t.Helper()
	for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(t.Context(), mgr)) {
		if r.ID == id {
			return r, true
		}
	}
	return localcluster.NodeRow{}, false
}

// waitLabel waits until mgr shows node id with label key=value.
func waitLabel(t *testing.T, c *localcluster.Cluster, mgr *testbed.Node, id, key, value string) {
	t.Helper()
	waitfor.Until(t, 90*time.Second, fmt.Sprintf("node %s labelled %s=%s", id, key, value), func() error {
		r, ok := nodeRow(t, c, mgr, id)
		if !ok || r.Labels[key] != value {
			return fmt.Errorf("labels %v", r.Labels)
		}
		return nil
	})
}

// metric reads a counter from the agent's /metrics inside node n's namespace: the sum of
// the series of name whose labels contain match ("" for all).
func metric(t *testing.T, c *localcluster.Cluster, n *testbed.Node, name, match string) float64 {
	t.Helper()
	out, err := c.Bed.Command(t.Context(), n, nil, "busybox", "wget", "-qO-", "http://127.0.0.1:9477/metrics").Output()
	if err != nil {
		t.Fatalf("metrics of %s: %v", n.Name, err)
	}
	sum := 0.0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) || !strings.Contains(l, match) {
			continue
		}
		series, v, ok := strings.Cut(l, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			t.Fatalf("metrics of %s: %q: %v", n.Name, l, err)
		}
		sum += f
	}
	return sum
}

// forceLeave takes node n out of its swarm without demotion or removal (its node object
// stays, down), as a crash that lost the node's state would.
func forceLeave(t *testing.T, c *localcluster.Cluster, n *testbed.Node) {
	t.Helper()
	d := must[*client.Client](t)(c.Docker(n))
	if _, err := d.SwarmLeave(t.Context(), client.SwarmLeaveOptions{Force: true}); err != nil {
		t.Fatalf("leave %s: %v", n.Name, err)
	}
	waitfor.Until(t, time.Minute, n.Name+" out of its swarm", func() error {
		v, err := c.View(t.Context(), []*testbed.Node{n})
		if err != nil || len(v.Inactive) == 0 {
			return fmt.Errorf("still in the swarm (%v)", err)
		}
		return nil
	})
}

// holdAction watches instance id's lifecycle action for d and fails the test the moment
// anyone completes it (or heartbeats it: nobody drains it).
func holdAction(t *testing.T, c *localcluster.Cluster, d time.Duration, ids ...string) {
	t.Helper()
	waitfor.Throughout(t, d, time.Second, "lifecycle actions left waiting, untouched", func() error {
		for _, id := range ids {
			a, ok := c.Front.LifecycleAction(id)
			if !ok || a.State != awsfront.StateTerminatingWait || a.Completions != 0 || a.Heartbeats != 0 {
				return fmt.Errorf("instance %s's lifecycle action = %+v, %v", id, a, ok)
			}
		}
		return nil
	})
}

// threeAndOne boots 3 managers and a worker, with a hook timeout long enough that an action
// nobody completes waits while a test watches it, and runs the agent (reap grace 1m) on the
// leader and one other manager only: it returns the leader, the manager without an agent and
// the worker (no agent either).
func threeAndOne(t *testing.T) (c *localcluster.Cluster, leader, bare, worker *testbed.Node) {
	t.Helper()
	c = newClusterOpts(t, localcluster.Options{Managers: 3, Workers: 1, HeartbeatTimeout: 1800})
	managers := c.Bed.Nodes[:3]
	bootAll(t, c, 3)
	leader = leaderOf(t, c, managers)
	bare = others(managers, leader)[0]
	startRuns(t, c, others(managers, bare), "--watch-interval=300ms", "--reap-grace=1m")
	return c, leader, bare, c.Bed.Nodes[3]
}

// TestIntegrationGhostNodes: a worker and a manager whose engines lost their swarm state
// join again, each as a new node object of the same instance; the old, down objects are
// ghosts. The leader removes both (the manager's demoted first: the Raft members are the
// three live managers again), and nothing touches the lifecycle actions that hold the two
// instances (scaled in, their agents not running) even past the reap grace: the ghosts'
// being down says nothing of the live nodes.
func TestIntegrationGhostNodes(t *testing.T) {
	t.Parallel()                             // each test has a bed, moto and front of its own
	c, leader, mgr, worker := threeAndOne(t) // mgr: the manager that rejoins
	ctx := t.Context()
	managers := c.Bed.Nodes[:3]
	oldW, oldM := nodeIDOf(t, c, worker), nodeIDOf(t, c, mgr)
	waitLabel(t, c, leader, oldW, swarm.LabelInstanceID, c.InstanceID(worker))
	waitLabel(t, c, leader, oldM, swarm.LabelInstanceID, c.InstanceID(mgr))

	for _, n := range []*testbed.Node{worker, mgr} {
		forceLeave(t, c, n)
	}
	for n, role := range map[*testbed.Node]string{worker: "worker", mgr: "manager"} {
		if r := c.Boot(ctx, n, role); r.Code != 0 {
			t.Fatalf("boot of %s again: exit %d\n%s", n.Name, r.Code, keyLines(r.Stderr))
		}
	}
	newW, newM := nodeIDOf(t, c, worker), nodeIDOf(t, c, mgr)
	if newW == oldW || newM == oldM {
		t.Fatalf("the nodes joined again with their old node ids (%s %s)", newW, newM)
	}
	// Both instances are scaled in; nobody runs an agent on them, so their actions wait.
	for _, n := range []*testbed.Node{worker, mgr} {
		if err := c.Front.StartScaleIn(ctx, c.InstanceID(n)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	waitfor.Until(t, 2*leaderPass+time.Minute, "both ghosts removed", func() error {
		var left []string
		for _, id := range []string{oldW, oldM} {
			if r, ok := nodeRow(t, c, leader, id); ok {
				left = append(left, fmt.Sprintf("%s %s/%s", id, r.Role, r.State))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("still listed: %v", left)
		}
		return nil
	})
	t.Logf("ghosts removed %s after the scale-in", time.Since(start).Round(time.Second))
	// Past the reap grace and two passes: the live nodes' actions are untouched.
	holdAction(t, c, time.Minute+2*leaderPass-time.Since(start), c.InstanceID(worker), c.InstanceID(mgr))
	d := must[*client.Client](t)(c.Docker(leader))
	res, err := d.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reachable := 0
	for _, n := range res.Items {
		if n.ManagerStatus != nil && n.ManagerStatus.Reachability == swarmapi.ReachabilityReachable {
			reachable++
		}
	}
	if len(res.Items) != 4 || reachable != 3 {
		t.Fatalf("after the ghosts' removal: %d nodes, %d reachable managers; want the 4 live nodes and 3 managers", len(res.Items), reachable)
	}
	for _, id := range []string{newW, newM} {
		if r, ok := nodeRow(t, c, leader, id); !ok || r.State != "ready" {
			t.Fatalf("live node %s: %+v, %v; want ready", id, r, ok)
		}
	}
	var ghosts float64
	for _, m := range others(managers, mgr) {
		ghosts += metric(t, c, m, "swarm_agent_ghost_nodes_removed_total", "")
	}
	if ghosts != 2 {
		t.Errorf("swarm_agent_ghost_nodes_removed_total = %v over the managers, want 2", ghosts)
	}
}

// setEngineLabel rewrites one engine label in node n's daemon.json and has its engine reload
// it (SIGHUP), as anyone with root on the instance can.
func setEngineLabel(t *testing.T, n *testbed.Node, key, value string) {
	t.Helper()
	raw, err := os.ReadFile(n.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", n.ConfigPath(), err)
	}
	labels, _ := cfg["labels"].([]any)
	labels = slices.DeleteFunc(labels, func(l any) bool { s, _ := l.(string); return strings.HasPrefix(s, key+"=") })
	cfg["labels"] = append(labels, key+"="+value)
	if raw, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.ConfigPath(), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	pid, err := os.ReadFile(n.PIDFile())
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err != nil {
		t.Fatalf("%s: %v", n.PIDFile(), err)
	}
	if err := syscall.Kill(p, syscall.SIGHUP); err != nil {
		t.Fatalf("reload %s's engine: %v", n.Name, err)
	}
}

// TestIntegrationSpoofedInstanceID: a worker labels itself (its engine labels, which the
// leader copies into node labels, and so its node label) with a manager's instance id and
// dies; the manager's instance is scaled in while its agent does not run. The label is a
// hint: EC2 says the worker's address is not the manager's instance's, so the leader neither
// completes the manager's lifecycle action on the worker's account (not even past the reap
// grace) nor removes the worker as a "ghost" of the manager, and it counts the refusal.
func TestIntegrationSpoofedInstanceID(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c, leader, victim, worker := threeAndOne(t)
	ctx := t.Context()
	runs := others(c.Bed.Nodes[:3], victim)
	workerID, victimID := nodeIDOf(t, c, worker), nodeIDOf(t, c, victim)
	waitLabel(t, c, leader, workerID, swarm.LabelInstanceID, c.InstanceID(worker))

	setEngineLabel(t, worker, swarm.LabelInstanceID, c.InstanceID(victim))
	waitLabel(t, c, leader, workerID, swarm.LabelInstanceID, c.InstanceID(victim))
	if err := c.Front.StartScaleIn(ctx, c.InstanceID(victim)); err != nil {
		t.Fatal(err)
	}
	if err := c.Bed.KillEngine(worker); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 90*time.Second, "the worker shown down", func() error {
		if r, _ := nodeRow(t, c, leader, workerID); r.State != "down" {
			return fmt.Errorf("state %q", r.State)
		}
		return nil
	})
	// Past the reap grace and two passes: the manager's action waits untouched.
	holdAction(t, c, time.Minute+2*leaderPass, c.InstanceID(victim))
	if r, ok := nodeRow(t, c, leader, workerID); !ok {
		t.Errorf("the worker was removed on its claim to the manager's instance; want it kept (refused)")
	} else if r.State != "down" {
		t.Errorf("the worker is %s, want down", r.State)
	}
	if r, ok := nodeRow(t, c, leader, victimID); !ok || r.Role != "manager" || r.State != "ready" {
		t.Fatalf("the manager whose instance the worker claimed: %+v, %v; want a ready manager", r, ok)
	}
	var refused float64
	for _, m := range runs {
		refused += metric(t, c, m, "swarm_agent_lifecycle_refusals_total", `reason="identity"`)
	}
	if refused == 0 {
		t.Errorf("swarm_agent_lifecycle_refusals_total{reason=\"identity\"} = 0 on the managers, want the refusal counted")
	}
}

// TestIntegrationQueueTakeoverAfterKill: queue mode; a worker's agent starts its drain,
// marks its node leaving and is killed (SIGKILL) at once. The leader sees the drain's
// progress stand still and finishes it: the lifecycle action is completed exactly once with
// CONTINUE, within ProgressStale plus one leader pass plus the tasks' stop grace.
func TestIntegrationQueueTakeoverAfterKill(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 1, 1)
	ctx := t.Context()
	manager, worker := c.Bed.Nodes[0], c.Bed.Nodes[1]
	bootAll(t, c, 1)
	url := noticeQueue(t, c)
	agents := startRuns(t, c, c.Bed.Nodes, "--watch-interval=300ms", "--heartbeat-interval=2s", "--drain-deadline=2m",
		"--queue-url="+url, "--queue-grace=3s")
	id := c.InstanceID(worker)
	nodeID := nodeIDOf(t, c, worker)
	waitLabel(t, c, manager, nodeID, swarm.LabelInstanceID, id)

	// Tasks on the worker that take their stop grace to stop keep its drain going.
	d := must[*client.Client](t)(c.Docker(manager))
	grace := 10 * time.Second
	svc := sleepService(t, d, "slow", 4, grace)
	waitfor.Until(t, 90*time.Second, "some of the tasks on the worker", func() error {
		on, n, err := localcluster.RunningTasks(ctx, d, svc)
		if err == nil && (n != 4 || on[nodeID] == 0) {
			err = fmt.Errorf("%d running, %d on the worker", n, on[nodeID])
		}
		return err
	})

	if err := c.Front.StartScaleIn(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitfor.Every(t, time.Minute, 50*time.Millisecond, "the worker marked leaving by its agent", func() error {
		if r, _ := nodeRow(t, c, manager, nodeID); r.Labels[swarm.LabelLeaving] == "" {
			return fmt.Errorf("labels %v", r.Labels)
		}
		return nil
	})
	if err := agents[worker.Name].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-agents[worker.Name].Done()
	if a, _ := c.Front.LifecycleAction(id); a.Result != "" {
		t.Fatalf("the action was completed before the agent was killed (%+v): the case did not happen", a)
	}
	bound := lifecycle.ProgressStale + leaderPass + grace + 15*time.Second
	waitfor.Until(t, bound, "the lifecycle action completed by the leader", func() error {
		if a, _ := c.Front.LifecycleAction(id); a.Result == "" {
			return fmt.Errorf("action %s, %d completions", a.State, a.Completions)
		}
		return nil
	})
	took := time.Since(killed)
	// Through one more pass, sampled all along: nobody completes it a second time.
	waitfor.Throughout(t, leaderPass, 200*time.Millisecond, "exactly one completion, CONTINUE", func() error {
		if act, _ := c.Front.LifecycleAction(id); act.Result != "CONTINUE" || act.TimedOut || act.Completions != 1 {
			return fmt.Errorf("action %+v", act)
		}
		return nil
	})
	t.Logf("completed %s after the kill (bound %s)", took.Round(time.Millisecond), bound)
	on, running, err := localcluster.RunningTasks(ctx, d, svc)
	if err != nil || running != 4 || on[nodeID] != 0 {
		t.Fatalf("after the takeover: %d running, %d on the worker (%v)", running, on[nodeID], err)
	}
	if n := metric(t, c, manager, "swarm_agent_takeovers_total", ""); n < 1 {
		t.Errorf("swarm_agent_takeovers_total = %v on the leader, want at least 1", n)
	}
}

// TestIntegrationTokenRotation: `docker swarm join-token --rotate worker` on a running
// cluster, then a new worker boots: the leader republishes the token within a pass and the
// worker joins with the new one.
func TestIntegrationTokenRotation(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 1, 1)
	ctx := t.Context()
	manager, worker := c.Bed.Nodes[0], c.Bed.Nodes[1]
	if r := c.Boot(ctx, manager, "manager"); r.Code != 0 {
		t.Fatalf("boot of the manager: exit %d\n%s", r.Code, keyLines(r.Stderr))
	}
	startRuns(t, c, []*testbed.Node{manager})
	d := must[*client.Client](t)(c.Docker(manager))
	before := must[client.SwarmInspectResult](t)(d.SwarmInspect(ctx, client.SwarmInspectOptions{})).Swarm
	if _, err := d.SwarmUpdate(ctx, client.SwarmUpdateOptions{Version: before.Version, Spec: before.Spec, RotateWorkerToken: true}); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	after := must[client.SwarmInspectResult](t)(d.SwarmInspect(ctx, client.SwarmInspectOptions{})).Swarm
	if after.JoinTokens.Worker == before.JoinTokens.Worker {
		t.Fatal("the worker token did not change on rotation")
	}
	// The worker boots meanwhile; the leader's republishing is timed on its own (within a pass
	// and the store's answer), so that the worker's --wait can leave a loaded machine the time
	// its retries and join take: without the rotated token it would still never join.
	wait := leaderPass + 2*time.Minute
	var r localcluster.Run
	booted := make(chan struct{})
	go func() {
		defer close(booted)
		r = c.Boot(ctx, worker, "worker", fmt.Sprintf("--wait=%s", wait))
	}()
	t.Cleanup(func() { <-booted }) // ctx ends first, and with it the boot
	waitfor.Until(t, leaderPass+25*time.Second, "the rotated worker token in the token store", func() error {
		p, err := c.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/swarm-agent/" + localcluster.ClusterName + "/join-token/worker"), WithDecryption: aws.Bool(true)})
		if err != nil {
			return err
		}
		if aws.ToString(p.Parameter.Value) != after.JoinTokens.Worker { // never print tokens
			return fmt.Errorf("the token store's worker token is not the rotated one")
		}
		return nil
	})
	t.Logf("the leader republished the rotated token %s after the rotation", time.Since(rotated).Round(time.Millisecond))
	<-booted
	took := time.Since(rotated)
	if r.Code != 0 {
		t.Fatalf("worker booted after the rotation: exit %d after %s, want 0 within %s\n%s", r.Code, took.Round(time.Millisecond), wait, keyLines(r.Stderr))
	}
	t.Logf("worker joined %s after the rotation", took.Round(time.Millisecond))
	v := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
	if v.Managers != 1 || v.Workers != 1 || len(v.ClusterIDs) != 1 {
		t.Fatalf("after the join: %+v", v)
	}
}

// managerPoll is one look at the managers during a scale-in.
type managerPoll struct {
	reachable int               // managers the swarm shows reachable
	turns     map[string]string // node id -> its leaving-turn label (the claim's Unix second)
	managers  []string          // node ids still managers
}

// pollManagers asks the first of nodes that answers for its node list.
func pollManagers(c *localcluster.Cluster, t *testing.T, nodes []*testbed.Node) (managerPoll, error) {
	var last error
	for _, n := range nodes {
		d, err := c.Docker(n)
		if err != nil {
			last = err
			continue
		}
		res, err := d.NodeList(t.Context(), client.NodeListOptions{})
		if err != nil {
			last = err
			continue
		}
		p := managerPoll{turns: map[string]string{}}
		for _, x := range res.Items {
			if v := x.Spec.Labels[swarm.LabelTurn]; v != "" {
				p.turns[x.ID] = v
			}
			if x.ManagerStatus == nil || x.Spec.Role != swarmapi.NodeRoleManager {
				continue
			}
			p.managers = append(p.managers, x.ID)
			if x.ManagerStatus.Reachability == swarmapi.ReachabilityReachable {
				p.reachable++
			}
		}
		return p, nil
	}
	return managerPoll{}, last
}

// TestIntegrationTwoManagersScaledInTogether: two managers of five are scaled in at the same
// moment. They leave one after the other (never both keeping the leaving turn; the second
// goes on a claim made once the first left the managers; never both demoted between two
// polls), and
// throughout, polled every 200 ms, the swarm shows
// at least three reachable managers. Both actions are completed once with CONTINUE.
func TestIntegrationTwoManagersScaledInTogether(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 5, 0)
	ctx := t.Context()
	managers := c.Bed.Nodes
	bootAll(t, c, 5)
	agents := startRuns(t, c, managers, "--watch-interval=300ms", "--heartbeat-interval=2s", "--drain-deadline=3m")
	leader := leaderOf(t, c, managers)
	victims := others(managers, leader)[:2]
	stay := others(managers, victims...)
	victimIDs := map[string]string{}
	for _, v := range victims {
		victimIDs[v.Name] = nodeIDOf(t, c, v)
	}

	type sample struct {
		at time.Time
		p  managerPoll
	}
	var (
		mu      sync.Mutex
		samples []sample
		fails   int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			p, err := pollManagers(c, t, stay)
			mu.Lock()
			if err != nil {
				fails++
			} else {
				samples = append(samples, sample{time.Now(), p})
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	})
	var once sync.Once
	stopPoll := func() { once.Do(func() { close(stop); wg.Wait() }) }
	t.Cleanup(stopPoll)

	var sg sync.WaitGroup
	errs := make([]error, len(victims))
	for i, v := range victims {
		sg.Go(func() { errs[i] = c.Front.StartScaleIn(ctx, c.InstanceID(v)) })
	}
	sg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	waitfor.Until(t, 6*time.Minute, "both managers' actions completed", func() error {
		for _, v := range victims {
			if a, _ := c.Front.LifecycleAction(c.InstanceID(v)); a.Result == "" {
				return fmt.Errorf("%s: %s, %d heartbeats", v.Name, a.State, a.Heartbeats)
			}
		}
		return nil
	})
	done := time.Now()
	t.Logf("both drained in %s", done.Sub(start).Round(time.Second))
	stopPoll()
	for _, v := range victims {
		if a, _ := c.Front.LifecycleAction(c.InstanceID(v)); a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 {
			t.Errorf("%s: action %+v; want one CONTINUE", v.Name, a)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// Watched throughout: answered polls from before the scale-in to after both completions,
	// never more than maxGap apart (a count would depend on how fast the drains are).
	const maxGap = 2 * time.Second
	if len(samples) < 10 || samples[0].at.After(start.Add(maxGap)) || samples[len(samples)-1].at.Before(done.Add(-maxGap)) {
		t.Fatalf("%d polls answered (%d failed), not covering the scale-in: the invariant was not watched", len(samples), fails)
	}
	for i := 1; i < len(samples); i++ {
		if gap := samples[i].at.Sub(samples[i-1].at); gap > maxGap {
			t.Fatalf("no answered poll for %s (at %s): the invariant was not watched throughout", gap.Round(time.Millisecond), samples[i].at.Format("15:04:05.000"))
		}
	}
	// The turn is claimed with a label and then read back, so two claims made at the same
	// moment are both visible until the one that comes second gives its claim back (turnOf),
	// or, when the first had read no other claim and gone, until the first has left the
	// managers (its demotion: seconds on a loaded machine) while the second waits with its
	// claim: two holders at once is a state the protocol passes through. What must not
	// happen is both keeping their claims and each waiting for the other (until the drain's
	// deadline): the same two claims seen together for longer than a demotion can take
	// (collide), or the second going with a claim made before the first left the managers
	// without waiting for it. Both leaving at once is the demotion check below.
	const collide = 30 * time.Second
	minReach := 5
	demoted := map[string]time.Time{}   // victim -> first poll without it as a manager
	lastAsMgr := map[string]time.Time{} // victim -> last poll with it as a manager
	kept := map[string]string{}         // victim -> the claim it left the managers on
	together := map[string]time.Time{}  // "claimA claimB" -> first poll showing both
	collisions := 0
	for _, s := range samples {
		if s.p.reachable < minReach {
			minReach = s.p.reachable
		}
		if s.p.reachable < 3 {
			t.Errorf("%s: %d reachable managers (%v), want at least 3", s.at.Format("15:04:05.000"), s.p.reachable, s.p.managers)
		}
		var claims []string // managers' claims
		for id, v := range s.p.turns {
			if slices.Contains(s.p.managers, id) {
				claims = append(claims, id+"@"+v)
			}
		}
		if len(claims) > 1 {
			slices.Sort(claims)
			key := strings.Join(claims, " ")
			first, seen := together[key]
			if !seen {
				together[key] = s.at
				collisions++
			} else if s.at.Sub(first) > collide {
				t.Errorf("%s: claims %s held together since %s: both kept the leaving turn", s.at.Format("15:04:05.000"), key, first.Format("15:04:05.000"))
			}
		}
		for name, id := range victimIDs {
			if slices.Contains(s.p.managers, id) {
				lastAsMgr[name] = s.at
				kept[name] = s.p.turns[id]
				continue
			}
			if _, gone := demoted[name]; !gone {
				demoted[name] = s.at
			}
			if kept[name] == "" {
				// Claimed and demoted between two polls: the claim stays on the node
				// until its drain ends.
				kept[name] = s.p.turns[id]
			}
		}
	}
	if len(demoted) == 2 {
		first, second := victims[0].Name, victims[1].Name
		if demoted[second].Before(demoted[first]) {
			first, second = second, first
		}
		// The first left the managers after its last poll as one. The second either claimed
		// once the first was no manager (its claim is not older than that poll's second), or
		// it claimed at the same moment as the first, saw the first's claim and kept its own
		// while it waited for the first to leave (it comes first by mark, the first had
		// already read no other claim and gone): then its log names the first as the one it
		// waited for. An old claim without that wait is a second going on a stale look.
		claim, err := strconv.ParseInt(kept[second], 10, 64)
		waitedFor := "waiting for manager " + victimIDs[first]
		switch {
		case kept[second] == "":
			t.Logf("%s claimed, left the managers and finished between two polls: its claim was not seen", second)
		case err != nil:
			t.Errorf("%s left the managers with an unreadable turn claim (%q)", second, kept[second])
		case claim < lastAsMgr[first].Unix() && strings.Contains(agents[second].Log(), waitedFor):
			t.Logf("%s kept its claim of %s and waited for %s to leave the managers first", second,
				time.Unix(claim, 0).Format("15:04:05"), first)
		case claim < lastAsMgr[first].Unix():
			t.Errorf("%s left the managers on a claim made at %s, before %s left them (still a manager at %s), and never waited for it", second,
				time.Unix(claim, 0).Format("15:04:05"), first, lastAsMgr[first].Format("15:04:05.000"))
		}
	}
	for _, v := range victims {
		if strings.Contains(agents[v.Name].Log(), "to leave the managers first") {
			t.Logf("%s waited for the other's turn", v.Name)
		}
	}
	t.Logf("%d polls (%d unanswered); fewest reachable managers seen: %d; simultaneous claims seen: %d; claims kept %v; left the managers at %v", len(samples), fails, minReach, collisions, kept, demoted)
	if len(demoted) != 2 {
		t.Fatalf("saw %d of the 2 managers leave the managers", len(demoted))
	}
	// One after the other: never both demoted between two polls (200 ms).
	if a, b := demoted[victims[0].Name], demoted[victims[1].Name]; a.Equal(b) {
		t.Errorf("the two managers left the managers between the same two polls (%s)", a.Format("15:04:05.000"))
	}
	v := must[localcluster.View](t)(c.View(ctx, stay))
	if v.Managers != 3 || len(v.ClusterIDs) != 1 {
		t.Fatalf("after both left: %d managers in %d swarms, want 3 in 1", v.Managers, len(v.ClusterIDs))
	}
}

// TestIntegrationScaleInProtection: three managers, one of them dead (its engine gone, its
// instance still in service). Losing either live manager would cost quorum, so the leader
// protects both from scale-in; when the managers' group scales in (SetDesiredCapacity), Auto
// Scaling picks the dead one, and the leader reaps it and completes its action.
func TestIntegrationScaleInProtection(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	// The hook waits longer than the reap grace: the leader, not the hook's timeout, ends it.
	c := newClusterOpts(t, localcluster.Options{Managers: 3, HeartbeatTimeout: 1800})
	ctx := t.Context()
	managers := c.Bed.Nodes
	bootAll(t, c, 3)
	leader := leaderOf(t, c, managers)
	dead := others(managers, leader)[0]
	live := others(managers, dead)
	startRuns(t, c, live, "--watch-interval=300ms", "--reap-grace=1m")
	deadID := nodeIDOf(t, c, dead)
	if err := c.Bed.KillEngine(dead); err != nil {
		t.Fatal(err)
	}
	protected := func() map[string]bool {
		ids := []string{c.InstanceID(managers[0]), c.InstanceID(managers[1]), c.InstanceID(managers[2])}
		out, err := c.ASG.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: ids})
		if err != nil {
			t.Fatal(err)
		}
		p := map[string]bool{}
		for _, in := range out.AutoScalingInstances {
			p[aws.ToString(in.InstanceId)] = aws.ToBool(in.ProtectedFromScaleIn)
		}
		return p
	}
	waitfor.Until(t, 90*time.Second+2*leaderPass, "both live managers protected from scale-in", func() error {
		p := protected()
		if !p[c.InstanceID(live[0])] || !p[c.InstanceID(live[1])] {
			return fmt.Errorf("ProtectedFromScaleIn %v", p)
		}
		return nil
	})
	if protected()[c.InstanceID(dead)] {
		t.Fatal("the dead manager is protected: its loss costs nothing")
	}
	if _, err := c.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(localcluster.ManagersGroup), DesiredCapacity: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	if a, ok := c.Front.LifecycleAction(c.InstanceID(dead)); !ok || a.State != awsfront.StateTerminatingWait {
		t.Fatalf("the dead manager's instance after the scale-in: %+v, %v; want Terminating:Wait", a, ok)
	}
	for _, n := range live {
		if _, held := c.Front.LifecycleAction(c.InstanceID(n)); held {
			t.Fatalf("Auto Scaling picked the protected %s", n.Name)
		}
	}
	waitfor.Until(t, time.Minute+3*leaderPass, "the dead manager reaped and its action completed", func() error {
		if r, ok := nodeRow(t, c, leader, deadID); ok {
			return fmt.Errorf("still listed: %s/%s", r.Role, r.State)
		}
		if a, _ := c.Front.LifecycleAction(c.InstanceID(dead)); a.Result == "" {
			return fmt.Errorf("action %s", a.State)
		}
		return nil
	})
	if a, _ := c.Front.LifecycleAction(c.InstanceID(dead)); a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 {
		t.Fatalf("the dead manager's action %+v; want one CONTINUE by the leader", a)
	}
	var set float64
	for _, n := range live {
		set += metric(t, c, n, "swarm_agent_scale_in_protections_total", `result="set"`)
	}
	if set < 2 {
		t.Errorf("swarm_agent_scale_in_protections_total{result=\"set\"} = %v, want at least 2", set)
	}
}
