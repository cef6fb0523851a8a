package route53_test

// Several clusters in one account: the managers' record belongs to one cluster (its owner
// record, a TXT at the name), and a node of another cluster refuses it before writing
// anything. Every test runs the real provider through the real SDK against moto and the
// front, with DNS answered by the front's resolver.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/discovery/route53"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// clusterProvider is a node of cluster with role on name, its calls counted.
func (e *env) clusterProvider(t *testing.T, name, cluster string, role swarm.Role, extra string) (*route53.Provider, *countingAPI) {
	t.Helper()
	spec, err := discovery.Parse(fmt.Sprintf("provider=route53 zone_id=%s name=%s resolver=%s %s", e.zone, name, e.Front.DNSAddr(), extra))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := route53.FromSpec(spec, role)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cluster = cluster
	api := &countingAPI{API: e.R53}
	return route53.New(cfg, api, zerolog.Nop()), api
}

// snapshot is every record set of the zone whose name ends with suffix ("" for all), as
// text, in Route 53's order.
func (e *env) snapshot(t *testing.T, suffix string) []string {
	t.Helper()
	in := &awsroute53.ListResourceRecordSetsInput{HostedZoneId: aws.String(e.zone)}
	var out []string
	for {
		res, err := e.R53.ListResourceRecordSets(t.Context(), in)
		if err != nil {
			t.Fatalf("list the zone: %v", err)
		}
		for _, s := range res.ResourceRecordSets {
			name := aws.ToString(s.Name)
			if !strings.HasSuffix(name, suffix) {
				continue
			}
			var vals []string
			for _, r := range s.ResourceRecords {
				vals = append(vals, aws.ToString(r.Value))
			}
			out = append(out, fmt.Sprintf("%s %s id=%s failover=%s multivalue=%t ttl=%d %v", name, s.Type,
				aws.ToString(s.SetIdentifier), s.Failover, aws.ToBool(s.MultiValueAnswer), aws.ToInt64(s.TTL), vals))
		}
		if !res.IsTruncated {
			return out
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = res.NextRecordName, res.NextRecordType, res.NextRecordIdentifier
	}
}

// ownerValues is what the TXT set at name holds (nil: there is none).
func (e *env) ownerValues(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	for _, line := range e.snapshot(t, name+".") {
		if strings.HasPrefix(line, name+". TXT ") {
			out = append(out, line)
		}
	}
	return out
}

func ownerLine(name, cluster string) string {
	return fmt.Sprintf("%s. TXT id= failover= multivalue=false ttl=60 [%s]", name, route53.OwnerValue(cluster))
}

// establish makes name cluster's as a boot does: a manager takes the lock and registers as it
// releases it, a second manager registers.
func (e *env) establish(t *testing.T, name, cluster, mode string, net int) []swarm.Member {
	t.Helper()
	ctx := t.Context()
	ms := []swarm.Member{{InstanceID: fmt.Sprintf("i-%s1", cluster), Addr: fmt.Sprintf("10.%d.0.1", net)},
		{InstanceID: fmt.Sprintf("i-%s2", cluster), Addr: fmt.Sprintf("10.%d.0.2", net)}}
	p, _ := e.clusterProvider(t, name, cluster, swarm.RoleManager, "mode="+mode)
	l, err := p.TryLock(ctx, discovery.Holder{InstanceID: ms[0].InstanceID, Addr: ms[0].Addr}, gone)
	if err != nil {
		t.Fatalf("cluster %s: take the lock of %s: %v", cluster, name, err)
	}
	if _, err := p.Registered(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.(discovery.RegisteringLock).ReleaseRegistered(ctx, ms[0]); err != nil {
		t.Fatalf("cluster %s: register and release: %v", cluster, err)
	}
	p2, _ := e.clusterProvider(t, name, cluster, swarm.RoleManager, "mode="+mode)
	if err := p2.Register(ctx, ms[1]); err != nil {
		t.Fatalf("cluster %s: register the second manager: %v", cluster, err)
	}
	if got := e.ownerValues(t, name); !slices.Equal(got, []string{ownerLine(name, cluster)}) {
		t.Fatalf("owner record of %s: %q, want %q", name, got, ownerLine(name, cluster))
	}
	return ms
}

// wantOtherCluster checks a refusal: both error types (the agent exits 2 on it), one line
// naming both clusters, the name and the fix.
func wantOtherCluster(t *testing.T, what string, err error, name, owner, mine string) {
	t.Helper()
	if !errors.Is(err, discovery.ErrOtherCluster) || !errors.Is(err, discovery.ErrDiscoveryConfig) {
		t.Errorf("%s: %v, want an error wrapping ErrOtherCluster and ErrDiscoveryConfig", what, err)
		return
	}
	msg := err.Error()
	for _, w := range []string{fmt.Sprintf("cluster %q", owner), fmt.Sprintf("cluster %q", mine), "name=" + name,
		"give each cluster its own name= in --discovery"} {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: %q does not say %q", what, msg, w)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("%s: the refusal is not one line: %q", what, msg)
	}
}

func addrsOf(ms ...swarm.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Addr+":2377")
	}
	slices.Sort(out)
	return out
}

