package route53_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/discovery/route53"
	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// world is an in-memory swarm shared by fake engines: who inited, who joined, and what a
// probe of a swarm port sees. It stands in for real engines so that the Route 53 calls of
// managers booting together can be counted against moto and the front.
type world struct {
	mu      sync.Mutex
	cluster string          // "" until the first init
	inits   int             // swarms created
	members map[string]bool // advertise addresses of nodes in the swarm
}

func (w *world) probe(_ context.Context, addr string) bootstrap.Probe {
	w.mu.Lock()
	defer w.mu.Unlock()
	host, _, _ := net.SplitHostPort(addr)
	if !w.members[host] {
		return bootstrap.Probe{}
	}
	return bootstrap.Probe{Answers: true, ClusterID: w.cluster, Manager: true}
}

// memManager is one node's engine in the world.
type memManager struct {
	w    *world
	addr string
}

func (e *memManager) Local(context.Context) (bootstrap.LocalNode, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if !e.w.members[e.addr] {
		return bootstrap.LocalNode{State: bootstrap.StateInactive}, nil
	}
	return bootstrap.LocalNode{State: bootstrap.StateActive, NodeID: "node-" + e.addr, ClusterID: e.w.cluster,
		IsManager: true, NodeAddr: e.addr, RemoteManagers: []string{net.JoinHostPort(e.addr, "2377")}}, nil
}

func (e *memManager) Init(context.Context, bootstrap.InitRequest) (string, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	e.w.inits++
	e.w.cluster = fmt.Sprintf("cluster-%d", e.w.inits)
	e.w.members = map[string]bool{e.addr: true}
	return "node-" + e.addr, nil
}

func (e *memManager) Join(context.Context, bootstrap.JoinRequest) error {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if e.w.cluster == "" {
		return fmt.Errorf("memManager: no swarm to join")
	}
	e.w.members[e.addr] = true
	return nil
}

func (e *memManager) Leave(context.Context, bool) error {
	return fmt.Errorf("memManager: leave is not expected")
}

func (e *memManager) JoinTokens(context.Context) (swarm.JoinTokens, string, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	return swarm.JoinTokens{Worker: "SWMTKN-w-" + e.w.cluster, Manager: "SWMTKN-m-" + e.w.cluster}, e.w.cluster, nil
}

func (e *memManager) SetNodeLabels(context.Context, string, map[string]string) error { return nil }

// memTokens is a token store in memory (the count is about Route 53).
type memTokens struct {
	mu      sync.Mutex
	cluster string
	t       swarm.JoinTokens
}

func (s *memTokens) PutTokens(_ context.Context, clusterID string, t swarm.JoinTokens) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cluster, s.t = clusterID, t
	return nil
}

func (s *memTokens) Token(_ context.Context, r swarm.Role) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cluster == "" {
		return "", "", discovery.ErrNoToken
	}
	return s.t.For(r), s.cluster, nil
}

// bootManagers boots n managers at the same instant with the real provider against moto and
// the front, and returns what each boot did.
func bootManagers(t *testing.T, e *env, w *world, store *memTokens, n int, extra string) ([]bootstrap.Result, []countingAPI) {
	t.Helper()
	ctx := t.Context()
	calls := make([]countingAPI, n)
	for i := range calls {
		calls[i].API = e.R53
	}
	res := make([]bootstrap.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	startGun := make(chan struct{})
	for i := range n {
		addr := "10.0.0." + strconv.Itoa(i+1)
		p := route53.New(e.config(t, extra), &calls[i], zerolog.Nop())
		deps := bootstrap.Deps{
			Engine: &memManager{w: w, addr: addr}, Discoverer: p, Registrar: p, Locker: p, Tokens: store,
			Probe: w.probe,
			// EC2 is not part of the count: every instance runs.
			InstanceGone: func(context.Context, string) (bool, error) { return false, nil },
			Log:          zerolog.Nop(),
		}
		cfg := bootstrap.Config{Role: swarm.RoleManager, Cluster: "c",
			Identity: swarm.Identity{InstanceID: "i-" + strconv.Itoa(i+1), PrivateIP: addr}, Wait: time.Minute}
		wg.Go(func() {
			<-startGun
			res[i], errs[i] = bootstrap.Boot(ctx, cfg, deps)
		})
	}
	close(startGun)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("manager %d: boot: %v", i+1, err)
		}
	}
	return res, calls
}

