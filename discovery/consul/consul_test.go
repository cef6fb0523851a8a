package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/discovery/discoverytest"
	"github.com/swarm-agent/swarm-agent/discovery/locktest"
	"github.com/swarm-agent/swarm-agent/discovery/tokenstoretest"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// The tests below run a real Consul agent (bin/consul); they skip when it is not built.

func TestLockExclusive(t *testing.T) {
	a := startConsul(t, "", "")
	const racers, rounds = 8, 10
	ps := make([]*Provider, racers)
	for i := range ps {
		ps[i] = a.provider(t, 10*time.Second, "")
	}
	raw := a.client(t, "")
	for round := range rounds {
		type result struct {
			owner string
			lock  discovery.Lock
			err   error
		}
		start := make(chan struct{})
		results := make(chan result, racers)
		var wg sync.WaitGroup
		for i, p := range ps {
			owner := fmt.Sprintf("i-%d-%d", round, i)
			jitter := time.Duration(rand.IntN(20)) * time.Millisecond
			wg.Go(func() {
				<-start
				time.Sleep(jitter)
				l, err := p.TryLock(t.Context(), discovery.Holder{InstanceID: owner}, gone)
				results <- result{owner, l, err}
			})
		}
		close(start)
		wg.Wait()
		close(results)
		var winners []result
		for r := range results {
			switch {
			case r.err == nil:
				winners = append(winners, r)
			case !errors.Is(r.err, discovery.ErrLockHeld):
				t.Errorf("round %d: %s: got error %v, want one wrapping ErrLockHeld", round, r.owner, r.err)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of %d racers hold the lock, want exactly 1", round, len(winners), racers)
		}
		pair, _, err := raw.KV().Get("swarm-agent/prod/bootstrap-lock", nil)
		if err != nil || pair == nil || string(pair.Value) != winners[0].owner || pair.Session == "" {
			t.Fatalf("round %d: lock key is %+v (err %v), want held by %s", round, pair, err, winners[0].owner)
		}
		// The losers cleaned up their sessions.
		sessions, _, err := raw.Session().List(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(sessions) != 1 || sessions[0].ID != pair.Session {
			t.Errorf("round %d: %d sessions left, want only the holder's", round, len(sessions))
		}
		if err := winners[0].lock.Release(t.Context()); err != nil {
			t.Fatalf("round %d: release: %v", round, err)
		}
	}
}

func TestLockReleaseThenReacquire(t *testing.T) {
	a := startConsul(t, "", "")
	p1, p2 := a.provider(t, 10*time.Second, ""), a.provider(t, 10*time.Second, "")
	l1, err := p1.TryLock(t.Context(), discovery.Holder{InstanceID: "i-first"}, gone)
	if err != nil {
		t.Fatalf("first TryLock: %v", err)
	}
	_, err = p2.TryLock(t.Context(), discovery.Holder{InstanceID: "i-second"}, gone)
	if !errors.Is(err, discovery.ErrLockHeld) {
		t.Fatalf("second TryLock while held: got %v, want ErrLockHeld", err)
	}
	if want := "consul: acquire lock swarm-agent/prod/bootstrap-lock: held by i-first"; !strings.Contains(err.Error(), want) {
		t.Errorf("got error %q, want it to contain %q", err, want)
	}
	if err := l1.Release(t.Context()); err != nil {
		t.Fatalf("release: %v", err)
	}
	if err := l1.Release(t.Context()); err != nil {
		t.Errorf("second release: %v, want nil", err)
	}
	// A released lock is free at once: no lock-delay after an explicit release.
	l2, err := p2.TryLock(t.Context(), discovery.Holder{InstanceID: "i-second"}, gone)
	if err != nil {
		t.Fatalf("TryLock after release: %v", err)
	}
	if err := l2.Release(t.Context()); err != nil {
		t.Fatalf("release: %v", err)
	}
	sessions, _, err := a.client(t, "").Session().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 0 {
		t.Errorf("%d sessions left after release, want 0", len(sessions))
	}
}

func gone(context.Context, discovery.Holder) (bool, string) { return false, "gone (test)" }

// TestLockContract runs the contract every lock provider passes against a real Consul agent.
// The agent allows short session TTLs (session_ttl_min 1s); Consul may take up to twice the
// TTL to invalidate a session, then the lock-delay (the TTL) holds the key.
func TestLockContract(t *testing.T) {
	a := startConsul(t, "", "")
	const ttl = 3 * time.Second
	var n atomic.Int64
	locktest.Run(t, locktest.Env{
		TTL:    ttl,
		Margin: 2*ttl + 2*time.Second,
		Namespace: func(t *testing.T) func(time.Duration) discovery.Locker {
			prefix := fmt.Sprintf("swarm-agent/contract%d", n.Add(1))
			return func(time.Duration) discovery.Locker {
				p := a.provider(t, ttl, "")
				p.cfg.Prefix = prefix
				return p
			}
		},
	})
}

// TestLockDelayIsTheTTL: the session's lock-delay is the TTL (Consul caps it at 60 s), so that
// a holder that lost its session has a whole lease to notice before anyone else acts.
func TestLockDelayIsTheTTL(t *testing.T) {
	a := startConsul(t, "", "")
	p := a.provider(t, 3*time.Second, "")
	l, err := p.TryLock(t.Context(), discovery.Holder{InstanceID: "i-1"}, gone)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Release(context.WithoutCancel(t.Context())) }()
	s, _, err := a.client(t, "").Session().Info(l.(*lock).session, nil)
	if err != nil || s == nil {
		t.Fatalf("session info: %v", err)
	}
	if s.LockDelay != 3*time.Second {
		t.Fatalf("lock-delay %s, want the TTL (3s)", s.LockDelay)
	}
}

func TestRegisterAndManagers(t *testing.T) {
	a := startConsul(t, "", "")
	p := a.provider(t, 10*time.Second, "")
	ctx := t.Context()
	sp1, sp2 := listenSwarmPort(t), listenSwarmPort(t)
	m1 := swarm.Member{InstanceID: "i-1", Addr: "127.0.0.1", Port: sp1.Port}
	m2 := swarm.Member{InstanceID: "i-2", Addr: "127.0.0.1", Port: sp2.Port}

	got, err := p.Managers(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("Managers before any registration: got %v, %v; want none", got, err)
	}
	for _, m := range []swarm.Member{m1, m2} {
		if err := p.Register(ctx, m); err != nil {
			t.Fatalf("register %s: %v", m.InstanceID, err)
		}
	}
	want := []string{sp1.Addr(), sp2.Addr()}
	slices.Sort(want)
	waitManagers(t, p, want, 20*time.Second)
	if got, err := p.ConfirmManagers(ctx); err != nil || !slices.Equal(got, want) {
		t.Errorf("ConfirmManagers: got %v, %v; want %v", got, err, want)
	}

	// Registering again (a reconciling boot) leaves a healthy manager healthy.
	if err := p.Register(ctx, m1); err != nil {
		t.Fatalf("register again: %v", err)
	}
	for range 4 {
		if got, err := p.Managers(ctx); err != nil || !slices.Equal(got, want) {
			t.Fatalf("Managers right after registering again: got %v, %v; want %v", got, err, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
	svc, _, err := a.client(t, "").Agent().Service(p.ServiceID("i-1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Meta["instance_id"] != "i-1" || svc.Address != "127.0.0.1" || svc.Port != sp1.Port || svc.Service != "swarm-manager" {
		t.Errorf("registration is %+v, want service swarm-manager at 127.0.0.1:%d with instance_id i-1", svc, sp1.Port)
	}

	// A stopped manager's check turns critical and discovery stops returning it.
	sp1.Close()
	waitManagers(t, p, []string{sp2.Addr()}, 20*time.Second)
	checks, _, err := a.client(t, "").Health().Checks("swarm-manager", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if c.ServiceID == p.ServiceID("i-1") && c.Status != api.HealthCritical {
			t.Errorf("check of the stopped manager is %s, want critical", c.Status)
		}
	}
	// The lock holder's confirmation still counts it: the boot loop dials it itself.
	if got, err := p.ConfirmManagers(ctx); err != nil || !slices.Equal(got, want) {
		t.Errorf("ConfirmManagers with one critical instance: got %v, %v; want %v", got, err, want)
	}

	// Deregistration removes the manager from the service, not only from the passing list.
	for _, m := range []swarm.Member{m1, m2} {
		if err := p.Deregister(ctx, m); err != nil {
			t.Fatalf("deregister %s: %v", m.InstanceID, err)
		}
	}
	if err := p.Deregister(ctx, m2); err != nil {
		t.Errorf("deregister twice: %v, want nil", err)
	}
	all, _, err := a.client(t, "").Health().Service("swarm-manager", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 0 {
		t.Errorf("%d instances left after deregistration, want 0", len(all))
	}
	waitManagers(t, p, nil, 5*time.Second)
}

// An instance without its own address is found at its node's address.
func TestManagersFallBackToNodeAddress(t *testing.T) {
	a := startConsul(t, "", "")
	p := a.provider(t, 10*time.Second, "")
	err := a.client(t, "").Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "bare", Name: "swarm-manager"})
	if err != nil {
		t.Fatal(err)
	}
	waitManagers(t, p, []string{"127.0.0.1:2377"}, 10*time.Second)
}

func waitManagers(t *testing.T, p *Provider, want []string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() string {
		got, err := p.Managers(t.Context())
		if err != nil {
			return fmt.Sprintf("Managers: %v", err)
		}
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			return fmt.Sprintf("Managers: got %v, want %v", got, want)
		}
		return ""
	})
}

func TestTokens(t *testing.T) {
	a := startConsul(t, "", "")
	p := a.provider(t, 10*time.Second, "")
	ctx := t.Context()
	for _, r := range []swarm.Role{swarm.RoleManager, swarm.RoleWorker} {
		_, _, err := p.Token(ctx, r)
		if !errors.Is(err, discovery.ErrNoToken) {
			t.Fatalf("Token(%s) before publishing: got %v, want ErrNoToken", r, err)
		}
		if want := "consul: read key swarm-agent/prod/join-token/" + string(r); !strings.Contains(err.Error(), want) {
			t.Errorf("got error %q, want it to contain %q", err, want)
		}
	}
	for _, v := range []struct{ cid, mgr, wrk string }{
		{"cluster-a", "SWMTKN-1-a-manager", "SWMTKN-1-a-worker"},
		{"cluster-b", "SWMTKN-1-b-manager", "SWMTKN-1-b-worker"}, // replaced, e.g. after rotation
	} {
		if err := p.PutTokens(ctx, v.cid, swarm.JoinTokens{Manager: v.mgr, Worker: v.wrk}); err != nil {
			t.Fatalf("PutTokens: %v", err)
		}
		for r, want := range map[swarm.Role]string{swarm.RoleManager: v.mgr, swarm.RoleWorker: v.wrk} {
			tok, cid, err := p.Token(ctx, r)
			if err != nil || tok != want || cid != v.cid {
				t.Errorf("Token(%s): got %q, %q, %v; want %q, %q", r, tok, cid, err, want, v.cid)
			}
		}
	}
	if err := p.PutTokens(ctx, "", swarm.JoinTokens{Manager: "m", Worker: "w"}); err == nil {
		t.Error("PutTokens without a cluster id: got nil, want an error")
	}
}

// TestContract runs the contract every token store passes on a real Consul agent.
func TestContract(t *testing.T) {
	a := startConsul(t, "", "")
	tokenstoretest.Run(t, tokenstoretest.Env{
		New: func(t *testing.T, cluster string) discovery.TokenStore {
			p, err := New(Config{Service: DefaultService, Scheme: "http", Address: a.Addr, LockTTL: 10 * time.Second,
				Prefix: "swarm-agent/" + cluster, Port: DefaultPort}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		WhereUnlockKey: func(cluster string) string { return "swarm-agent/" + cluster + "/unlock-key" },
		Where: func(cluster string, r swarm.Role) string {
			return "swarm-agent/" + cluster + "/join-token/" + string(r)
		},
		Atomic: true, // one transaction writes both tokens and the cluster id
	})
}

// With Consul down, every call fails with an error that names what it tried; none of them may
// look like a decision (lock held, no token) to the boot loop.
func TestUnreachable(t *testing.T) {
	port := freePorts(t, 1)[0]
	p, err := New(Config{Address: fmt.Sprintf("127.0.0.1:%d", port), Prefix: "swarm-agent/prod"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, err = p.Managers(ctx)
	check := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) || errors.Is(err, discovery.ErrLockHeld) ||
			errors.Is(err, discovery.ErrNoToken) || errors.Is(err, ErrDenied) {
			t.Errorf("%s: got %v, want an error containing %q", what, err, want)
		}
	}
	check("Managers", err, "consul: list passing instances of service swarm-manager: ")
	_, err = p.TryLock(ctx, discovery.Holder{InstanceID: "i-1"}, gone)
	check("TryLock", err, "consul: create session for lock swarm-agent/prod/bootstrap-lock: ")
	_, _, err = p.Token(ctx, swarm.RoleWorker)
	check("Token", err, "consul: read key swarm-agent/prod/join-token/worker: ")
	err = p.Register(ctx, swarm.Member{InstanceID: "i-1", Addr: "10.0.0.1"})
	check("Register", err, "consul: register service swarm-manager-i-1: ")
}

// Calls end with their context.
func TestContextCancelled(t *testing.T) {
	a := startConsul(t, "", "")
	p := a.provider(t, 10*time.Second, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Managers(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Managers with a cancelled context: got %v, want context.Canceled", err)
	}
}

// TestDiscoveryContract runs the contract every discovery provider passes against a real
// Consul agent: Managers lists the instances whose TCP check passes (the first check runs
// within an interval of the registration), Registered every instance.
func TestDiscoveryContract(t *testing.T) {
	a := startConsul(t, "", "")
	var n atomic.Int64
	discoverytest.Run(t, discoverytest.Env{
		InstanceIDs: true,
		Settle:      15 * time.Second,
		Namespace: func(t *testing.T, _ []swarm.Member) func() discoverytest.Provider {
			service := fmt.Sprintf("contract%d", n.Add(1))
			return func() discoverytest.Provider {
				p := a.provider(t, 3*time.Second, "")
				p.cfg.Service = service
				return p
			}
		},
	})
}

// TestTwoClustersOneService: two clusters given the same service name on one Consul agent each
// find only their own managers (service meta "cluster"), including when only the other has
// registered any (the node then sees no manager and takes its own cluster's lock, not the
// other's swarm); a manager registered by an older version (no meta) counts for both.
func TestTwoClustersOneService(t *testing.T) {
	a := startConsul(t, "", "")
	ctx := t.Context()
	provider := func(cluster string) *Provider {
		p, err := New(Config{Service: DefaultService, Scheme: "http", Address: a.Addr, LockTTL: 10 * time.Second,
			Prefix: "swarm-agent/" + cluster, Port: DefaultPort, Cluster: cluster}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	pa, pb := provider("a"), provider("b")
	spa, spb, old := listenSwarmPort(t), listenSwarmPort(t), listenSwarmPort(t)

	if err := pa.Register(ctx, swarm.Member{InstanceID: "i-a", Addr: "127.0.0.1", Port: spa.Port}); err != nil {
		t.Fatal(err)
	}
	waitManagers(t, pa, []string{spa.Addr()}, 20*time.Second)
	if got, err := pb.ConfirmManagers(ctx); err != nil || len(got) != 0 {
		t.Fatalf("cluster b's ConfirmManagers with only a's manager registered: %v, %v; want none", got, err)
	}
	if got, err := pb.Managers(ctx); err != nil || len(got) != 0 {
		t.Fatalf("cluster b's Managers with only a's manager registered: %v, %v; want none", got, err)
	}
	svc, _, err := a.client(t, "").Agent().Service(pa.ServiceID("i-a"), nil)
	if err != nil || svc.Meta["cluster"] != "a" {
		t.Fatalf("a's registration: %+v, %v; want meta cluster=a", svc, err)
	}

	if err := pb.Register(ctx, swarm.Member{InstanceID: "i-b", Addr: "127.0.0.1", Port: spb.Port}); err != nil {
		t.Fatal(err)
	}
	// An older version's registration: no cluster meta.
	if err := a.client(t, "").Agent().ServiceRegister(&api.AgentServiceRegistration{ID: DefaultService + "-i-old", Name: DefaultService,
		Address: "127.0.0.1", Port: old.Port, Meta: map[string]string{"instance_id": "i-old"}}); err != nil {
		t.Fatal(err)
	}
	wantA, wantB := []string{spa.Addr(), old.Addr()}, []string{spb.Addr(), old.Addr()}
	slices.Sort(wantA)
	slices.Sort(wantB)
	waitManagers(t, pa, wantA, 20*time.Second)
	waitManagers(t, pb, wantB, 20*time.Second)
	if got, err := pa.ConfirmManagers(ctx); err != nil || !slices.Equal(got, wantA) {
		t.Errorf("cluster a's ConfirmManagers: %v, %v; want %v", got, err, wantA)
	}
}