// TestTwoClustersTwoNames: two clusters in one zone, each on its own name (one multivalue,
// one failover): each owns its name, each cluster's nodes find only its own managers (workers
// over DNS alone), and each leader's reconcile leaves the other's records alone.
func TestTwoClustersTwoNames(t *testing.T) {
	e := start(t, unlimited)
	ctx := t.Context()
	const nameA, nameB = "managers-a.swarm.internal", "managers-b.swarm.internal"
	a := e.establish(t, nameA, "a", route53.ModeMultivalue, 1)
	b := e.establish(t, nameB, "b", route53.ModeFailover, 2)

	for _, c := range []struct {
		name, cluster, mode string
		want                []string
	}{
		{nameA, "a", route53.ModeMultivalue, addrsOf(a...)},
		{nameB, "b", route53.ModeFailover, addrsOf(b[0])}, // DNS answers the PRIMARY
	} {
		for _, role := range []swarm.Role{swarm.RoleManager, swarm.RoleWorker} {
			p, api := e.clusterProvider(t, c.name, c.cluster, role, "mode="+c.mode)
			got, err := p.Managers(ctx)
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("cluster %s %s: managers %v, %v; want %v", c.cluster, role, got, err, c.want)
			}
			if n := api.n.Load(); n != 0 {
				t.Errorf("cluster %s %s: %d Route 53 API calls to find managers DNS answers for, want 0", c.cluster, role, n)
			}
		}
	}

	// a[1] died: a's leader reconciles; b's records are untouched, and the other way round.
	beforeB := e.snapshot(t, nameB+".")
	pa, _ := e.clusterProvider(t, nameA, "a", swarm.RoleManager, "")
	if err := pa.Reconcile(ctx, a[0], a[:1]); err != nil {
		t.Fatalf("cluster a: reconcile: %v", err)
	}
	if got, _ := pa.ConfirmManagers(ctx); !slices.Equal(got, addrsOf(a[0])) {
		t.Errorf("cluster a after reconcile: %v, want %v", got, addrsOf(a[0]))
	}
	if after := e.snapshot(t, nameB+"."); !slices.Equal(after, beforeB) {
		t.Errorf("cluster a's reconcile changed cluster b's records:\nbefore %q\nafter  %q", beforeB, after)
	}
	beforeA := e.snapshot(t, nameA+".")
	pb, _ := e.clusterProvider(t, nameB, "b", swarm.RoleManager, "mode=failover")
	if err := pb.Reconcile(ctx, b[1], b); err != nil { // leadership moved to b[1]
		t.Fatalf("cluster b: reconcile: %v", err)
	}
	if sets := failoverSetsOf(t, e, nameB); sets["PRIMARY"] != b[1].Addr || sets["SECONDARY"] != b[0].Addr {
		t.Errorf("cluster b after reconcile: %v, want PRIMARY %s SECONDARY %s", sets, b[1].Addr, b[0].Addr)
	}
	if after := e.snapshot(t, nameA+"."); !slices.Equal(after, beforeA) {
		t.Errorf("cluster b's reconcile changed cluster a's records:\nbefore %q\nafter  %q", beforeA, after)
	}
	for name, cluster := range map[string]string{nameA: "a", nameB: "b"} {
		if got := e.ownerValues(t, name); !slices.Equal(got, []string{ownerLine(name, cluster)}) {
			t.Errorf("owner record of %s: %q, want cluster %s's", name, got, cluster)
		}
	}
}