// countingAPI counts one manager's Route 53 calls, and its applied batches that created an
// owner record (a TXT set at a managers' name), by CREATE or UPSERT.
type countingAPI struct {
	route53.API
	n            atomic.Int64
	ownerCreates atomic.Int64
}

func (c *countingAPI) ListResourceRecordSets(ctx context.Context, in *awsroute53.ListResourceRecordSetsInput, o ...func(*awsroute53.Options)) (*awsroute53.ListResourceRecordSetsOutput, error) {
	c.n.Add(1)
	return c.API.ListResourceRecordSets(ctx, in, o...)
}

func (c *countingAPI) ChangeResourceRecordSets(ctx context.Context, in *awsroute53.ChangeResourceRecordSetsInput, o ...func(*awsroute53.Options)) (*awsroute53.ChangeResourceRecordSetsOutput, error) {
	c.n.Add(1)
	out, err := c.API.ChangeResourceRecordSets(ctx, in, o...)
	if err == nil {
		for _, ch := range in.ChangeBatch.Changes {
			rs := ch.ResourceRecordSet
			if ch.Action != types.ChangeActionDelete && rs.Type == types.RRTypeTxt && !strings.HasPrefix(aws.ToString(rs.Name), "_swarm-agent-lock.") {
				c.ownerCreates.Add(1)
			}
		}
	}
	return out, err
}

// route53Calls counts the front's Route 53 requests by operation.
func route53Calls(e *env) (total int, byOp map[string]int) {
	byOp = map[string]int{}
	for _, r := range e.Front.Requests() {
		if r.Service == "route53" {
			byOp[r.Operation]++
			total++
		}
	}
	return total, byOp
}

// TestManagersBootCalls boots 3 managers together against moto and the front and counts the
// Route 53 calls the front saw: at most 3 per manager in a normal boot (read the zone once,
// take the lock or see it held, register; the creator reads the registry once more under the
// lock), 10 in total. A second boot of all three (a
// reconcile) reads once each and writes nothing. Both record modes, each in its own zone.
func TestManagersBootCalls(t *testing.T) {
	for _, mode := range []string{route53.ModeMultivalue, route53.ModeFailover} {
		t.Run(mode, func(t *testing.T) {
			e := start(t, unlimited)
			w := &world{}
			store := &memTokens{}
			e.Front.ResetRequests()
			res, calls := bootManagers(t, e, w, store, 3, "mode="+mode)
			total, byOp := route53Calls(e)
			t.Logf("3 managers booting together: %d Route 53 calls %v; actions %v %v %v", total, byOp, res[0].Action, res[1].Action, res[2].Action)
			if w.inits != 1 {
				t.Fatalf("%d swarms created, want 1", w.inits)
			}
			if total > 10 {
				t.Errorf("3 managers booting together made %d Route 53 calls %v, want at most 10", total, byOp)
			}
			for i := range calls {
				limit := int64(3)
				if res[i].Action == bootstrap.ActInit {
					limit = 4
				}
				if n := calls[i].n.Load(); n > limit {
					t.Errorf("manager %d (%s) made %d Route 53 calls, want at most %d", i+1, res[i].Action, n, limit)
				}
			}
			want := 3
			if mode == route53.ModeFailover {
				want = 2 // failover answers PRIMARY and SECONDARY only
			}
			if got := len(e.registered(t, mode)); got != want {
				t.Errorf("%d managers registered, want %d", got, want)
			}

			e.Front.ResetRequests()
			res, _ = bootManagers(t, e, w, store, 3, "mode="+mode)
			total, byOp = route53Calls(e)
			t.Logf("reconcile of 3 managers: %d Route 53 calls %v", total, byOp)
			for i, r := range res {
				if r.Action != bootstrap.ActReconcile {
					t.Errorf("manager %d: second boot did %q, want %q", i+1, r.Action, bootstrap.ActReconcile)
				}
			}
			if byOp["ChangeResourceRecordSets"] != 0 {
				t.Errorf("reconcile made %d Route 53 writes, want 0", byOp["ChangeResourceRecordSets"])
			}
			if total > 3 {
				t.Errorf("reconcile of 3 managers made %d Route 53 calls %v, want at most one read each", total, byOp)
			}
		})
	}
}

