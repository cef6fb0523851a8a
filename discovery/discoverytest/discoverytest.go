// Package discoverytest is the contract every discovery provider passes (Route 53 in both
// modes, Consul, static): one suite, run by each provider's tests against its real backend
// (moto behind the AWS front, a real Consul agent), so that what boot and the leader rely on
// cannot drift apart between providers. discovery/locktest is the same for the bootstrap lock,
// discovery/tokenstoretest for the token stores.
//
// What boot relies on: Managers lists the managers that answer (an empty list with a nil error
// means none is registered), Registered lists every registered manager past caches, silent ones
// included (a registered manager that does not answer is never "no manager"), registering is
// idempotent and racing registrations are all kept, deregistering an absent manager is no
// error, and a Reconciler leaves exactly the live managers.
package discoverytest

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// Provider is what every discovery provider is: boot finds managers and, holding the lock,
// reads the registry.
type Provider interface {
	discovery.Discoverer
	discovery.Registry
}

// Env describes a provider under test.
type Env struct {
	// Namespace returns a constructor of nodes sharing one fresh registry (cases run in
	// parallel, each in its own namespace): every call of node is another node with its own
	// client and memory. seed is the static list for providers that take one (static); the
	// others ignore it and start empty (the suite registers what it needs).
	Namespace func(t *testing.T, seed []swarm.Member) (node func() Provider)
	// Capacity is how many managers the registry lists at most (Route 53 failover: PRIMARY and
	// SECONDARY); 0 means no limit.
	Capacity int
	// InstanceIDs: Registered names each manager's instance id (multivalue sets, Consul meta).
	InstanceIDs bool
	// AnswersOne: Managers answers one manager, the first registered that is still there
	// (Route 53 failover: DNS answers the PRIMARY while it is healthy).
	AnswersOne bool
	// Settle bounds how long Managers may lag a change of the registry (Consul: the first run
	// of a member's health check; Route 53: DNS answers).
	Settle time.Duration
}

// member returns a manager at 127.0.0.(10+i) whose swarm port accepts connections until the
// test ends (Consul lists only managers whose TCP check passes); stop closes it earlier.
func member(t *testing.T, i int) (m swarm.Member, stop func()) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.%d", 10+i)
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = l.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return swarm.Member{InstanceID: fmt.Sprintf("i-%017x", 0xc0de0+i), Addr: addr, Port: l.Addr().(*net.TCPAddr).Port}, stop
}

// members returns n live managers (member 0 to n-1).
func members(t *testing.T, n int) []swarm.Member {
	ms := make([]swarm.Member, n)
	for i := range n {
		ms[i], _ = member(t, i)
	}
	return ms
}

// hosts is the sorted, distinct hosts of host:port addresses (Route 53 answers addresses only,
// with the configured port).
func hosts(t *testing.T, addrs []string) []string {
	t.Helper()
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatalf("Managers returned %q: not host:port: %v", a, err)
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

func memberHosts(ms []swarm.Member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Addr)
	}
	slices.Sort(out)
	return out
}

// listsExactly waits (Settle) until Managers lists exactly the hosts of want, once each (with
// AnswersOne: want[0] alone).
func listsExactly(t *testing.T, env Env, p Provider, want []swarm.Member) {
	t.Helper()
	if env.AnswersOne {
		want = want[:1]
	}
	w := memberHosts(want)
	deadline := time.Now().Add(env.Settle)
	for {
		got, err := p.Managers(t.Context())
		if err == nil && slices.Equal(hosts(t, got), w) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Managers = %v, %v after %s; want the hosts %s", got, err, env.Settle, strings.Join(w, ", "))
		}
		time.Sleep(100 * time.Millisecond) // the poll interval of a condition with a deadline
	}
}

// registered checks that Registered lists exactly want, once each, with instance ids where the
// registry keeps them.
func registered(t *testing.T, env Env, p Provider, want []swarm.Member) {
	t.Helper()
	got, err := p.Registered(t.Context())
	if err != nil {
		t.Fatalf("Registered: %v", err)
	}
	if g, w := memberHosts(got), memberHosts(want); !slices.Equal(g, w) {
		t.Fatalf("Registered lists %v, want %v", g, w)
	}
	if !env.InstanceIDs {
		return
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(m swarm.Member) bool { return m.Addr == w.Addr })
		if got[i].InstanceID != w.InstanceID {
			t.Errorf("Registered gives %s the instance id %q, want %q", w.Addr, got[i].InstanceID, w.InstanceID)
		}
	}
}