func failoverSetsOf(t *testing.T, e *env, name string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range e.snapshot(t, name+".") {
		f := strings.Fields(line)
		if f[0] == name+"." && f[1] == "A" {
			role := strings.TrimPrefix(f[3], "failover=")
			m[role] = strings.Trim(f[len(f)-1], "[]")
		}
	}
	return m
}

// TestSecondClusterOnSameNameRefused: cluster b given cluster a's name (a copy-paste) refuses
// it at every step, before any write: finding managers, the lock (a's is released: without
// the owner record b would take it), the registry, registering, reconciling (failover: b's
// leader would replace a's PRIMARY), deregistering a set of a's address. A worker of b is
// refused from DNS alone, without an API call. The zone is unchanged after, to the byte.
func TestSecondClusterOnSameNameRefused(t *testing.T) {
	e := start(t, unlimited)
	ctx := t.Context()
	for i, mode := range []string{route53.ModeMultivalue, route53.ModeFailover} {
		t.Run(mode, func(t *testing.T) {
			name := "shared-" + mode + ".swarm.internal"
			a := e.establish(t, name, "a", mode, 10+i)
			before := e.snapshot(t, "")
			e.Front.ResetRequests()
			bm := swarm.Member{InstanceID: "i-b1", Addr: fmt.Sprintf("10.%d.0.9", 20+i)}
			steps := []struct {
				what string
				do   func(p *route53.Provider) error
			}{
				{"find managers", func(p *route53.Provider) error { _, err := p.Managers(ctx); return err }},
				{"take the bootstrap lock", func(p *route53.Provider) error {
					_, err := p.TryLock(ctx, discovery.Holder{InstanceID: bm.InstanceID, Addr: bm.Addr}, gone)
					return err
				}},
				{"read the registry", func(p *route53.Provider) error { _, err := p.Registered(ctx); return err }},
				{"register", func(p *route53.Provider) error { return p.Register(ctx, bm) }},
				{"reconcile as leader", func(p *route53.Provider) error { return p.Reconcile(ctx, bm, []swarm.Member{bm}) }},
				{"deregister a set of a's address", func(p *route53.Provider) error { return p.Deregister(ctx, a[0]) }},
			}
			for _, s := range steps {
				p, _ := e.clusterProvider(t, name, "b", swarm.RoleManager, "mode="+mode)
				wantOtherCluster(t, "manager of b: "+s.what, s.do(p), name, "a", "b")
			}
			w, api := e.clusterProvider(t, name, "b", swarm.RoleWorker, "mode="+mode)
			_, err := w.Managers(ctx)
			wantOtherCluster(t, "worker of b: find managers", err, name, "a", "b")
			if n := api.n.Load(); n != 0 {
				t.Errorf("worker of b made %d Route 53 API calls, want 0 (the owner record answers in DNS)", n)
			}
			w2, _ := e.clusterProvider(t, name, "b", swarm.RoleWorker, "mode="+mode)
			_, err = w2.ConfirmManagers(ctx) // past a negative DNS answer, a worker reads the API
			wantOtherCluster(t, "worker of b: read managers through the API", err, name, "a", "b")

			if n := e.Count("route53", "ChangeResourceRecordSets"); n != 0 {
				t.Errorf("cluster b's nodes sent %d ChangeResourceRecordSets, want 0", n)
			}
			if after := e.snapshot(t, ""); !slices.Equal(after, before) {
				t.Errorf("the zone changed:\nbefore %q\nafter  %q", before, after)
			}
			// Cluster a goes on as before.
			pa, _ := e.clusterProvider(t, name, "a", swarm.RoleManager, "mode="+mode)
			if got, err := pa.Managers(ctx); err != nil || len(got) == 0 {
				t.Errorf("cluster a after b's refusals: managers %v, %v", got, err)
			}
			if err := pa.Reconcile(ctx, a[0], a); err != nil {
				t.Errorf("cluster a after b's refusals: reconcile: %v", err)
			}
		})
	}
}

