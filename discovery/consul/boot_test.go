package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// TestBootRace boots 3 managers and 3 workers at once, with shuffled start times, through the
// real boot loop and a real Consul agent, for several rounds: every round must end with one
// swarm holding all six nodes, and booting again must change nothing. The Docker engines are
// an in-memory swarm world (the Consul side is what is under test here); each node's swarm
// port is a real listener, so that Consul's TCP checks pass.
func TestBootRace(t *testing.T) {
	if testing.Short() {
		t.Skip("boot race rounds take about a minute")
	}
	a := startConsul(t, "", "")
	const rounds, managers, workers = 10, 3, 3
	for round := range rounds {
		w := &world{swarms: map[string]*fakeSwarm{}}
		cluster := "race-" + strconv.Itoa(round)
		type node struct {
			role swarm.Role
			id   swarm.Identity
			port *swarmPort
			eng  *fakeEngine
			p    *Provider
		}
		var nodes []*node
		for i := range managers + workers {
			n := &node{role: swarm.RoleWorker, port: listenSwarmPort(t)}
			if i < managers {
				n.role = swarm.RoleManager
			}
			n.id = swarm.Identity{InstanceID: fmt.Sprintf("i-%d-%d", round, i), PrivateIP: "127.0.0.1"}
			n.eng = &fakeEngine{w: w, addr: n.port.Addr(), state: bootstrap.StateInactive}
			p, err := New(Config{Service: "mgr-" + strconv.Itoa(round), Address: a.Addr,
				LockTTL: 10 * time.Second, Prefix: "swarm-agent/" + cluster, Port: n.port.Port}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			n.p = p
			nodes = append(nodes, n)
		}
		boot := func(ctx context.Context, n *node) (bootstrap.Result, error) {
			d := bootstrap.Deps{Engine: n.eng, Discoverer: n.p, Tokens: n.p, Log: testLogger(t),
				Probe: func(_ context.Context, addr string) bootstrap.Probe {
					return bootstrap.Probe{Answers: w.isManager(addr)}
				}}
			if n.role == swarm.RoleManager {
				d.Registrar, d.Locker = n.p, n.p
			}
			return bootstrap.Boot(ctx, bootstrap.Config{Role: n.role, Cluster: cluster, Identity: n.id,
				SwarmPort: n.port.Port, Wait: 60 * time.Second,
				PollMin: 50 * time.Millisecond, PollMax: 500 * time.Millisecond}, d)
		}

		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			delay := time.Duration(rand.IntN(300)) * time.Millisecond
			wg.Go(func() {
				time.Sleep(delay)
				_, errs[i] = boot(t.Context(), n)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: boot: %v", round, err)
		}
		if got := w.count(); got != 1 {
			t.Fatalf("round %d: %d swarms, want 1 (%s)", round, got, w)
		}
		for _, n := range nodes {
			if n.eng.state != bootstrap.StateActive || n.eng.manager != (n.role == swarm.RoleManager) {
				t.Errorf("round %d: %s (%s) is %s manager=%v", round, n.id.InstanceID, n.role, n.eng.state, n.eng.manager)
			}
		}
		// Booting again only reconciles.
		for _, n := range nodes[:1] {
			res, err := boot(t.Context(), n)
			if err != nil || res.Action != bootstrap.ActReconcile {
				t.Errorf("round %d: boot again: got %s, %v; want reconcile", round, res.Action, err)
			}
		}
		if got := w.count(); got != 1 {
			t.Fatalf("round %d: %d swarms after booting again, want 1", round, got)
		}
		if t.Failed() {
			return
		}
	}
}

// world is an in-memory set of swarms that fakeEngines create and join.
type world struct {
	mu     sync.Mutex
	swarms map[string]*fakeSwarm
}

type fakeSwarm struct {
	id       string
	tokens   swarm.JoinTokens
	managers []string // addresses
}

func (w *world) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.swarms)
}

func (w *world) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := ""
	for id, sw := range w.swarms {
		s += fmt.Sprintf("%s: managers %v; ", id, sw.managers)
	}
	return s
}

func (w *world) isManager(addr string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, sw := range w.swarms {
		for _, m := range sw.managers {
			if m == addr {
				return true
			}
		}
	}
	return false
}

// fakeEngine is a stateful bootstrap.Engine in a world.
type fakeEngine struct {
	bootstrap.Engine // a call not implemented below panics
	w                *world
	addr             string
	state            bootstrap.SwarmState
	swarm            string
	manager          bool
}

func (e *fakeEngine) Local(context.Context) (bootstrap.LocalNode, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	n := bootstrap.LocalNode{State: e.state, IsManager: e.manager, NodeAddr: e.addr}
	if sw := e.w.swarms[e.swarm]; sw != nil {
		n.NodeID = "node-" + e.addr
		n.RemoteManagers = append([]string(nil), sw.managers...)
		if e.manager {
			n.ClusterID = sw.id
		}
	}
	return n, nil
}

