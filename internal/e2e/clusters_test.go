package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// TestIntegrationTwoClustersOneQueue: two clusters in one account (one moto, one front), each
// a manager and a worker in its own swarm, with its own --cluster (token store paths, lock)
// and its own managers' record, their instances tagged swarm-agent:cluster; both managers
// read one termination queue. Both workers (their agents not running) are scaled in at once:
// each leader drains its own worker on its behalf and completes its action, and never calls
// Auto Scaling for the other cluster's instance, although both notices reach both leaders.
func TestIntegrationTwoClustersOneQueue(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, 2)
	ctx := t.Context()
	// The groups hold one node of each cluster: the instances' tags tell them apart.
	mgrA, mgrB, wA, wB := c.Bed.Nodes[0], c.Bed.Nodes[1], c.Bed.Nodes[2], c.Bed.Nodes[3]
	clusterOf := map[*testbed.Node]string{mgrA: localcluster.ClusterName, wA: localcluster.ClusterName, mgrB: "b", wB: "b"}
	for n, cl := range clusterOf {
		if _, err := c.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{c.InstanceID(n)},
			Tags: []ec2types.Tag{{Key: aws.String(lifecycle.TagCluster), Value: aws.String(cl)}}}); err != nil {
			t.Fatal(err)
		}
	}
	bExtra := []string{"--cluster=b", "--discovery=" + strings.Replace(c.Discovery(), "name="+localcluster.ManagersName, "name=managers-b.swarm.internal", 1)}
	for _, b := range []struct {
		n     *testbed.Node
		role  string
		extra []string
	}{{mgrA, "manager", nil}, {mgrB, "manager", bExtra}, {wA, "worker", nil}, {wB, "worker", bExtra}} {
		if r := c.Boot(ctx, b.n, b.role, b.extra...); r.Code != 0 {
			t.Fatalf("boot of %s: exit %d\n%s", b.n.Name, r.Code, r.Stderr)
		}
	}
	va := must[localcluster.View](t)(c.View(ctx, []*testbed.Node{mgrA, wA}))
	vb := must[localcluster.View](t)(c.View(ctx, []*testbed.Node{mgrB, wB}))
	if len(va.ClusterIDs) != 1 || len(vb.ClusterIDs) != 1 || fmt.Sprint(va.ClusterIDs) == fmt.Sprint(vb.ClusterIDs) || va.Workers != 1 || vb.Workers != 1 {
		t.Fatalf("want two swarms of a manager and a worker: %+v / %+v", va, vb)
	}

	workerIDs := map[string]string{wA.Name: nodeIDOf(t, c, wA), wB.Name: nodeIDOf(t, c, wB)}
	url := noticeQueue(t, c)
	runArgs := []string{"--watch-interval=300ms", "--heartbeat-interval=2s", "--drain-deadline=2m", "--queue-url=" + url, "--queue-grace=3s"}
	startRuns(t, c, []*testbed.Node{mgrA}, runArgs...)
	// The bed's environment names cluster "local" for every node, and the environment wins
	// over the file boot wrote: cluster b's agent is told its cluster as a flag.
	startRuns(t, c, []*testbed.Node{mgrB}, append(runArgs, "--cluster=b")...)
	c.Front.ResetRequests()
	for _, w := range []*testbed.Node{wA, wB} {
		if err := c.Front.StartScaleIn(ctx, c.InstanceID(w)); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range []*testbed.Node{wA, wB} {
		id := c.InstanceID(w)
		waitfor.Until(t, 3*time.Minute, "the lifecycle action of "+w.Name+" completed", func() error {
			if a, ok := c.Front.LifecycleAction(id); !ok || a.Result == "" {
				return fmt.Errorf("action %+v", a)
			}
			return nil
		})
		if a, _ := c.Front.LifecycleAction(id); a.Result != "CONTINUE" || a.TimedOut || a.Completions != 1 {
			t.Fatalf("%s: action %+v, want one CONTINUE", w.Name, a)
		}
	}
	// Each instance's lifecycle calls came from its own cluster's leader only.
	leaderOf := map[string]*testbed.Node{c.InstanceID(wA): mgrA, c.InstanceID(wB): mgrB}
	calls := 0
	for _, r := range c.Front.Requests() {
		if r.Service != "autoscaling" || (r.Operation != "CompleteLifecycleAction" && r.Operation != "RecordLifecycleActionHeartbeat") {
			continue
		}
		want, ok := leaderOf[r.Params["InstanceId"]]
		if !ok {
			continue
		}
		calls++
		if r.SourceIP != want.IP {
			t.Errorf("%s for %s came from %s, want only %s's leader %s (%s)", r.Operation, r.Params["InstanceId"], r.SourceIP,
				clusterOf[want], want.Name, want.IP)
		}
	}
	if calls < 2 {
		t.Errorf("%d lifecycle calls seen, want at least the two completions", calls)
	}
	// Each worker was drained in its own swarm.
	for _, w := range []*testbed.Node{wA, wB} {
		mgr := leaderOf[c.InstanceID(w)]
		r, ok := nodeRow(t, c, mgr, workerIDs[w.Name])
		if !ok || r.Availability != "drain" {
			t.Errorf("%s in %s's swarm: %+v (found %v), want drained", w.Name, mgr.Name, r, ok)
		}
	}
}