// TestTwoClustersRaceForOneName: three managers of each of two clusters given one fresh name
// take the lock at the same instant: one node wins, its cluster owns the name, and every node
// of the other cluster is refused on its next look (those of the winner's cluster see the lock
// held), nothing of theirs written.
func TestTwoClustersRaceForOneName(t *testing.T) {
	e := start(t, unlimited)
	ctx := t.Context()
	const name = "race.swarm.internal"
	type node struct {
		cluster string
		id      string
		p       *route53.Provider
		api     *countingAPI
		lock    discovery.Lock
		err     error
	}
	var nodes []*node
	for _, c := range []string{"a", "b"} {
		for i := range 3 {
			p, api := e.clusterProvider(t, name, c, swarm.RoleManager, "")
			nodes = append(nodes, &node{cluster: c, id: fmt.Sprintf("i-%s%d", c, i), p: p, api: api})
		}
	}
	gun := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			<-gun
			n.lock, n.err = n.p.TryLock(ctx, discovery.Holder{InstanceID: n.id, Addr: "192.0.2.1"}, gone)
		})
	}
	close(gun)
	wg.Wait()
	var winner *node
	for _, n := range nodes {
		switch {
		case n.err == nil && winner != nil:
			t.Fatalf("two nodes hold the lock: %s and %s", winner.id, n.id)
		case n.err == nil:
			winner = n
		case !errors.Is(n.err, discovery.ErrLockHeld) && !errors.Is(n.err, discovery.ErrOtherCluster):
			t.Errorf("%s: %v, want the lock held or the name another cluster's", n.id, n.err)
		}
	}
	if winner == nil {
		t.Fatal("no node took the lock")
	}
	other := map[string]string{"a": "b", "b": "a"}[winner.cluster]
	if got := e.ownerValues(t, name); !slices.Equal(got, []string{ownerLine(name, winner.cluster)}) {
		t.Fatalf("owner record %q, want the winner's cluster %s", got, winner.cluster)
	}
	before := e.snapshot(t, "")
	e.Front.ResetRequests()
	for _, n := range nodes {
		if n == winner {
			continue
		}
		p, _ := e.clusterProvider(t, name, n.cluster, swarm.RoleManager, "")
		_, err := p.TryLock(ctx, discovery.Holder{InstanceID: n.id, Addr: "192.0.2.1"}, gone)
		if n.cluster == other {
			wantOtherCluster(t, n.id+" looking again", err, name, winner.cluster, other)
		} else if !errors.Is(err, discovery.ErrLockHeld) {
			t.Errorf("%s (the winner's cluster) looking again: %v, want the lock held", n.id, err)
		}
	}
	if n := e.Count("route53", "ChangeResourceRecordSets"); n != 0 {
		t.Errorf("the losers sent %d ChangeResourceRecordSets looking again, want 0", n)
	}
	if after := e.snapshot(t, ""); !slices.Equal(after, before) {
		t.Errorf("the zone changed:\nbefore %q\nafter  %q", before, after)
	}
	if err := winner.lock.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOwnerCreatedOnceUnderRace: three managers of one cluster booting at the same instant
