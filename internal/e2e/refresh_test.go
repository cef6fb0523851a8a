package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestIntegrationInstanceRefresh3 and TestIntegrationInstanceRefresh5: an instance refresh of
// the managers' group through the front (StartInstanceRefresh, AWS's default terminate and
// launch: minimum healthy 90 %, maximum 100 %), with the groups' launching and terminating
// hooks, every manager running its agent, a worker, and a replicated service spread at most
// two tasks per node. The test plays the cloud: each instance the refresh launches becomes a
// spare engine that boots as user_data would, instanceStart after its launch (its boot completes the launch hook once it is a
// reachable Raft member) and then runs the agent. Every old manager's drain holds its
// terminate hook until its replacement is reachable. Polled every 250 ms throughout: at least
// as many reachable managers as the group wants (so a majority, and quorum, always), every
// engine and certificate in the one swarm there was before, and the service never below its
// replicas minus the two tasks of the node being replaced. At the end the managers are the
// new instances only, the old ones left and were terminated, each old action was completed
// once with CONTINUE by its agent, and the swarm is the one it was.
func TestIntegrationInstanceRefresh3(t *testing.T) { testReplaceManagers(t, 3, &byRefresh{}) }

func TestIntegrationInstanceRefresh5(t *testing.T) { testReplaceManagers(t, 5, &byRefresh{}) }

// managersReplacement is what replaces every instance of the managers' group in
// testReplaceManagers: an instance refresh (byRefresh) or the instances reaching the group's
// maximum instance lifetime (byLifetime).
type managersReplacement interface {
	name() string
	// start begins replacing the instances old.
	start(t *testing.T, c *localcluster.Cluster, old map[string]bool)
	// progress is nil once the replacement is over, else what it is doing.
	progress(ctx context.Context, c *localcluster.Cluster) error
	// check fails the test if the replacement did not end as it should.
	check(t *testing.T, c *localcluster.Cluster)
}

// byRefresh replaces the managers with an instance refresh.
type byRefresh struct {
	id    string
	final asgtypes.InstanceRefresh
}

func (r *byRefresh) name() string { return "refresh" }