// registered reads the managers' record through the API (not counted: call it after counting).
func (e *env) registered(t *testing.T, mode string) []swarm.Member {
	t.Helper()
	ms, err := e.provider(t, "mode="+mode).Registered(t.Context())
	if err != nil {
		t.Fatalf("read registered managers: %v", err)
	}
	return ms
}

// TestLockTakenWhereAnOlderAgentDeletedIt: an agent of an older version releases the lock by
// deleting its record. While this node's CREATE of the lock is held by Route 53 (a slow
// answer), such an agent takes the lock, registers the swarm it created and deletes the lock
// record; the CREATE then succeeds on an absent record. The registry this node read before
// its take no longer says what holders left, so Registered must read again and find the
// other swarm's manager (answering from the earlier read would let boot create a second
// swarm).
func TestLockTakenWhereAnOlderAgentDeletedIt(t *testing.T) {
	e := start(t, unlimited)
	p := e.provider(t, "mode=multivalue")
	ctx := t.Context()
	arrived := make(chan struct{})
	e.Front.InjectFault(awsfront.Fault{Service: "route53", Operation: "ChangeResourceRecordSets", Kind: awsfront.FaultLatency,
		Latency: 3 * time.Second, Arrived: arrived})
	older := func() error {
		<-arrived
		lock := types.ResourceRecordSet{Name: aws.String(p.LockName()), Type: types.RRTypeTxt, TTL: aws.Int64(5),
			ResourceRecords: []types.ResourceRecord{{Value: aws.String(`"owner=i-older n=0 expires=0"`)}}}
		steps := [][]types.Change{
			{{Action: types.ChangeActionCreate, ResourceRecordSet: &lock}},
			{{Action: types.ChangeActionUpsert, ResourceRecordSet: &types.ResourceRecordSet{Name: aws.String("managers.swarm.internal"),
				Type: types.RRTypeA, TTL: aws.Int64(10), SetIdentifier: aws.String("i-older"), MultiValueAnswer: aws.Bool(true),
				ResourceRecords: []types.ResourceRecord{{Value: aws.String("10.0.0.9")}}}}},
			{{Action: types.ChangeActionDelete, ResourceRecordSet: &lock}},
		}
		for _, ch := range steps {
			if _, err := e.R53.ChangeResourceRecordSets(ctx, &awsroute53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(e.zone),
				ChangeBatch: &types.ChangeBatch{Changes: ch}}); err != nil {
				return err
			}
		}
		return nil
	}
	var olderErr error
	var wg sync.WaitGroup
	wg.Go(func() { olderErr = older() })
	l, err := p.TryLock(ctx, discovery.Holder{InstanceID: "i-new", Addr: "10.0.0.1"}, func(context.Context, discovery.Holder) (bool, string) { return false, "" })
	wg.Wait()
	if olderErr != nil {
		t.Fatalf("the older agent's steps: %v", olderErr)
	}
	if err != nil {
		t.Fatalf("TryLock after the older agent deleted its lock: %v", err)
	}
	defer func() { _ = l.Release(ctx) }()
	ms, err := p.Registered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].InstanceID != "i-older" {
		t.Fatalf("Registered after taking the lock = %v, want the older agent's manager i-older: a second swarm would be created", ms)
	}
}