// TestIntegrationSecondClusterOnOneName: cluster b given cluster local's Route 53 name (a
// copy-paste in Terraform) on real engines: its manager, which finds local's manager in DNS
// and could take local's released lock, and its worker both exit 2 with one line naming both
// clusters and the fix, without a write to the zone; the zone is unchanged after.
func TestIntegrationSecondClusterOnOneName(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, 1)
	ctx := t.Context()
	mgrA, mgrB, wB := c.Bed.Nodes[0], c.Bed.Nodes[1], c.Bed.Nodes[2]
	if r := c.Boot(ctx, mgrA, "manager"); r.Code != 0 {
		t.Fatalf("boot of %s: exit %d\n%s", mgrA.Name, r.Code, r.Stderr)
	}
	zone := func() []string {
		out, err := c.R53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(c.ZoneID)})
		if err != nil {
			t.Fatal(err)
		}
		var sets []string
		for _, s := range out.ResourceRecordSets {
			var vals []string
			for _, r := range s.ResourceRecords {
				vals = append(vals, aws.ToString(r.Value))
			}
			sets = append(sets, fmt.Sprintf("%s %s id=%s failover=%s ttl=%d %q", aws.ToString(s.Name), s.Type, aws.ToString(s.SetIdentifier),
				s.Failover, aws.ToInt64(s.TTL), vals))
		}
		return sets
	}
	before := fmt.Sprint(zone())
	c.Front.ResetRequests()
	for _, b := range []struct {
		n    *testbed.Node
		role string
	}{{mgrB, "manager"}, {wB, "worker"}} {
		start := time.Now()
		r := c.Boot(ctx, b.n, b.role, "--cluster=b")
		line := ""
		for l := range strings.SplitSeq(r.Stderr, "\n") {
			if strings.HasPrefix(l, "swarm-agent: ") {
				line = l
			}
		}
		if r.Code != 2 {
			t.Errorf("%s of cluster b on local's name: exit %d, want 2\n%s", b.role, r.Code, r.Stderr)
		}
		for _, w := range []string{`cluster "local"`, `cluster "b"`, "name=" + localcluster.ManagersName, "give each cluster its own name= in --discovery"} {
			if !strings.Contains(line, w) {
				t.Errorf("%s of cluster b: final line %q does not say %q", b.role, line, w)
			}
		}
		t.Logf("%s of cluster b refused in %s: %s", b.role, time.Since(start).Round(time.Millisecond), line)
	}
	if n := c.Front.Count("route53", "ChangeResourceRecordSets"); n != 0 {
		t.Errorf("cluster b's nodes sent %d ChangeResourceRecordSets, want 0", n)
	}
	if after := fmt.Sprint(zone()); after != before {
		t.Errorf("the zone changed:\nbefore %s\nafter  %s", before, after)
	}
}