func (r *byRefresh) start(t *testing.T, c *localcluster.Cluster, _ map[string]bool) {
	out, err := c.ASG.StartInstanceRefresh(t.Context(), &autoscaling.StartInstanceRefreshInput{
		AutoScalingGroupName: aws.String(localcluster.ManagersGroup),
		Preferences: &asgtypes.RefreshPreferences{MinHealthyPercentage: aws.Int32(90), MaxHealthyPercentage: aws.Int32(100),
			InstanceWarmup: aws.Int32(0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.id = aws.ToString(out.InstanceRefreshId)
}

func (r *byRefresh) progress(ctx context.Context, c *localcluster.Cluster) error {
	out, err := c.ASG.DescribeInstanceRefreshes(ctx, &autoscaling.DescribeInstanceRefreshesInput{
		AutoScalingGroupName: aws.String(localcluster.ManagersGroup), InstanceRefreshIds: []string{r.id}})
	if err != nil || len(out.InstanceRefreshes) != 1 {
		return fmt.Errorf("describe: %v", err)
	}
	r.final = out.InstanceRefreshes[0]
	if r.final.Status == asgtypes.InstanceRefreshStatusInProgress || r.final.Status == asgtypes.InstanceRefreshStatusPending {
		return fmt.Errorf("%s, %d%% complete", r.final.Status, aws.ToInt32(r.final.PercentageComplete))
	}
	return nil
}

func (r *byRefresh) check(t *testing.T, _ *localcluster.Cluster) {
	if r.final.Status != asgtypes.InstanceRefreshStatusSuccessful || aws.ToInt32(r.final.PercentageComplete) != 100 {
		t.Fatalf("refresh ended %s (%q), %d%%", r.final.Status, aws.ToString(r.final.StatusReason), aws.ToInt32(r.final.PercentageComplete))
	}
}

// instanceStart is how long an instance the refresh launched takes to start before it boots.
const instanceStart = 20 * time.Second

// refreshSample is one look at the cluster during a refresh.
type refreshSample struct {
	at                  time.Time
	reachable, managers int
	leader              string
	running             int
	clusters            []string // cluster ids seen by engines (docker info) and in certificates
}

// testReplaceManagers runs the managers' replacement how on n managers (see
// TestIntegrationInstanceRefresh3) and checks that quorum, the one swarm and the service held.
func testReplaceManagers(t *testing.T, n int, how managersReplacement) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newClusterOpts(t, localcluster.Options{Managers: n, Workers: 1, Spare: n})
	ctx := t.Context()
	olds, worker, spares := c.Bed.Nodes[:n], c.Bed.Nodes[n], c.Bed.Nodes[n+1:]
	start := time.Now()
	var bg sync.WaitGroup
	runs := make([]localcluster.Run, n+1)
	for i, node := range c.Bed.Nodes[:n+1] {
		role := "manager"
		if node == worker {
			role = "worker"
		}
		bg.Go(func() { runs[i] = c.Boot(ctx, node, role) })
	}
	bg.Wait()
	for i, r := range runs {
		if r.Code != 0 {
			t.Fatalf("boot of %s: exit %d\n%s", c.Bed.Nodes[i].Name, r.Code, keyLines(r.Stderr))
		}
	}
	runFlags := []string{"--watch-interval=300ms", "--heartbeat-interval=2s", "--drain-deadline=4m"}
	startRuns(t, c, c.Bed.Nodes[:n+1], runFlags...)
	if err := c.PutLaunchHook(ctx, localcluster.ManagersGroup, 60, "ABANDON"); err != nil {
		t.Fatal(err)
	}
	d := must[*client.Client](t)(c.Docker(olds[0]))
	replicas := uint64(2 * n)
	svc := spreadService(t, d, "web", replicas, 2)
	v := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes[:n+1]))
	if len(v.ClusterIDs) != 1 || v.Managers != n {
		t.Fatalf("before the %s: %+v", how.name(), v)
	}
	var swarmID string
	for id := range v.ClusterIDs {
		swarmID = id
	}
	oldIDs := map[string]bool{}
	for id := range must[map[string]string](t)(c.GroupInstances(ctx, localcluster.ManagersGroup)) {
		oldIDs[id] = true
	}
	t.Logf("%d managers, a worker and %d tasks ready in %s", n, replicas, time.Since(start).Round(time.Second))

	stop := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	halt := func() { once.Do(func() { close(stop); wg.Wait() }) }

	// The cloud: each instance the refresh launches becomes the next spare engine, which boots
	// as a manager (as its user_data would) and then runs the agent.
	var (
		cmu       sync.Mutex
		cloudErrs []string
		adopted   = map[string]*testbed.Node{}
		newAgents []*localcluster.Agent
	)
	t.Cleanup(func() {
		cmu.Lock()
		defer cmu.Unlock()
		for _, a := range newAgents {
			a.Stop(10 * time.Second)
		}
	})
	t.Cleanup(halt) // runs first: no agent starts after the one above stops them
	wg.Go(func() {
		var boots sync.WaitGroup
		defer boots.Wait()
		tk := time.NewTicker(300 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			st, err := c.GroupInstances(ctx, localcluster.ManagersGroup)
			if err != nil {
				continue
			}
			for id := range st {
				cmu.Lock()
				_, seen := adopted[id]
				free := len(adopted) < len(spares)
				var node *testbed.Node
				if !oldIDs[id] && !seen && free {
					node = spares[len(adopted)]
					adopted[id] = node
				}
				cmu.Unlock()
				if node == nil {
					continue
				}
				if err := c.Adopt(ctx, localcluster.ManagersGroup, id, node); err != nil {
					cmu.Lock()
					cloudErrs = append(cloudErrs, fmt.Sprintf("adopt %s as %s: %v", id, node.Name, err))
					cmu.Unlock()
					continue
				}
				boots.Go(func() {
					// An instance takes a while to start before its user_data runs (tens of
					// seconds on EC2): longer than the old manager's drain of its tasks, so
					// that a drain that did not wait for its replacement would be seen.
					select {
					case <-stop:
						return
					case <-time.After(instanceStart):
					}
					// The user_data passes the group's launch hook: boot completes the
					// replacement's launch action once it is a reachable manager.
					r := c.Boot(ctx, node, "manager", "--heartbeat-interval=2s", "--launch-hook-name="+localcluster.LaunchHookName)
					cmu.Lock()
					defer cmu.Unlock()
					if r.Code != 0 {
						cloudErrs = append(cloudErrs, fmt.Sprintf("boot of %s (%s): exit %d\n%s", node.Name, id, r.Code, keyLines(r.Stderr)))
						return
					}
					a, err := c.StartRun(ctx, node, runFlags...)
					if err != nil {
						cloudErrs = append(cloudErrs, fmt.Sprintf("run on %s: %v", node.Name, err))
						return
					}
					newAgents = append(newAgents, a)
				})
			}
		}
	})

	// The watch.
	var (
		smu     sync.Mutex
		samples []refreshSample
		fails   int
	)
	everyone := c.Bed.Nodes
	wg.Go(func() {
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		for {
			s, err := sampleRefresh(ctx, c, everyone, svc)
			smu.Lock()
			if err != nil {
				fails++
			} else {
				samples = append(samples, s)
			}
			smu.Unlock()
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	})

	began := time.Now()
	how.start(t, c, oldIDs)
	waitfor.Until(t, time.Duration(n)*4*time.Minute, "the "+how.name()+" to end", func() error {
		if err := how.progress(ctx, c); err != nil {
			cmu.Lock()
			defer cmu.Unlock()
			if len(cloudErrs) > 0 {
				t.Fatalf("the cloud failed: %s", strings.Join(cloudErrs, "\n"))
			}
			return err
		}
		return nil
	})
	took := time.Since(began)
	// The old instances' actions: each completed once, with CONTINUE, by its agent.
	waitfor.Until(t, time.Minute, "every old instance's action over", func() error {
		for id := range oldIDs {
			if a, _ := c.Front.LifecycleAction(id); a.Result == "" {
				return fmt.Errorf("%s: %s", id, a.State)
			}
		}
		return nil
	})
	ended := time.Now()
	// A sample taken after the end (on a loaded machine one takes seconds: no fixed sleep).
	waitfor.Until(t, time.Minute, "a sample taken after the end", func() error {
		smu.Lock()
		defer smu.Unlock()
		if len(samples) == 0 || samples[len(samples)-1].at.Before(ended) {
			return fmt.Errorf("%d samples, %d failed", len(samples), fails)
		}
		return nil
	})
	halt()

	how.check(t, c)
	if len(cloudErrs) > 0 {
		t.Fatalf("the cloud failed: %s", strings.Join(cloudErrs, "\n"))
	}
	for id := range oldIDs {
		if a, _ := c.Front.LifecycleAction(id); a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 || a.Heartbeats == 0 {
			t.Errorf("old instance %s: action %+v; want one CONTINUE by its agent after heartbeats", id, a)
		}
	}
	st := must[map[string]string](t)(c.GroupInstances(ctx, localcluster.ManagersGroup))
	if len(st) != n {
		t.Errorf("the group after the %s: %v, want %d instances", how.name(), st, n)
	}
	for id, s := range st {
		if oldIDs[id] || s != "InService" {
			t.Errorf("instance %s after the %s: %s (old %v)", id, how.name(), s, oldIDs[id])
		}
		if a, ok := c.Front.LaunchAction(id); !ok || a.Result != "CONTINUE" || a.TimedOut {
			t.Errorf("replacement %s: launch action %+v", id, a)
		}
	}
	fresh := slices.Clone(spares)
	after := must[localcluster.View](t)(c.View(ctx, append(fresh, worker)))
	if after.Managers != n || after.Workers != 1 || len(after.ClusterIDs) != 1 || !after.ClusterIDs[swarmID] {
		t.Errorf("the replacements and the worker after the %s: %+v, want %d managers of swarm %s and the worker", how.name(), after, n, short(swarmID))
	}
	gone := must[localcluster.View](t)(c.View(ctx, olds))
	if len(gone.NodeIDs) != 0 {
		t.Errorf("old managers still in a swarm: %v", gone.NodeIDs)
	}

	smu.Lock()
	defer smu.Unlock()
	const maxGap = 10 * time.Second // a leader election may keep the managers' API busy a moment
	if len(samples) < 20 || samples[0].at.After(began.Add(time.Second)) || samples[len(samples)-1].at.Before(ended) {
		t.Fatalf("%d samples (%d failed), not covering the %s", len(samples), fails, how.name())
	}
	minReach, minRunning, leaders := 1<<30, 1<<30, []string{}
	for i, s := range samples {
		if i > 0 {
			if gap := s.at.Sub(samples[i-1].at); gap > maxGap {
				t.Errorf("no answered sample for %s before %s: not watched throughout", gap.Round(time.Millisecond), s.at.Format("15:04:05.000"))
			}
		}
		minReach, minRunning = min(minReach, s.reachable), min(minRunning, s.running)
		if s.reachable < n || 2*s.reachable <= s.managers {
			t.Errorf("%s: %d of %d managers reachable, want at least %d and a majority", s.at.Format("15:04:05.000"), s.reachable, s.managers, n)
		}
		if len(s.clusters) != 1 || s.clusters[0] != swarmID {
			t.Errorf("%s: cluster ids %v, want only %s", s.at.Format("15:04:05.000"), s.clusters, short(swarmID))
		}
		if s.running < int(replicas)-2 {
			t.Errorf("%s: %d of %d tasks running, want at least %d", s.at.Format("15:04:05.000"), s.running, replicas, replicas-2)
		}
		if s.leader != "" && (len(leaders) == 0 || leaders[len(leaders)-1] != s.leader) {
			leaders = append(leaders, s.leader)
		}
	}
	t.Logf("%s of %d managers: %s; %d samples (%d failed), at least %d reachable managers, at least %d of %d tasks running, leaders in turn %v",
		how.name(), n, took.Round(time.Second), len(samples), fails, minReach, minRunning, replicas, leaders)
}

// spreadService creates a service of sleeping busybox tasks with at most perNode tasks per
// node through manager engine d and waits until its replicas run; it returns the service id.
func spreadService(t *testing.T, d *client.Client, name string, replicas, perNode uint64) string {
	t.Helper()
	return createService(t, d, swarmapi.ServiceSpec{
		Annotations: swarmapi.Annotations{Name: name},
		TaskTemplate: swarmapi.TaskSpec{ContainerSpec: &swarmapi.ContainerSpec{Image: testbed.Image, Command: []string{"sleep", "3600"}},
			Placement: &swarmapi.Placement{MaxReplicas: perNode}},
		Mode: swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
	})
}

// sampleRefresh looks at the cluster once: the managers and the service through the first
// manager that answers, every engine's and certificate's cluster id.
func sampleRefresh(ctx context.Context, c *localcluster.Cluster, nodes []*testbed.Node, svc string) (refreshSample, error) {
	s := refreshSample{at: time.Now()}
	ids := map[string]bool{}
	for _, ns := range sampleNodes(ctx, c, time.Second) {
		for _, id := range []string{ns.info, ns.cert} {
			if id != "" {
				ids[id] = true
			}
		}
	}
	for id := range ids {
		s.clusters = append(s.clusters, id)
	}
	slices.Sort(s.clusters)
	var last error
	for _, n := range nodes {
		d, err := c.Docker(n)
		if err != nil {
			last = err
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		res, err := d.NodeList(qctx, client.NodeListOptions{})
		if err == nil {
			_, s.running, err = localcluster.RunningTasks(qctx, d, svc)
		}
		cancel()
		if err != nil {
			last = err
			continue
		}
		for _, x := range res.Items {
			if x.ManagerStatus == nil || x.Spec.Role != swarmapi.NodeRoleManager {
				continue
			}
			s.managers++
			if x.ManagerStatus.Reachability == swarmapi.ReachabilityReachable {
				s.reachable++
			}
			if x.ManagerStatus.Leader {
				s.leader = x.Description.Hostname
			}
		}
		return s, nil
	}
	return s, fmt.Errorf("no manager answered: %w", last)
}
