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
	"github.com/rs/zerolog"

	route53sdk "github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/discovery/route53"
	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestIntegrationRoute53Boot is the boot issue's proof on real engines: racing managers and
// workers form exactly one swarm, again and again; boot is idempotent; workers wait for
// managers; a dead lock holder does not block the cluster; workers make no Route 53 calls.
func TestIntegrationRoute53Boot(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 3, 3)
	managers, workers := c.Bed.Nodes[:3], c.Bed.Nodes[3:]
	ctx := t.Context()

	t.Run("race", func(t *testing.T) {
		for round := range 10 {
			c.Mode = []string{"multivalue", "failover"}[round%2]
			if err := c.Reset(ctx); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			inits, v := raceRound(t, c, 3, fmt.Sprintf("round%d-%s", round, c.Mode))
			if inits != 1 || len(v.ClusterIDs) != 1 || v.Managers != 3 || v.Workers != 3 || len(v.Inactive) > 0 {
				t.Fatalf("round %d (%s): inits=%d clusters=%d managers=%d workers=%d inactive=%v; want exactly one swarm of 3+3",
					round, c.Mode, inits, len(v.ClusterIDs), v.Managers, v.Workers, v.Inactive)
			}
			if m, w := countRoles(must[[]localcluster.NodeRow](t)(c.Nodes(ctx, managers[0]))); m != 3 || w != 3 {
				t.Fatalf("round %d: node ls shows %d managers %d workers", round, m, w)
			}
			dns := c.DNSManagers(ctx)
			want := 3
			if c.Mode == "failover" {
				want = 1 // PRIMARY only while healthy
			}
			if len(dns) != want {
				t.Fatalf("round %d (%s): DNS answers %v, want %d manager addresses", round, c.Mode, dns, want)
			}
			for _, a := range dns {
				if !slices.ContainsFunc(managers, func(n *testbed.Node) bool { return n.IP == a }) {
					t.Fatalf("round %d: DNS answers %s, not a manager", round, a)
				}
			}
			t.Logf("round %d (%s): one swarm of 3+3 in %s; DNS %v", round, c.Mode, time.Since(start).Round(time.Millisecond), dns)
		}
	})

	t.Run("boot again changes nothing", func(t *testing.T) {
		before := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
		sets := must[[]r53types.ResourceRecordSet](t)(c.RecordSets(ctx))
		c.Front.ResetRequests()
		for i, n := range c.Bed.Nodes {
			role := "manager"
			if i >= 3 {
				role = "worker"
			}
			r := c.Boot(ctx, n, role)
			if r.Code != 0 || r.Result.Action != "reconcile" {
				t.Fatalf("second boot of %s: exit %d action %q\n%s", n.Name, r.Code, r.Result.Action, r.Stderr)
			}
		}
		after := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
		for name, id := range before.NodeIDs {
			if after.NodeIDs[name] != id {
				t.Errorf("%s node id changed %s -> %s", name, id, after.NodeIDs[name])
			}
		}
		if got := must[[]r53types.ResourceRecordSet](t)(c.RecordSets(ctx)); !slices.Equal(setKeys(got), setKeys(sets)) {
			t.Errorf("record sets changed:\n%v\n->\n%v", setKeys(sets), setKeys(got))
		}
		for _, r := range c.Front.Requests() {
			if r.Service == "route53" && r.Operation == "ChangeResourceRecordSets" {
				t.Errorf("second boot changed Route 53: %+v", r)
			}
		}
	})

	t.Run("workers make no Route 53 call while managers are registered", func(t *testing.T) {
		c.Mode = "multivalue"
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		for _, n := range managers {
			if r := c.Boot(ctx, n, "manager"); r.Code != 0 {
				t.Fatalf("manager %s: %s", n.Name, r.Stderr)
			}
		}
		c.Front.ResetRequests()
		var wg sync.WaitGroup
		for _, n := range workers {
			wg.Go(func() {
				if r := c.Boot(ctx, n, "worker"); r.Code != 0 || r.Result.Action != "join" {
					t.Errorf("worker %s: exit %d %q\n%s", n.Name, r.Code, r.Result.Action, r.Stderr)
				}
			})
		}
		wg.Wait()
		workerIDs := map[string]bool{}
		for _, n := range workers {
			workerIDs[c.InstanceID(n)] = true
		}
		var ssmCalls int
		for _, r := range c.Front.Requests() {
			if !workerIDs[r.InstanceID] {
				continue
			}
			if r.Service == "route53" {
				t.Errorf("worker %s called Route 53 %s", r.InstanceID, r.Operation)
			}
			if r.Service == "ssm" {
				ssmCalls++
			}
		}
		if ssmCalls == 0 {
			t.Error("request log shows no SSM call from workers: the log does not attribute calls to instances")
		}
	})

	t.Run("worker waits for a manager, then joins", func(t *testing.T) {
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		done := make(chan localcluster.Run, 1)
		go func() { done <- c.Boot(ctx, workers[0], "worker") }()
		waitfor.Throughout(t, 4*time.Second, 250*time.Millisecond, "a worker waiting while no manager exists", func() error {
			select {
			case r := <-done:
				return fmt.Errorf("worker finished before any manager existed: exit %d %s", r.Code, r.Stderr)
			default:
				return nil
			}
		})
		if r := c.Boot(ctx, managers[0], "manager"); r.Code != 0 || r.Result.Action != "init" {
			t.Fatalf("manager: exit %d %q\n%s", r.Code, r.Result.Action, r.Stderr)
		}
		select {
		case r := <-done:
			if r.Code != 0 || r.Result.Action != "join" {
				t.Fatalf("worker: exit %d %q\n%s", r.Code, r.Result.Action, r.Stderr)
			}
		case <-time.After(90 * time.Second):
			t.Fatal("worker did not join within 90 s of the manager's boot")
		}
	})

	t.Run("wait elapsed", func(t *testing.T) {
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := c.Boot(ctx, workers[1], "worker", "--wait=4s")
		if r.Code != 6 {
			t.Fatalf("exit %d, want 6 (wait elapsed)\n%s", r.Code, r.Stderr)
		}
		last := lastLine(r.Stderr)
		if !strings.Contains(last, "waited") || !strings.Contains(last, "manager") {
			t.Errorf("last line %q does not say what it waited for", last)
		}
		// --wait=4s, not its 10-minute default: a bound far from both, for a loaded machine.
		if el := time.Since(start); el > 90*time.Second {
			t.Errorf("gave up after %s, want about --wait=4s", el)
		}
	})

	t.Run("dead lock holder does not block the cluster", func(t *testing.T) {
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		c.Extra = "lock_ttl=8s"
		defer func() { c.Extra = "" }()
		// Take the lock the way a manager does, and never release it: what a holder killed
		// before swarm init leaves behind.
		spec, err := discovery.Parse(fmt.Sprintf("provider=route53 zone_id=%s name=%s lock_ttl=8s", c.ZoneID, localcluster.ManagersName))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := route53.FromSpec(spec, "manager")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Cluster = localcluster.ClusterName // a holder of this cluster (the record is the cluster's)
		api := route53sdk.NewFromConfig(c.AWS,
			func(o *route53sdk.Options) { o.BaseEndpoint = aws.String(c.Front.APIURL()) })
		deadHolder := discovery.Holder{InstanceID: "i-0000000000000dead", Addr: "10.99.254.254"}
		gone := func(context.Context, discovery.Holder) (bool, string) { return false, "" }
		if _, err := route53.New(cfg, api, zerolog.Nop()).TryLock(ctx, deadHolder, gone); err != nil {
			t.Fatalf("take lock as the dead holder: %v", err)
		}
		// The agents time the lock on their own clocks with their own lock_ttl.
		saved := c.Extra
		c.Extra = "lock_ttl=8s"
		defer func() { c.Extra = saved }()
		start := time.Now()
		var wg sync.WaitGroup
		runs := make([]localcluster.Run, 3)
		for i, n := range managers {
			wg.Go(func() { runs[i] = c.Boot(ctx, n, "manager") })
		}
		wg.Wait()
		inits := 0
		for i, r := range runs {
			if r.Code != 0 {
				t.Fatalf("manager %d: exit %d\n%s", i, r.Code, r.Stderr)
			}
			if r.Result.Action == "init" {
				inits++
			}
		}
		el := time.Since(start)
		if inits != 1 {
			t.Fatalf("%d inits", inits)
		}
		if el < 5*time.Second {
			t.Errorf("a manager initialised after %s, before the dead holder's lock expired", el)
		}
		t.Logf("cluster formed %s after a dead holder took the lock", el.Round(time.Millisecond))
	})

	t.Run("zone not found", func(t *testing.T) {
		saved := c.ZoneID
		c.ZoneID = "ZNOSUCHZONE0000"
		defer func() { c.ZoneID = saved }()
		r := c.Boot(ctx, managers[0], "manager")
		if r.Code != 5 {
			t.Fatalf("exit %d, want 5\n%s", r.Code, r.Stderr)
		}
		if last := lastLine(r.Stderr); !strings.Contains(last, "ZNOSUCHZONE0000") {
			t.Errorf("last line %q does not name the zone", last)
		}
	})
}

func countRoles(rows []localcluster.NodeRow) (managers, workers int) {
	for _, r := range rows {
		if r.State != "ready" {
			continue
		}
		if r.Role == "manager" {
			managers++
		} else {
			workers++
		}
	}
	return
}

// setKeys renders record sets by value (name, identifier, routing, TTL, values) for comparison.
func setKeys(sets []r53types.ResourceRecordSet) []string {
	var out []string
	for _, s := range sets {
		var vals []string
		for _, r := range s.ResourceRecords {
			vals = append(vals, aws.ToString(r.Value))
		}
		out = append(out, fmt.Sprintf("%s/%s/%s/%s/%v/%d/%v", aws.ToString(s.Name), s.Type, aws.ToString(s.SetIdentifier),
			s.Failover, aws.ToBool(s.MultiValueAnswer), aws.ToInt64(s.TTL), vals))
	}
	slices.Sort(out)
	return out
}