// (real boot, in-memory engines) create the owner record exactly once, in both modes; and
// three new managers registering at once into a record an older version made (no owner)
// claim it exactly once, all three registered beside the older sets.
func TestOwnerCreatedOnceUnderRace(t *testing.T) {
	for _, mode := range []string{route53.ModeMultivalue, route53.ModeFailover} {
		t.Run("boot/"+mode, func(t *testing.T) {
			e := start(t, unlimited)
			res, calls := bootManagers(t, e, &world{}, &memTokens{}, 3, "mode="+mode)
			created := int64(0)
			for i := range calls {
				created += calls[i].ownerCreates.Load()
			}
			if created != 1 {
				t.Errorf("owner record created %d times by 3 managers booting together (%v %v %v), want 1", created, res[0].Action, res[1].Action, res[2].Action)
			}
			if got := e.ownerValues(t, "managers.swarm.internal"); !slices.Equal(got, []string{ownerLine("managers.swarm.internal", route53.DefaultCluster)}) {
				t.Errorf("owner record %q", got)
			}
			inits := 0
			for _, r := range res {
				if r.Action == bootstrap.ActInit {
					inits++
				}
			}
			if inits != 1 {
				t.Errorf("%d managers created a swarm, want 1", inits)
			}
		})
	}
	t.Run("register into an older version's record", func(t *testing.T) {
		e := start(t, unlimited)
		ctx := t.Context()
		const name = "legacy-race.swarm.internal"
		old := olderZone(t, e, name)
		news := []swarm.Member{{InstanceID: "i-new1", Addr: "10.5.0.11"}, {InstanceID: "i-new2", Addr: "10.5.0.12"}, {InstanceID: "i-new3", Addr: "10.5.0.13"}}
		apis := make([]*countingAPI, len(news))
		errs := make([]error, len(news))
		gun := make(chan struct{})
		var wg sync.WaitGroup
		for i, m := range news {
			p, api := e.clusterProvider(t, name, "prod", swarm.RoleManager, "")
			apis[i] = api
			wg.Go(func() {
				<-gun
				errs[i] = p.Register(ctx, m)
			})
		}
		close(gun)
		wg.Wait()
		created := int64(0)
		for i, err := range errs {
			if err != nil {
				t.Errorf("manager %s: register: %v", news[i].InstanceID, err)
			}
			created += apis[i].ownerCreates.Load()
		}
		if created != 1 {
			t.Errorf("owner record created %d times by 3 managers registering together, want 1", created)
		}
		p, _ := e.clusterProvider(t, name, "prod", swarm.RoleManager, "")
		if got, _ := p.ConfirmManagers(ctx); !slices.Equal(got, addrsOf(append(old, news...)...)) {
			t.Errorf("registered %v, want the older sets and the three new ones %v", got, addrsOf(append(old, news...)...))
		}
		if got := e.ownerValues(t, name); !slices.Equal(got, []string{ownerLine(name, "prod")}) {
			t.Errorf("owner record %q", got)
		}
	})
}

// olderZone writes what an older version leaves at name (no owner record): two managers'
// multivalue sets and an expired lock.
func olderZone(t *testing.T, e *env, name string) []swarm.Member {
	t.Helper()
	old := []swarm.Member{{InstanceID: "i-old1", Addr: "10.5.0.1"}, {InstanceID: "i-old2", Addr: "10.5.0.2"}}
	var changes []types.Change
	for _, m := range old {
		changes = append(changes, types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: &types.ResourceRecordSet{
			Name: aws.String(name), Type: types.RRTypeA, TTL: aws.Int64(10), SetIdentifier: aws.String(m.InstanceID),
			MultiValueAnswer: aws.Bool(true), ResourceRecords: []types.ResourceRecord{{Value: aws.String(m.Addr)}}}})
	}
	changes = append(changes, types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: &types.ResourceRecordSet{
		Name: aws.String("_swarm-agent-lock." + name), Type: types.RRTypeTxt, TTL: aws.Int64(1),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(`"owner=i-old1 addr=10.5.0.1 n=7 expires=1700000000"`)}}}})
	if _, err := e.R53.ChangeResourceRecordSets(t.Context(), &awsroute53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(e.zone),
		ChangeBatch: &types.ChangeBatch{Changes: changes}}); err != nil {
		t.Fatalf("write an older version's zone: %v", err)
	}
	return old
}

