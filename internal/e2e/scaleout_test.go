package e2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// Scale-out settings of the test's agents, and how long a leader tick takes at most.
const (
	soCooldown  = 10 * time.Second
	soInterval  = 45 * time.Second
	soTick      = 5 * time.Second
	soSlack     = 5 * time.Second // a leader pass and the update's start on a loaded machine
	soSpreadPar = 2               // the spread service's update parallelism
)

// labelledService creates a replicated service of sleeping busybox tasks with labels, an
// update config and placement constraints through manager engine d, and waits until its
// replicas run.
func labelledService(t *testing.T, d *client.Client, name string, replicas uint64, grace time.Duration, labels map[string]string, update *swarmapi.UpdateConfig, constraints ...string) string {
	t.Helper()
	return createService(t, d, swarmapi.ServiceSpec{
		Annotations: swarmapi.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarmapi.TaskSpec{ContainerSpec: &swarmapi.ContainerSpec{Image: testbed.Image, Command: []string{"sleep", "3600"}, StopGracePeriod: &grace},
			Placement: &swarmapi.Placement{Constraints: constraints}},
		Mode:         swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
		UpdateConfig: update,
	})
}

// bootNodes boots nodes at once with role and fails the test when a boot does.
func bootNodes(t *testing.T, c *localcluster.Cluster, role string, nodes ...*testbed.Node) {
	t.Helper()
	var wg sync.WaitGroup
	runs := make([]localcluster.Run, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { runs[i] = c.Boot(t.Context(), n, role) })
	}
	wg.Wait()
	for i, r := range runs {
		if r.Code != 0 {
			t.Fatalf("boot of %s: exit %d\n%s", nodes[i].Name, r.Code, keyLines(r.Stderr))
		}
	}
}

// soSample is one look at the cluster during the scale-out test.
type soSample struct {
	at            time.Time
	spreadRunning int
	spreadOn      map[string]int // node id -> running tasks of spread
	spreadState   string         // its update state
	spreadStarted time.Time      // when its last update started
	spreadForce   uint64
	perNode       uint64    // replicas of the replicas-per-node service
	perNodeAt     time.Time // when its spec last changed
	plainVersion  uint64
	draining      []string // live nodes marked leaving
}

// soWatch samples the cluster through manager engine d every 200 ms until stopped.
type soWatch struct {
	mu      sync.Mutex
	samples []soSample
	errs    int
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

func watchScaleOut(t *testing.T, d *client.Client, spread, perNode, plain string) *soWatch {
	w := &soWatch{stop: make(chan struct{})}
	ctx := t.Context()
	inspect := func(id string) (swarmapi.Service, error) {
		res, err := d.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
		return res.Service, err
	}
	look := func() (soSample, error) {
		s := soSample{at: time.Now()}
		on, n, err := localcluster.RunningTasks(ctx, d, spread)
		if err != nil {
			return s, err
		}
		s.spreadOn, s.spreadRunning = on, n
		sp, err := inspect(spread)
		if err != nil {
			return s, err
		}
		s.spreadForce = sp.Spec.TaskTemplate.ForceUpdate
		if u := sp.UpdateStatus; u != nil {
			s.spreadState = string(u.State)
			if u.StartedAt != nil {
				s.spreadStarted = *u.StartedAt
			}
		}
		pn, err := inspect(perNode)
		if err != nil {
			return s, err
		}
		s.perNode, s.perNodeAt = *pn.Spec.Mode.Replicated.Replicas, pn.UpdatedAt
		pl, err := inspect(plain)
		if err != nil {
			return s, err
		}
		s.plainVersion = pl.Version.Index
		nodes, err := d.NodeList(ctx, client.NodeListOptions{})
		if err != nil {
			return s, err
		}
		for _, n := range nodes.Items {
			if n.Spec.Labels[swarm.LabelLeaving] != "" && n.Status.State != swarmapi.NodeStateDown {
				s.draining = append(s.draining, n.ID)
			}
		}
		return s, nil
	}
	w.wg.Go(func() {
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			s, err := look()
			w.mu.Lock()
			if err != nil {
				w.errs++
			} else {
				w.samples = append(w.samples, s)
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
		}
	})
	t.Cleanup(w.halt)
	return w
}

// halt stops the sampling and waits for it.
func (w *soWatch) halt() { w.once.Do(func() { close(w.stop); w.wg.Wait() }) }

// since returns the samples taken from t on.
func (w *soWatch) since(t time.Time) []soSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := slices.IndexFunc(w.samples, func(s soSample) bool { return !s.at.Before(t) })
	if i < 0 {
		return nil
	}
	return slices.Clone(w.samples[i:])
}