func (e *fakeEngine) Init(context.Context, bootstrap.InitRequest) (string, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if e.state != bootstrap.StateInactive {
		return "", fmt.Errorf("this node is already part of a swarm")
	}
	id := fmt.Sprintf("swarm-%d", len(e.w.swarms)+1)
	e.w.swarms[id] = &fakeSwarm{id: id, managers: []string{e.addr},
		tokens: swarm.JoinTokens{Manager: "SWMTKN-" + id + "-m", Worker: "SWMTKN-" + id + "-w"}}
	e.state, e.swarm, e.manager = bootstrap.StateActive, id, true
	return "node-" + e.addr, nil
}

func (e *fakeEngine) Join(_ context.Context, req bootstrap.JoinRequest) error {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if e.state != bootstrap.StateInactive {
		return fmt.Errorf("this node is already part of a swarm")
	}
	for _, sw := range e.w.swarms {
		var role swarm.Role
		switch req.Token {
		case sw.tokens.Manager:
			role = swarm.RoleManager
		case sw.tokens.Worker:
			role = swarm.RoleWorker
		default:
			continue
		}
		for _, m := range sw.managers {
			if len(req.RemoteAddrs) == 1 && req.RemoteAddrs[0] == m {
				e.state, e.swarm, e.manager = bootstrap.StateActive, sw.id, role == swarm.RoleManager
				if e.manager {
					sw.managers = append(sw.managers, e.addr)
				}
				return nil
			}
		}
		return fmt.Errorf("%v: not a manager of the token's swarm", req.RemoteAddrs)
	}
	return fmt.Errorf("invalid join token")
}

func (e *fakeEngine) JoinTokens(context.Context) (swarm.JoinTokens, string, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	sw := e.w.swarms[e.swarm]
	if sw == nil || !e.manager {
		return swarm.JoinTokens{}, "", fmt.Errorf("this node is not a swarm manager")
	}
	return sw.tokens, sw.id, nil
}

// Consul down at boot: the boot loop waits and the node creates the swarm once Consul is up;
// Consul down for good: a clear error after --wait.
func TestBootWaitsForConsul(t *testing.T) {
	consulBinary(t)
	port := freePorts(t, 1)[0]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	boot := func(wait time.Duration) (bootstrap.Result, error) {
		sp := listenSwarmPort(t)
		p, err := New(Config{Address: addr, Prefix: "swarm-agent/prod", Port: sp.Port}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		w := &world{swarms: map[string]*fakeSwarm{}}
		eng := &fakeEngine{w: w, addr: sp.Addr(), state: bootstrap.StateInactive}
		return bootstrap.Boot(t.Context(), bootstrap.Config{Role: swarm.RoleManager, Cluster: "prod",
			Identity:  swarm.Identity{InstanceID: "i-1", PrivateIP: "127.0.0.1"},
			SwarmPort: sp.Port, Wait: wait, PollMin: 50 * time.Millisecond, PollMax: 500 * time.Millisecond},
			bootstrap.Deps{Engine: eng, Discoverer: p, Registrar: p, Locker: p, Tokens: p, Log: testLogger(t),
				Probe: func(_ context.Context, addr string) bootstrap.Probe {
					return bootstrap.Probe{Answers: w.isManager(addr)}
				}})
	}

	t.Run("down for good", func(t *testing.T) {
		_, err := boot(2 * time.Second)
		if !errors.Is(err, bootstrap.ErrWaitElapsed) {
			t.Fatalf("got %v, want ErrWaitElapsed", err)
		}
		if want := "consul: list passing instances of service swarm-manager: "; !strings.Contains(err.Error(), want) {
			t.Errorf("got error %q, want it to name what failed: %q", err, want)
		}
		t.Logf("consul down for good: %v", err)
	})

	t.Run("back after a while", func(t *testing.T) {
		type result struct {
			res bootstrap.Result
			err error
		}
		// Consul's address answers nothing while the boot starts: a listener that hangs up on
		// every connection, until the boot has tried (and failed) at least once. A fixed
		// pause instead could end before a loaded machine ran the boot's first round.
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		tried := make(chan struct{})
		accepting := make(chan struct{})
		go func() {
			defer close(accepting)
			once := sync.OnceFunc(func() { close(tried) })
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
				once()
			}
		}()
		done := make(chan result, 1)
		go func() {
			res, err := boot(3 * time.Minute) // it ends once Consul is up; a loaded machine starts Consul slowly
			done <- result{res, err}
		}()
		select {
		case <-tried:
		case <-time.After(time.Minute):
			t.Fatal("the boot did not try Consul within a minute")
		}
		_ = l.Close()
		<-accepting
		startConsulOn(t, port, "", "")
		r := <-done
		if r.err != nil || r.res.Action != bootstrap.ActInit {
			t.Fatalf("got %s, %v; want init once Consul is back", r.res.Action, r.err)
		}
		if r.res.Rounds < 2 {
			t.Errorf("booted in %d round(s), want it to have waited for Consul", r.res.Rounds)
		}
	})
}