// TestUnownedZoneAdopted: a record an older version made has no owner record. Nodes of this
// version use it as before (nothing written to find managers); the first manager that writes
// claims it for its cluster: the leader's reconcile when the record is already right (a batch
// holding the owner record only), or a registration (its set and the owner record in one
// batch). Nothing else changes, and from then on another cluster is refused.
func TestUnownedZoneAdopted(t *testing.T) {
	e := start(t, unlimited)
	ctx := t.Context()

	t.Run("by the leader's reconcile", func(t *testing.T) {
		const name = "legacy-leader.swarm.internal"
		old := olderZone(t, e, name)
		before := e.snapshot(t, "")
		e.Front.ResetRequests()
		for _, role := range []swarm.Role{swarm.RoleManager, swarm.RoleWorker} {
			p, _ := e.clusterProvider(t, name, "prod", role, "")
			if got, err := p.Managers(ctx); err != nil || !slices.Equal(got, addrsOf(old...)) {
				t.Errorf("%s of this version in an unowned record: managers %v, %v; want %v", role, got, err, addrsOf(old...))
			}
		}
		if n := e.Count("route53", "ChangeResourceRecordSets"); n != 0 {
			t.Errorf("finding managers wrote %d batches, want 0", n)
		}
		leader, calls := e.clusterProvider(t, name, "prod", swarm.RoleManager, "")
		if err := leader.Reconcile(ctx, old[0], old); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		if n := calls.ownerCreates.Load(); n != 1 {
			t.Errorf("the leader created the owner record %d times, want 1", n)
		}
		if n := e.Count("route53", "ChangeResourceRecordSets"); n != 1 {
			t.Errorf("the leader wrote %d batches, want 1 (the claim)", n)
		}
		want := append(slices.Clone(before), ownerLine(name, "prod"))
		slices.Sort(want)
		after := e.snapshot(t, "")
		slices.Sort(after)
		if !slices.Equal(after, want) {
			t.Errorf("after the claim:\n got %q\nwant %q (the older records untouched, the owner record added)", after, want)
		}
		e.Front.ResetRequests()
		if err := leader.Reconcile(ctx, old[0], old); err != nil {
			t.Fatal(err)
		}
		if n := e.Count("route53", "ChangeResourceRecordSets"); n != 0 {
			t.Errorf("reconciling again wrote %d batches, want 0", n)
		}
		p, _ := e.clusterProvider(t, name, "staging", swarm.RoleManager, "")
		_, err := p.TryLock(ctx, discovery.Holder{InstanceID: "i-s1", Addr: "10.6.0.1"}, gone)
		wantOtherCluster(t, "a manager of another cluster after the claim", err, name, "prod", "staging")
	})

	t.Run("by a registration", func(t *testing.T) {
		const name = "legacy-register.swarm.internal"
		old := olderZone(t, e, name)
		before := e.snapshot(t, "")
		e.Front.ResetRequests()
		m := swarm.Member{InstanceID: "i-new", Addr: "10.5.0.3"}
		p, calls := e.clusterProvider(t, name, "prod", swarm.RoleManager, "")
		if err := p.Register(ctx, m); err != nil {
			t.Fatalf("register: %v", err)
		}
		if n := e.Count("route53", "ChangeResourceRecordSets"); n != 1 || calls.ownerCreates.Load() != 1 {
			t.Errorf("%d batches, %d owner records created; want 1 batch registering and claiming", n, calls.ownerCreates.Load())
		}
		if got, _ := p.ConfirmManagers(ctx); !slices.Equal(got, addrsOf(append(old, m)...)) {
			t.Errorf("registered %v, want %v", got, addrsOf(append(old, m)...))
		}
		after := e.snapshot(t, "")
		for _, line := range before {
			if !slices.Contains(after, line) {
				t.Errorf("the claim changed an older record: %q is gone", line)
			}
		}
		if got := e.ownerValues(t, name); !slices.Equal(got, []string{ownerLine(name, "prod")}) {
			t.Errorf("owner record %q", got)
		}
	})

	t.Run("a TXT record of someone else's at the name is left alone", func(t *testing.T) {
		const name = "foreign-txt.swarm.internal"
		if _, err := e.R53.ChangeResourceRecordSets(ctx, &awsroute53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(e.zone),
			ChangeBatch: &types.ChangeBatch{Changes: []types.Change{{Action: types.ChangeActionCreate, ResourceRecordSet: &types.ResourceRecordSet{
				Name: aws.String(name), Type: types.RRTypeTxt, TTL: aws.Int64(300),
				ResourceRecords: []types.ResourceRecord{{Value: aws.String(`"v=spf1 -all"`)}}}}}}}); err != nil {
			t.Fatal(err)
		}
		m := swarm.Member{InstanceID: "i-f1", Addr: "10.7.0.1"}
		p, calls := e.clusterProvider(t, name, "prod", swarm.RoleManager, "")
		if err := p.Register(ctx, m); err != nil {
			t.Fatalf("register beside a foreign TXT: %v", err)
		}
		if calls.ownerCreates.Load() != 0 {
			t.Error("an owner record was written over someone else's TXT set")
		}
		if got := e.ownerValues(t, name); len(got) != 1 || !strings.Contains(got[0], `"v=spf1 -all"`) || strings.Contains(got[0], "swarm-agent") {
			t.Errorf("TXT at the name: %q, want the foreign value alone", got)
		}
		w, _ := e.clusterProvider(t, name, "other", swarm.RoleWorker, "")
		if got, err := w.Managers(ctx); err != nil || !slices.Equal(got, addrsOf(m)) {
			t.Errorf("worker beside a foreign TXT: %v, %v", got, err)
		}
	})
}