// TestIntegrationScaleOut is the scale-out issue's proof on real engines, on one bed: one
// manager and two workers run a service labelled swarm-agent.rebalance=true (6 replicas,
// update parallelism 2, stop-first), a swarm-agent.replicas-per-node=2 service (min 6) and an
// unlabelled one, with `swarm-agent run` everywhere (cooldown 10 s, resize interval 45 s).
//
//  1. Two workers join: within the cooldown plus a leader tick plus the update's own time,
//     the rebalanced service runs on all five nodes, after exactly one rebalance; the
//     replicas-per-node service goes from 6 to 10; the unlabelled service is untouched.
//  2. Both are scaled in within the resize interval (45 s) of the growth: the replicas-per-node
//     service is back at 6 before either lifecycle action completes (the quick drain waits for
//     the leader's release), and never below its minimum; the other drained node runs a task
//     that takes 60 s to stop.
//  3. Four workers join while those drains still run: one rebalance, started only once the
//     drains ended; the replicas-per-node service grows to 14.
//
// Sampled every 200 ms throughout: the rebalanced service never runs fewer than 6 minus its
// update parallelism tasks outside drains; no rebalance rolls while a node drains; the
// replicas-per-node service never goes below 6; the unlabelled service's spec never changes
// (nor its tasks, which run on nodes that stay). Within the first cooldown, `status` on the
// manager (the dry run) names the rebalance and the resize to come.
func TestIntegrationScaleOut(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newClusterOpts(t, localcluster.Options{Managers: 1, Workers: 8})
	ctx := t.Context()
	manager, workers := c.Bed.Nodes[0], c.Bed.Nodes[1:]
	first, second, third := workers[:2], workers[2:4], workers[4:]
	bootNodes(t, c, "manager", manager)
	bootNodes(t, c, "worker", first...)
	args := []string{"--watch-interval=300ms", "--heartbeat-interval=2s", "--drain-deadline=2m",
		"--rebalance-cooldown=" + soCooldown.String(), "--resize-interval=" + soInterval.String()}
	startRuns(t, c, c.Bed.Nodes[:3], args...)
	d := must[*client.Client](t)(c.Docker(manager))

	spread := labelledService(t, d, "spread", 6, time.Second, map[string]string{swarm.LabelRebalance: "true"},
		&swarmapi.UpdateConfig{Parallelism: soSpreadPar, Delay: time.Second, Order: swarmapi.UpdateOrderStopFirst})
	perNode := labelledService(t, d, "per-node", 6, time.Second,
		map[string]string{swarm.LabelReplicasPerNode: "2", swarm.LabelReplicasMin: "6"}, nil)
	plain := labelledService(t, d, "plain", 6, time.Second, nil, nil)
	plainTasks := taskIDs(t, d, plain)
	w := watchScaleOut(t, d, spread, perNode, plain)
	start := time.Now()
	waitfor.Until(t, 30*time.Second, "a first sample", func() error {
		if len(w.since(start)) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	base := w.since(start)[0]
	if base.spreadRunning != 6 || len(base.spreadOn) != 3 || base.perNode != 6 {
		t.Fatalf("before the joins: spread %d running on %v, per-node %d replicas; want 6 on 3 nodes and 6", base.spreadRunning, base.spreadOn, base.perNode)
	}

	// 1. Two workers join.
	bootNodes(t, c, "worker", second...)
	joinedAt := lastCreated(t, d)
	runs := startRuns(t, c, second, args...)
	// The dry run on the manager, within the cooldown: what the leader will do, and when.
	out, err := c.Command(ctx, manager, "status", "--rebalance-cooldown="+soCooldown.String(), "--resize-interval="+soInterval.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if time.Since(joinedAt) < soCooldown-time.Second {
		for _, want := range []string{"Scale-out:", "rebalance spread at ", "spread 6 tasks over 5 nodes", "resize per-node at ", "6 -> 10 replicas (2 per node x 5 nodes)", "waiting for cooldown"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("status within the cooldown lacks %q:\n%s", want, out)
			}
		}
	} else {
		t.Logf("status ran %s after the joins, past the cooldown: its plan not checked", time.Since(joinedAt).Round(time.Millisecond))
	}
	// Waited for generously (a loaded machine starts containers slowly); what is asserted is
	// that the rebalance starts within a cooldown and a leader tick of the last join, and that
	// the tasks are spread once the update (its own time) completed.
	waitfor.Until(t, soCooldown+soTick+3*time.Minute, "the rebalanced service on all 5 nodes, its update completed", func() error {
		s := w.since(joinedAt)
		if len(s) == 0 {
			return fmt.Errorf("no sample yet")
		}
		last := s[len(s)-1]
		if last.spreadState != "completed" || last.spreadRunning != 6 || len(last.spreadOn) != 5 || last.spreadForce != base.spreadForce+1 {
			return fmt.Errorf("update %q (force %d), %d running on %d nodes", last.spreadState, last.spreadForce, last.spreadRunning, len(last.spreadOn))
		}
		return nil
	})
	spreadDone := time.Since(joinedAt)
	p1 := w.since(joinedAt)
	started := p1[len(p1)-1].spreadStarted
	// The slack is the leader's own pass and swarmkit's start of the update, on the loaded
	// machine: CI runs saw 11.4-15.5 s here against the 16 s a 1 s slack allowed.
	if late := started.Sub(joinedAt); late > soCooldown+soTick+soSlack {
		t.Errorf("the rebalance started %s after the last join, want within the cooldown, a leader tick and %s (%s)", late.Round(100*time.Millisecond), soSlack, soCooldown+soTick+soSlack)
	}
	waitfor.Until(t, soTick+time.Minute, "the replicas-per-node service at 10", func() error {
		if _, n, err := localcluster.RunningTasks(ctx, d, perNode); err != nil || n != 10 {
			return fmt.Errorf("%d running (%v)", n, err)
		}
		return nil
	})
	t.Logf("2 joined: the rebalance started %s after the last join, the tasks ran on all 5 nodes %s after it (the update's own time)",
		started.Sub(joinedAt).Round(100*time.Millisecond), (spreadDone - started.Sub(joinedAt)).Round(100*time.Millisecond))
	if got := taskIDs(t, d, plain); !slices.Equal(got, plainTasks) {
		t.Errorf("the unlabelled service's tasks changed: %v, were %v", got, plainTasks)
	}

	// 2. Both are scaled in less than --resize-interval after the service grew, so the leader
	// may not shrink it at once. One of them drains quickly: its hook must wait for the
	// shrink (the release). The other runs the task of another unlabelled service that takes
	// 60 s to stop: its drain lasts long enough for joins and a cooldown to pass meanwhile.
	slowNode, quick := second[0], second[1]
	slowID := nodeIDOf(t, c, slowNode)
	slow := labelledService(t, d, "slow", 1, 60*time.Second, nil, nil, "node.id=="+slowID)
	// Placed; now its replacement may run anywhere (a change of constraints alone that the
	// task's node still meets leaves the task where it is).
	sres := must[client.ServiceInspectResult](t)(d.ServiceInspect(ctx, slow, client.ServiceInspectOptions{}))
	spec := sres.Service.Spec
	// (An empty placement, not none: the bed's engine answered an update that removed the
	// service's placement altogether by dropping the connection, EOF.)
	spec.TaskTemplate.Placement = &swarmapi.Placement{}
	if _, err := d.ServiceUpdate(ctx, slow, client.ServiceUpdateOptions{Version: sres.Service.Version, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	slowTask := taskIDs(t, d, slow)
	grown := w.since(joinedAt)
	grewAt := grown[len(grown)-1].perNodeAt
	if on, _, err := localcluster.RunningTasks(ctx, d, slow); err != nil || on[slowID] != 1 || !slices.Equal(taskIDs(t, d, slow), slowTask) {
		t.Fatalf("the slow task left %s before the scale-in (%v, %v)", slowNode.Name, on, err)
	}
	scaledIn := time.Now()
	for _, n := range second {
		if err := c.Front.StartScaleIn(ctx, c.InstanceID(n)); err != nil {
			t.Fatal(err)
		}
	}
	waitfor.Until(t, time.Minute, "the replicas-per-node service back at 6", func() error {
		s := w.since(scaledIn)
		if len(s) == 0 || s[len(s)-1].perNode != 6 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	shrunk := w.since(scaledIn)
	shrunkAt := shrunk[len(shrunk)-1].perNodeAt

	// 3. Four workers join while the drains run.
	joinStart := time.Now()
	bootNodes(t, c, "worker", third...)
	lastJoin := lastCreated(t, d)
	startRuns(t, c, third, args...)
	var ended time.Time
	waitfor.Until(t, 3*time.Minute, "both scaled-in workers' lifecycle actions completed", func() error {
		for _, n := range second {
			a, _ := c.Front.LifecycleAction(c.InstanceID(n))
			if a.Result == "" {
				return fmt.Errorf("%s: %s", n.Name, a.State)
			}
			if a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 {
				return fmt.Errorf("%s: action %+v, want one CONTINUE", n.Name, a)
			}
			if a.Ended.After(ended) {
				ended = a.Ended
			}
		}
		return nil
	})
	firstEnded := ended
	for _, n := range second {
		if a, _ := c.Front.LifecycleAction(c.InstanceID(n)); a.Ended.Before(firstEnded) {
			firstEnded = a.Ended
		}
	}
	if !shrunkAt.Before(firstEnded) {
		t.Errorf("the replicas-per-node service reached 6 at %s, after a lifecycle action completed (%s)",
			shrunkAt.Format("15:04:05.000"), firstEnded.Format("15:04:05.000"))
	}
	// When the quick drain's tasks had moved before the leader shrank the service (the rate
	// limit holds the shrink until the resize interval passed since the growth), its drain
	// must have waited for the release. On a loaded machine the tasks may move only after the
	// shrink: then nothing was left to wait for, and the order above is what counts.
	log := runs[quick.Name].Log()
	steps := drainSteps(log)
	tasksState, tasksAt := steps["tasks"].State, steps["tasks"].Time
	releaseState := steps["release"].State
	switch {
	case tasksState != "done":
		t.Errorf("%s's drain logged its tasks step %q, want done:\n%s", quick.Name, tasksState, tail(log, 30))
	case tasksAt.Before(shrunkAt.Add(-time.Second)) && releaseState != "done":
		t.Errorf("%s's tasks moved at %s, before the shrink at %s, but its drain did not wait for the leader's release (step %q; grew %s, scaled in %s):\n%s",
			quick.Name, tasksAt.Format("15:04:05.000"), shrunkAt.Format("15:04:05.000"), releaseState,
			grewAt.Format("15:04:05.000"), scaledIn.Format("15:04:05.000"), tail(log, 30))
	case releaseState != "done":
		t.Logf("%s's tasks moved at %s, after the shrink at %s (a loaded machine): its drain had no release to wait for",
			quick.Name, tasksAt.Format("15:04:05.000"), shrunkAt.Format("15:04:05.000"))
	}
	t.Logf("scaled in %s after the growth: back to 6 replicas %s after the scale-in (rate limit), %s before the first completion; joins of 4 from %s to %s, drains ended at %s",
		scaledIn.Sub(grewAt).Round(100*time.Millisecond), shrunkAt.Sub(scaledIn).Round(100*time.Millisecond), firstEnded.Sub(shrunkAt).Round(100*time.Millisecond),
		joinStart.Format("15:04:05.000"), lastJoin.Format("15:04:05.000"), ended.Format("15:04:05.000"))
	waitfor.Until(t, time.Until(maxTime(ended, lastJoin.Add(soCooldown)))+soTick+3*time.Minute, "the second rebalance completed", func() error {
		s := w.since(ended)
		if len(s) == 0 {
			return fmt.Errorf("no sample yet")
		}
		last := s[len(s)-1]
		if last.spreadForce != base.spreadForce+2 || last.spreadState != "completed" || last.spreadRunning != 6 {
			return fmt.Errorf("force %d, update %q, %d running", last.spreadForce, last.spreadState, last.spreadRunning)
		}
		return nil
	})
	waitfor.Until(t, time.Until(shrunkAt.Add(soInterval))+soTick+time.Minute, "the replicas-per-node service at 14", func() error {
		if _, n, err := localcluster.RunningTasks(ctx, d, perNode); err != nil || n != 14 {
			return fmt.Errorf("%d running (%v)", n, err)
		}
		return nil
	})
	// Two more cooldowns and ticks: no second rebalance for the same joins.
	waitfor.Throughout(t, 2*(soCooldown+soTick), time.Second, "one rebalance for four joins", func() error {
		s := w.since(ended)
		if f := s[len(s)-1].spreadForce; f != base.spreadForce+2 {
			return fmt.Errorf("ForceUpdate %d, want %d", f, base.spreadForce+2)
		}
		return nil
	})
	w.halt()

	if got := taskIDs(t, d, plain); !slices.Equal(got, plainTasks) {
		t.Errorf("the unlabelled service's tasks changed: %v, were %v", got, plainTasks)
	}
	all := w.since(start)
	final := all[len(all)-1]
	lo, hi := 6, 0
	for _, id := range nodeIDs(t, d) {
		lo, hi = min(lo, final.spreadOn[id]), max(hi, final.spreadOn[id])
	}
	if hi-lo > 1 {
		t.Errorf("after the second rebalance, tasks per node %v (7 nodes): not spread", final.spreadOn)
	}
	// The first sample of the second rebalance with its update status: swarmkit clears a
	// service's UpdateStatus when its spec changes, until the updater starts (a window that
	// load makes long enough for a sample to fall in).
	var rebalanceStart time.Time
	for _, s := range w.since(ended) {
		if s.spreadForce == base.spreadForce+2 && !s.spreadStarted.IsZero() {
			rebalanceStart = s.spreadStarted
			break
		}
	}
	due := lastJoin.Add(soCooldown)
	t.Logf("4 joined: the rebalance was due at %s (cooldown after the last join), the drains ended at %s, it started at %s",
		due.Format("15:04:05.000"), ended.Format("15:04:05.000"), rebalanceStart.Format("15:04:05.000"))
	if !rebalanceStart.After(ended) {
		t.Errorf("the second rebalance started at %s, before the drains ended (%s)", rebalanceStart.Format("15:04:05.000"), ended.Format("15:04:05.000"))
	}
	if late := rebalanceStart.Sub(maxTime(ended, due)); late > soTick+soSlack { // CI runs saw 0.8-4.7 s
		t.Errorf("the second rebalance started %s after it was due and the drains had ended, want within a leader tick and %s", late.Round(100*time.Millisecond), soSlack)
	}

	// Throughout, every 200 ms: never more than 2 s without an answer while a rebalance rolls
	// (a loaded manager may answer the sampler's five calls slowly; 10 s elsewhere).
	for i, s := range all {
		maxGap := 10 * time.Second
		if i > 0 && (s.spreadState == "updating" || all[i-1].spreadState == "updating") {
			maxGap = 2 * time.Second
		}
		if i > 0 && s.at.Sub(all[i-1].at) > maxGap {
			t.Errorf("no answered sample for %s at %s: not watched throughout", s.at.Sub(all[i-1].at).Round(time.Millisecond), s.at.Format("15:04:05.000"))
		}
		if len(s.draining) == 0 && s.spreadRunning < 6-soSpreadPar {
			t.Errorf("%s: %d tasks of the rebalanced service running (on %v), want at least %d", s.at.Format("15:04:05.000"), s.spreadRunning, s.spreadOn, 6-soSpreadPar)
		}
		if len(s.draining) > 0 && s.spreadState == "updating" {
			t.Errorf("%s: a rebalance rolls while node %v drains", s.at.Format("15:04:05.000"), s.draining)
		}
		if s.perNode < 6 {
			t.Errorf("%s: the replicas-per-node service at %d replicas, below its minimum 6", s.at.Format("15:04:05.000"), s.perNode)
		}
		if s.plainVersion != base.plainVersion {
			t.Errorf("%s: the unlabelled service's spec changed (version %d, was %d)", s.at.Format("15:04:05.000"), s.plainVersion, base.plainVersion)
			break
		}
	}
	minRunning := 6
	for _, s := range all {
		if len(s.draining) == 0 {
			minRunning = min(minRunning, s.spreadRunning)
		}
	}
	t.Logf("%d samples (%d unanswered); fewest running tasks of the rebalanced service outside drains: %d", len(all), w.errs, minRunning)
	for name, want := range map[string]float64{
		"swarm_agent_rebalances_started_total":                     2,
		`swarm_agent_rebalances_finished_total{result="completed"`: 2,
		`swarm_agent_service_resizes_total{direction="up"`:         2,
	} {
		series, match, _ := strings.Cut(name, "{")
		if got := metric(t, c, manager, series, match); got != want {
			t.Errorf("%s = %v on the leader, want %v", name, got, want)
		}
	}
	if got := metric(t, c, manager, "swarm_agent_rebalance_tasks_moved_total", ""); got < 4 {
		t.Errorf("swarm_agent_rebalance_tasks_moved_total = %v, want at least 4 (2 onto the first joins, 2 onto the second)", got)
	}
	if got := metric(t, c, manager, "swarm_agent_service_resizes_total", `direction="down"`); got < 1 {
		t.Errorf("swarm_agent_service_resizes_total{direction=\"down\"} = %v, want at least 1", got)
	}
}

// taskIDs lists the ids of the service's running tasks, sorted.
func taskIDs(t *testing.T, d *client.Client, svc string) []string {
	t.Helper()
	f := client.Filters{}
	f.Add("service", svc)
	f.Add("desired-state", "running")
	res := must[client.TaskListResult](t)(d.TaskList(t.Context(), client.TaskListOptions{Filters: f}))
	var ids []string
	for _, tk := range res.Items {
		ids = append(ids, tk.ID)
	}
	slices.Sort(ids)
	return ids
}

// lastCreated is when the newest node joined, as the swarm recorded it.
func lastCreated(t *testing.T, d *client.Client) time.Time {
	t.Helper()
	var last time.Time
	for _, n := range must[client.NodeListResult](t)(d.NodeList(t.Context(), client.NodeListOptions{})).Items {
		if n.CreatedAt.After(last) {
			last = n.CreatedAt
		}
	}
	return last
}

// nodeIDs lists the swarm's ready nodes.
func nodeIDs(t *testing.T, d *client.Client) []string {
	t.Helper()
	var ids []string
	for _, n := range must[client.NodeListResult](t)(d.NodeList(t.Context(), client.NodeListOptions{})).Items {
		if n.Status.State == swarmapi.NodeStateReady {
			ids = append(ids, n.ID)
		}
	}
	return ids
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