func register(t *testing.T, p Provider, ms ...swarm.Member) {
	t.Helper()
	r := p.(discovery.Registrar)
	for _, m := range ms {
		if err := r.Register(t.Context(), m); err != nil {
			t.Fatalf("Register %s: %v", m.Addr, err)
		}
	}
}

// capped is n, or the registry's capacity when it is smaller.
func (env Env) capped(n int) int {
	if env.Capacity > 0 && env.Capacity < n {
		return env.Capacity
	}
	return n
}

// Run runs the contract. Cases about registering run only for providers that register
// (discovery.Registrar); the Reconciler case only for reconcilers.
func Run(t *testing.T, env Env) {
	seed, _ := member(t, 99)
	probe := env.Namespace(t, []swarm.Member{seed})()
	_, registrar := probe.(discovery.Registrar)
	_, reconciler := probe.(discovery.Reconciler)

	t.Run("every manager is listed once", func(t *testing.T) {
		t.Parallel()
		ms := members(t, env.capped(3))
		node := env.Namespace(t, ms)
		p := node()
		if registrar {
			register(t, p, ms...)
			// Registering again (a reconciling boot, a restarted agent) changes nothing.
			register(t, p, ms[0])
			registered(t, env, p, ms)
		} else if _, err := p.Registered(t.Context()); err != nil {
			t.Fatalf("Registered: %v", err)
		}
		listsExactly(t, env, p, ms)
		// Another node, with no memory of the registrations, sees the same.
		listsExactly(t, env, node(), ms)
	})

	if !registrar {
		return
	}

	t.Run("an empty registry lists no manager and no error", func(t *testing.T) {
		t.Parallel()
		p := env.Namespace(t, nil)()
		got, err := p.Managers(t.Context())
		if err != nil || len(got) != 0 {
			t.Fatalf("Managers = %v, %v; want none and no error", got, err)
		}
		regs, err := p.Registered(t.Context())
		if err != nil || len(regs) != 0 {
			t.Fatalf("Registered = %v, %v; want none and no error", regs, err)
		}
	})

	t.Run("a registered manager that does not answer stays registered", func(t *testing.T) {
		t.Parallel()
		// Boot's safety rests on this: the lock holder reads Registered right before init, and
		// a manager that is registered but silent (restarting, partitioned) is not "no manager".
		m, stop := member(t, 0)
		p := env.Namespace(t, nil)()
		register(t, p, m)
		stop()
		registered(t, env, p, []swarm.Member{m})
	})

	t.Run("a deregistered manager is no longer listed, and deregistering again is no error", func(t *testing.T) {
		t.Parallel()
		ms := members(t, env.capped(2))
		p := env.Namespace(t, nil)()
		register(t, p, ms...)
		listsExactly(t, env, p, ms)
		r := p.(discovery.Registrar)
		for range 2 {
			if err := r.Deregister(t.Context(), ms[0]); err != nil {
				t.Fatalf("Deregister %s: %v", ms[0].Addr, err)
			}
		}
		registered(t, env, p, ms[1:])
		listsExactly(t, env, p, ms[1:])
	})

	t.Run("registrations racing from different nodes are all kept", func(t *testing.T) {
		t.Parallel()
		node := env.Namespace(t, nil)
		n := env.capped(4)
		ms := members(t, n)
		nodes := make([]Provider, n)
		for i := range n {
			nodes[i] = node()
		}
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = nodes[i].(discovery.Registrar).Register(t.Context(), ms[i])
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Register %s: %v", ms[i].Addr, err)
			}
		}
		registered(t, env, node(), ms)
	})

	if !reconciler {
		return
	}

	t.Run("reconcile leaves exactly the live managers", func(t *testing.T) {
		t.Parallel()
		ms := members(t, 4)
		p := env.Namespace(t, nil)()
		register(t, p, ms[:env.capped(3)]...)
		// The leader is the last registered; one live manager was never registered.
		live := []swarm.Member{ms[env.capped(3)-1], ms[3]}
		rec := p.(discovery.Reconciler)
		for range 2 { // the second pass finds nothing to change
			if err := rec.Reconcile(t.Context(), live[0], live); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
		}
		registered(t, env, p, live)
		listsExactly(t, env, p, live)
	})
}

// Static is the seed as a static discovery string's managers= value (host:port,...).
func Static(seed []swarm.Member) string {
	out := make([]string, 0, len(seed))
	for _, m := range seed {
		out = append(out, net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)))
	}
	return strings.Join(out, ",")
}