func TestOwnerValue(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		others  []string
		mine    bool
		foreign bool
	}{
		{"this cluster's", []string{route53.OwnerValue("prod")}, nil, true, false},
		{"another cluster's", []string{route53.OwnerValue("staging")}, []string{"staging"}, false, false},
		{"both", []string{route53.OwnerValue("staging"), route53.OwnerValue("prod")}, []string{"staging"}, true, false},
		{"split into character-strings", []string{`"swarm-agent " "cluster=prod"`}, nil, true, false},
		{"unquoted (as DNS clients give it)", []string{"swarm-agent cluster=prod"}, nil, true, false},
		{"keys a later version may add", []string{`"swarm-agent v=2 cluster=prod since=2026"`}, nil, true, false},
		{"someone else's", []string{`"v=spf1 -all"`}, nil, false, true},
		{"names no cluster", []string{`"swarm-agent"`, `"swarm-agent cluster="`}, nil, false, true},
		{"case matters (paths are case-sensitive)", []string{route53.OwnerValue("Prod")}, []string{"Prod"}, false, false},
		{"escaped quote", []string{`"swarm-agent cluster=a\"b"`}, []string{`a"b`}, false, false},
		{"none", nil, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			others, mine, foreign := route53.OwnersOf("prod", tt.values)
			if !slices.Equal(others, tt.others) || mine != tt.mine || foreign != tt.foreign {
				t.Errorf("OwnersOf(prod, %q) = %q %t %t, want %q %t %t", tt.values, others, mine, foreign, tt.others, tt.mine, tt.foreign)
			}
		})
	}
}

func FuzzOwnerValue(f *testing.F) {
	for _, s := range [][2]string{{"prod", route53.OwnerValue("prod")}, {"prod", `"swarm-agent " "cluster=x"`},
		{"a.b_c-d", `"swarm-agent cluster=a.b_c-d"`}, {"x", `"v=spf1 -all"`}, {"x", `"\`}, {"", `""""`}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, cluster, value string) {
		others, mine, _ := route53.OwnersOf(cluster, []string{value})
		if mine && slices.Contains(others, cluster) {
			t.Fatalf("%q names %q as this cluster and as another", value, cluster)
		}
		if discovery.CheckCluster(cluster) != nil {
			return
		}
		others, mine, foreign := route53.OwnersOf(cluster, []string{route53.OwnerValue(cluster)})
		if !mine || foreign || len(others) != 0 {
			t.Fatalf("OwnerValue(%q) reads back as %q %t %t", cluster, others, mine, foreign)
		}
		if others, mine, _ := route53.OwnersOf(cluster+"x", []string{route53.OwnerValue(cluster)}); mine || !slices.Equal(others, []string{cluster}) {
			t.Fatalf("OwnerValue(%q) read by cluster %q: %q %t", cluster, cluster+"x", others, mine)
		}
	})
}
