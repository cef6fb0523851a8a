package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// world is a stateful fake of everything a boot touches: swarms, discovery records, the
// lock and the token store. Engines are per node but share the world.
type world struct {
	mu        sync.Mutex
	swarms    map[string]*fakeSwarm // cluster id -> swarm
	nodes     map[string]*fakeEngine
	records   map[string]string // instance id -> addr:port registered as manager
	lockOwner string
	lockAddr  string
	lockUntil time.Time
	lockTTL   time.Duration
	lockTakes int
	renewals  int
	// stealAfterLock, when set, pauses the next holder for a whole lease right after
	// TryLock grants it and gives the lock to that owner meanwhile (who waited the lease
	// out, as the lock's contract wants): the holder's lease is lost before it can act.
	stealAfterLock string
	// handOver makes the locks RegisteringLocks (Route 53's): the creator registers as it
	// releases; handOvers counts those steps, tokensBeforeHandOver whether the tokens were
	// published by then.
	handOver             bool
	handOvers            int
	tokensBeforeHandOver bool
	// registerDelay slows every Register (a slow or throttled Route 53).
	registerDelay time.Duration
	// gone are instances EC2 says are gone.
	gone map[string]bool
	// rotation is how many times the join tokens were rotated.
	rotation  int
	tokens    map[swarm.Role]string
	clusterID string
	inits     int
	nextID    int
	down      map[string]bool // addr -> unreachable
	// registerConfigErr makes every Register fail with it (a zone that does not exist).
	registerConfigErr error
	// registerFails makes that many Register calls fail (a throttled or refused Route 53).
	registerFails int
	// Autolock (autolock_test.go): the swarms with autolock on and their live unlock keys,
	// the unlock key in the token store, and an error its reads answer with instead.
	unlockKeys   map[string]string
	storedKey    *swarm.UnlockKey
	unlockKeyErr error
}

type fakeSwarm struct {
	id       string
	managers map[string]string // node id -> addr
	workers  map[string]string
}

func newWorld() *world {
	return &world{swarms: map[string]*fakeSwarm{}, nodes: map[string]*fakeEngine{}, records: map[string]string{},
		tokens: map[swarm.Role]string{}, lockTTL: 30 * time.Second, down: map[string]bool{}, gone: map[string]bool{},
		unlockKeys: map[string]string{}}
}

type fakeEngine struct {
	w      *world
	addr   string
	state  SwarmState
	swarm  string
	nodeID string
	mgr    bool
	labels map[string]string
	leaves int
	joins  int
	// dieBeforeInit makes Init block until ctx ends (a holder killed before init).
	dieBeforeInit bool
	// noCert: the agent cannot read the node's certificate (an engine on another host).
	noCert bool
	// lockedWith is the unlock key a locked node's state is encrypted with; unlocks counts
	// Unlock calls.
	lockedWith string
	unlocks    int
}

func (w *world) engine(addr string) *fakeEngine {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := &fakeEngine{w: w, addr: addr, state: StateInactive}
	w.nodes[addr] = e
	return e
}

func (e *fakeEngine) Local(ctx context.Context) (LocalNode, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	ln := LocalNode{State: e.state, NodeID: e.nodeID, IsManager: e.mgr, NodeAddr: e.addr}
	if e.nodeID != "" && !e.noCert {
		ln.CertClusterID = e.swarm
	}
	if s := e.w.swarms[e.swarm]; s != nil && e.state == StateActive {
		if e.mgr {
			ln.ClusterID = s.id
		}
		for _, a := range s.managers {
			ln.RemoteManagers = append(ln.RemoteManagers, a+":2377")
		}
	}
	return ln, nil
}

func (e *fakeEngine) Init(ctx context.Context, req InitRequest) (string, error) {
	if e.dieBeforeInit {
		<-ctx.Done()
		return "", ctx.Err()
	}
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if e.state != StateInactive {
		return "", fmt.Errorf("already part of a swarm")
	}
	e.w.inits++
	e.w.nextID++
	id := fmt.Sprintf("cluster-%d", e.w.nextID)
	e.nodeID = fmt.Sprintf("node-%s", e.addr)
	e.w.swarms[id] = &fakeSwarm{id: id, managers: map[string]string{e.nodeID: e.addr}, workers: map[string]string{}}
	if req.Autolock {
		e.w.unlockKeys[id] = "SWMKEY-1-" + id + "-0"
	}
	e.swarm, e.state, e.mgr = id, StateActive, true
	return e.nodeID, nil
}

func (e *fakeEngine) Join(ctx context.Context, req JoinRequest) error {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	e.joins++
	host := strings.TrimSuffix(req.RemoteAddrs[0], ":2377")
	if e.w.down[host] {
		return fmt.Errorf("connection refused")
	}
	target := e.w.nodes[host]
	if target == nil || target.state != StateActive || !target.mgr {
		return fmt.Errorf("no manager at %s", req.RemoteAddrs[0])
	}
	s := e.w.swarms[target.swarm]
	var role swarm.Role
	switch req.Token {
	case e.w.token(s.id, swarm.RoleManager):
		role = swarm.RoleManager
	case e.w.token(s.id, swarm.RoleWorker):
		role = swarm.RoleWorker
	default:
		return fmt.Errorf("invalid join token")
	}
	e.nodeID = fmt.Sprintf("node-%s", e.addr)
	e.swarm, e.state, e.mgr = s.id, StateActive, role == swarm.RoleManager
	if e.mgr {
		s.managers[e.nodeID] = e.addr
	} else {
		s.workers[e.nodeID] = e.addr
	}
	return nil
}

func (e *fakeEngine) Leave(ctx context.Context, force bool) error {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if s := e.w.swarms[e.swarm]; s != nil {
		delete(s.managers, e.nodeID)
		delete(s.workers, e.nodeID)
	}
	e.leaves++
	e.state, e.swarm, e.nodeID, e.mgr = StateInactive, "", "", false
	return nil
}

func (e *fakeEngine) JoinTokens(ctx context.Context) (swarm.JoinTokens, string, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if !e.mgr {
		return swarm.JoinTokens{}, "", errors.New("not a manager")
	}
	return swarm.JoinTokens{Worker: e.w.token(e.swarm, swarm.RoleWorker), Manager: e.w.token(e.swarm, swarm.RoleManager)}, e.swarm, nil
}

// token is the live join token of a swarm; world.mu held.
func (w *world) token(swarm string, r swarm.Role) string {
	return fmt.Sprintf("SWMTKN-%s-%s-%d", swarm, r, w.rotation)
}

func (e *fakeEngine) SetNodeLabels(ctx context.Context, nodeID string, labels map[string]string) error {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	e.labels = labels
	return nil
}

// Discovery, registrar, locker and token store, all on the world.

type fakeDisc struct{ w *world }

func (d fakeDisc) Managers(ctx context.Context) ([]string, error) {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	var out []string
	for _, a := range d.w.records {
		out = append(out, a)
	}
	slices.Sort(out)
	return out, nil
}

// Registered is the registry's source of truth, with instance ids.
func (d fakeDisc) Registered(ctx context.Context) ([]swarm.Member, error) {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	var out []swarm.Member
	for id, a := range d.w.records {
		host, _, _ := strings.Cut(a, ":")
		out = append(out, swarm.Member{InstanceID: id, Addr: host, Port: 2377})
	}
	return out, nil
}

func (d fakeDisc) Register(ctx context.Context, m swarm.Member) error {
	d.w.mu.Lock()
	delay := d.w.registerDelay
	d.w.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	if d.w.registerConfigErr != nil {
		return d.w.registerConfigErr
	}
	if d.w.registerFails > 0 {
		d.w.registerFails--
		return errors.New("register: injected failure")
	}
	d.w.records[m.InstanceID] = fmt.Sprintf("%s:%d", m.Addr, m.Port)
	return nil
}

func (d fakeDisc) Deregister(ctx context.Context, m swarm.Member) error {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	delete(d.w.records, m.InstanceID)
	return nil
}

type fakeLock struct {
	w     *world
	owner string
}

// TryLock is a lease on the world's clock: an unexpired lock is held; an expired one is taken
// over only when alive says its holder is gone.
func (d fakeDisc) TryLock(ctx context.Context, me discovery.Holder, alive discovery.AliveFunc) (discovery.Lock, error) {
	d.w.mu.Lock()
	now := time.Now()
	owner, addr, until := d.w.lockOwner, d.w.lockAddr, d.w.lockUntil
	d.w.mu.Unlock()
	if owner != "" && owner != me.InstanceID {
		if now.Before(until) {
			return nil, fmt.Errorf("held by %s: %w", owner, discovery.ErrLockHeld)
		}
		if ok, why := alive(ctx, discovery.Holder{InstanceID: owner, Addr: addr}); ok {
			return nil, fmt.Errorf("held by %s, expired, but alive (%s): %w", owner, why, discovery.ErrLockHeld)
		}
	}
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	if d.w.lockOwner != owner || d.w.lockUntil != until {
		return nil, fmt.Errorf("changed while taking it: %w", discovery.ErrLockHeld)
	}
	d.w.lockOwner, d.w.lockAddr, d.w.lockUntil = me.InstanceID, me.Addr, now.Add(d.w.lockTTL)
	d.w.lockTakes++
	if thief := d.w.stealAfterLock; thief != "" {
		// The holder pauses for a whole lease right after the grant; the thief, having
		// waited that lease out, takes the lock over meanwhile.
		d.w.stealAfterLock = ""
		d.w.mu.Unlock()
		time.Sleep(d.w.lockTTL)
		d.w.mu.Lock()
		d.w.lockOwner, d.w.lockUntil = thief, time.Now().Add(d.w.lockTTL)
	}
	if d.w.handOver {
		return &handOverLock{fakeLock{w: d.w, owner: me.InstanceID}}, nil
	}
	return &fakeLock{w: d.w, owner: me.InstanceID}, nil
}

// handOverLock registers the creator and releases the lock in one step.
type handOverLock struct{ fakeLock }

func (l *handOverLock) ReleaseRegistered(ctx context.Context, m swarm.Member) error {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if l.w.lockOwner != l.owner {
		return fmt.Errorf("%w: taken by %s", discovery.ErrLockLost, l.w.lockOwner)
	}
	l.w.records[m.InstanceID] = fmt.Sprintf("%s:%d", m.Addr, m.Port)
	l.w.lockOwner = ""
	l.w.handOvers++
	l.w.tokensBeforeHandOver = l.w.tokens[swarm.RoleWorker] != "" && l.w.tokens[swarm.RoleManager] != ""
	return nil
}

func (l *fakeLock) Renew(ctx context.Context) error {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if l.w.lockOwner != l.owner {
		return fmt.Errorf("%w: taken by %s", discovery.ErrLockLost, l.w.lockOwner)
	}
	l.w.lockUntil = time.Now().Add(l.w.lockTTL)
	l.w.renewals++
	return nil
}

func (l *fakeLock) TTL() time.Duration { return l.w.lockTTL }

func (l *fakeLock) Release(ctx context.Context) error {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if l.w.lockOwner == l.owner {
		l.w.lockOwner = ""
	}
	return nil
}

func (d fakeDisc) PutTokens(ctx context.Context, clusterID string, t swarm.JoinTokens) error {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	d.w.tokens[swarm.RoleManager], d.w.tokens[swarm.RoleWorker], d.w.clusterID = t.Manager, t.Worker, clusterID
	return nil
}

func (d fakeDisc) Token(ctx context.Context, r swarm.Role) (string, string, error) {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	t, ok := d.w.tokens[r]
	if !ok {
		return "", "", discovery.ErrNoToken
	}
	return t, d.w.clusterID, nil
}

// probe answers like a swarm port: a manager of an active swarm presents its cluster id.
func (w *world) probe(ctx context.Context, addr string) Probe {
	w.mu.Lock()
	defer w.mu.Unlock()
	host := strings.TrimSuffix(addr, ":2377")
	e := w.nodes[host]
	if e == nil || w.down[host] || e.state != StateActive || !e.mgr {
		return Probe{}
	}
	return Probe{Answers: true, ClusterID: e.swarm, Manager: true}
}

func (w *world) instanceGone(ctx context.Context, id string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone[id], nil
}

func (w *world) deps() Deps {
	d := fakeDisc{w}
	return Deps{Discoverer: d, Registrar: d, Locker: d, Tokens: d, Probe: w.probe, InstanceGone: w.instanceGone, Log: zerolog.New(io.Discard)}
}

func instanceOf(addr string) string { return "i-" + strings.ReplaceAll(addr, ".", "") }

func (w *world) boot(ctx context.Context, e *fakeEngine, role swarm.Role, wait time.Duration) (Result, error) {
	cfg := Config{Role: role, Cluster: "test", Wait: wait,
		Identity: swarm.Identity{InstanceID: instanceOf(e.addr), PrivateIP: e.addr},
		Labels:   map[string]string{"az": "us-east-1a"}}
	d := w.deps()
	d.Engine, d.Autolocker = e, e
	return Boot(ctx, cfg, d)
}

func (w *world) swarmCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.swarms {
		if len(s.managers)+len(s.workers) > 0 {
			n++
		}
	}
	return n
}

func TestBootRaceFormsOneSwarm(t *testing.T) {
	for round := range 20 {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld()
				type node struct {
					e    *fakeEngine
					role swarm.Role
				}
				var nodes []node
				for i := range 3 {
					nodes = append(nodes, node{w.engine(fmt.Sprintf("10.0.0.%d", 10+i)), swarm.RoleManager})
					nodes = append(nodes, node{w.engine(fmt.Sprintf("10.0.1.%d", 10+i)), swarm.RoleWorker})
				}
				var wg sync.WaitGroup
				errs := make([]error, len(nodes))
				for i, n := range nodes {
					wg.Go(func() {
						time.Sleep(time.Duration((i*7+round*13)%10) * 50 * time.Millisecond)
						_, errs[i] = w.boot(t.Context(), n.e, n.role, 5*time.Minute)
					})
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("node %d: %v", i, err)
					}
				}
				if w.inits != 1 || w.swarmCount() != 1 {
					t.Fatalf("inits=%d swarms=%d, want exactly one", w.inits, w.swarmCount())
				}
				for _, s := range w.swarms {
					if len(s.managers) != 3 || len(s.workers) != 3 {
						t.Fatalf("swarm has %d managers and %d workers, want 3 and 3", len(s.managers), len(s.workers))
					}
				}
				if len(w.records) != 3 {
					t.Fatalf("%d manager records, want 3", len(w.records))
				}
				// Boot again everywhere: nothing changes.
				before := map[string]string{}
				for _, n := range nodes {
					before[n.e.addr] = n.e.nodeID
				}
				for _, n := range nodes {
					res, err := w.boot(t.Context(), n.e, n.role, time.Minute)
					if err != nil || res.Action != ActReconcile {
						t.Fatalf("second boot of %s: %v, action %s; want reconcile", n.e.addr, err, res.Action)
					}
					if n.e.nodeID != before[n.e.addr] || n.e.leaves != 0 {
						t.Fatalf("second boot of %s changed node id or left", n.e.addr)
					}
				}
				if w.inits != 1 || len(w.records) != 3 {
					t.Fatalf("after reboot: inits=%d records=%d", w.inits, len(w.records))
				}
			})
		})
	}
}

func TestBootWorkerWaitsThenJoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		worker := w.engine("10.0.1.1")
		mgr := w.engine("10.0.0.1")
		done := make(chan error, 1)
		go func() {
			_, err := w.boot(t.Context(), worker, swarm.RoleWorker, 10*time.Minute)
			done <- err
		}()
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if worker.state != StateInactive || worker.joins != 0 {
			t.Fatalf("worker did something before any manager existed: state %s joins %d", worker.state, worker.joins)
		}
		if _, err := w.boot(t.Context(), mgr, swarm.RoleManager, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("worker: %v", err)
		}
		if worker.state != StateActive || worker.mgr {
			t.Fatalf("worker state %s manager %v", worker.state, worker.mgr)
		}
	})
}

func TestBootWaitElapsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		worker := w.engine("10.0.1.1")
		start := time.Now()
		_, err := w.boot(t.Context(), worker, swarm.RoleWorker, 90*time.Second)
		if !errors.Is(err, ErrWaitElapsed) {
			t.Fatalf("err = %v, want ErrWaitElapsed", err)
		}
		if !strings.Contains(err.Error(), "a manager to appear in discovery") {
			t.Errorf("error %q does not say what it waited for", err)
		}
		if el := time.Since(start); el < 90*time.Second || el > 91*time.Second {
			t.Errorf("gave up after %s, want 90s", el)
		}
	})
}

func TestBootDeadLockHolderDoesNotBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		dead := w.engine("10.0.0.1")
		dead.dieBeforeInit = true
		ctx, kill := context.WithCancel(t.Context())
		go w.boot(ctx, dead, swarm.RoleManager, time.Hour) //nolint:errcheck // killed on purpose
		time.Sleep(time.Second)
		synctest.Wait()
		w.mu.Lock()
		owner := w.lockOwner
		w.mu.Unlock()
		if owner == "" {
			t.Fatal("first manager did not take the lock")
		}
		kill() // the holder dies; its deferred release is what a crash would skip, so re-take it
		synctest.Wait()
		w.mu.Lock()
		w.lockOwner, w.lockUntil = owner, time.Now().Add(w.lockTTL)
		w.gone[owner] = true // its instance was terminated
		w.mu.Unlock()

		other := w.engine("10.0.0.2")
		start := time.Now()
		res, err := w.boot(t.Context(), other, swarm.RoleManager, 5*time.Minute)
		if err != nil || res.Action != ActInit {
			t.Fatalf("second manager: %v, action %s; want init", err, res.Action)
		}
		if el := time.Since(start); el < w.lockTTL {
			t.Errorf("second manager took over after %s, before the lock expired (%s)", el, w.lockTTL)
		}
		if w.inits != 1 {
			t.Errorf("inits = %d", w.inits)
		}
	})
}

func TestBootLeavesStaleState(t *testing.T) {
	tests := []struct {
		name  string
		setup func(w *world, e *fakeEngine)
	}{
		{"pending join without identity, stuck", func(w *world, e *fakeEngine) { e.state = StatePending }},
		{"error without identity, stuck", func(w *world, e *fakeEngine) { e.state = StateError }},
		{"worker of another swarm", func(w *world, e *fakeEngine) {
			w.swarms["old"] = &fakeSwarm{id: "old", managers: map[string]string{"x": "10.9.9.9"}, workers: map[string]string{"n": e.addr}}
			e.state, e.swarm, e.nodeID = StateActive, "old", "n"
		}},
		{"manager of another swarm", func(w *world, e *fakeEngine) {
			w.swarms["old"] = &fakeSwarm{id: "old", managers: map[string]string{"n": e.addr}, workers: map[string]string{}}
			e.state, e.swarm, e.nodeID, e.mgr = StateActive, "old", "n", true
		}},
		{"pending node of another swarm", func(w *world, e *fakeEngine) {
			w.swarms["old"] = &fakeSwarm{id: "old", managers: map[string]string{"n": e.addr}, workers: map[string]string{}}
			e.state, e.swarm, e.nodeID, e.mgr = StatePending, "old", "n", true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld()
				m := w.engine("10.0.0.1")
				if _, err := w.boot(t.Context(), m, swarm.RoleManager, time.Minute); err != nil {
					t.Fatal(err)
				}
				e := w.engine("10.0.0.2")
				tt.setup(w, e)
				role := swarm.RoleWorker
				if e.mgr {
					role = swarm.RoleManager
				}
				res, err := w.boot(t.Context(), e, role, 5*time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if e.leaves != 1 || res.Action != ActJoin || e.swarm != m.swarm {
					t.Fatalf("leaves=%d action=%s swarm=%s; want one leave then join %s", e.leaves, res.Action, e.swarm, m.swarm)
				}
			})
		})
	}
}

// TestBootNeverLeavesUnprovenState is the staggered power-on: every engine of a formed swarm
// comes back pending or in error with its identity, no manager answering yet, or answering
// but without proof. Boot waits, says why, and never leaves; once the engines settle, it
// reconciles and the swarm is the same.
func TestBootNeverLeavesUnprovenState(t *testing.T) {
	for _, st := range []SwarmState{StatePending, StateError} {
		t.Run(string(st), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld()
				var ms []*fakeEngine
				for i := range 3 {
					e := w.engine(fmt.Sprintf("10.0.0.%d", 10+i))
					if _, err := w.boot(t.Context(), e, swarm.RoleManager, time.Minute); err != nil {
						t.Fatal(err)
					}
					ms = append(ms, e)
				}
				wk := w.engine("10.0.1.1")
				if _, err := w.boot(t.Context(), wk, swarm.RoleWorker, time.Minute); err != nil {
					t.Fatal(err)
				}
				cluster := ms[0].swarm
				// Power cut: every engine comes back unsettled; the worker's certificate cannot
				// be read here (an engine elsewhere), so only the managers could prove anything.
				w.mu.Lock()
				for _, e := range append(ms, wk) {
					e.state = st
				}
				wk.noCert = true
				w.mu.Unlock()
				var wg sync.WaitGroup
				errs := make([]error, 4)
				for i, e := range append(ms, wk) {
					role := swarm.RoleManager
					if e == wk {
						role = swarm.RoleWorker
					}
					wg.Go(func() { _, errs[i] = w.boot(t.Context(), e, role, 10*time.Minute) })
				}
				time.Sleep(5 * time.Minute) // long past the settle time
				synctest.Wait()
				for _, e := range append(ms, wk) {
					if e.leaves != 0 || e.swarm != cluster {
						t.Fatalf("%s left (%d) or changed swarm (%s) while unsettled", e.addr, e.leaves, e.swarm)
					}
				}
				// The first manager settles (its quorum is back): the others still wait.
				w.mu.Lock()
				ms[0].state = StateActive
				w.mu.Unlock()
				time.Sleep(time.Minute)
				synctest.Wait()
				w.mu.Lock()
				for _, e := range append(ms, wk) {
					e.state = StateActive
				}
				w.mu.Unlock()
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("boot %d: %v", i, err)
					}
				}
				if w.inits != 1 || w.swarmCount() != 1 {
					t.Fatalf("inits=%d swarms=%d", w.inits, w.swarmCount())
				}
				for _, e := range append(ms, wk) {
					if e.leaves != 0 || e.swarm != cluster {
						t.Fatalf("%s left or changed swarm", e.addr)
					}
				}
			})
		})
	}
}

// TestBootUnsettledReportsWhy: a node that never settles ends the boot with ErrWaitElapsed
// naming its state, and its state is untouched.
func TestBootUnsettledReportsWhy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		e := w.engine("10.0.0.1")
		e.state, e.nodeID, e.swarm, e.mgr = StatePending, "n1", "c1", true
		_, err := w.boot(t.Context(), e, swarm.RoleManager, 3*time.Minute)
		if !errors.Is(err, ErrWaitElapsed) || !strings.Contains(err.Error(), "pending (node n1) to settle") {
			t.Fatalf("err = %v, want ErrWaitElapsed naming the pending state", err)
		}
		if e.leaves != 0 || w.inits != 0 || w.lockTakes != 0 {
			t.Fatalf("leaves=%d inits=%d lock takes=%d; want nothing touched", e.leaves, w.inits, w.lockTakes)
		}
	})
}

// A locked node waits for its unlock (bounded by --wait) with its state untouched, goes on once
// it is unlocked, and fails with ErrSwarmLocked (exit code 7), not a plain timeout, when nobody
// unlocks it in time.
func TestBootLockedWaitsForUnlock(t *testing.T) {
	t.Run("never unlocked", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld()
			e := w.engine("10.0.0.1")
			e.state, e.nodeID, e.swarm, e.mgr = StateLocked, "n1", "c1", true
			start := time.Now()
			_, err := w.boot(t.Context(), e, swarm.RoleManager, time.Minute)
			if !errors.Is(err, ErrSwarmLocked) || errors.Is(err, ErrWaitElapsed) || !strings.Contains(err.Error(), "docker swarm unlock") {
				t.Fatalf("err = %v, want ErrSwarmLocked naming the unlock", err)
			}
			if took := time.Since(start); took < time.Minute {
				t.Fatalf("gave up after %s, want the whole --wait of 1m", took)
			}
			if e.leaves != 0 || e.joins != 0 || w.inits != 0 || w.lockTakes != 0 {
				t.Fatalf("leaves=%d joins=%d inits=%d lock takes=%d; want nothing touched", e.leaves, e.joins, w.inits, w.lockTakes)
			}
		})
	})
	t.Run("unlocked while waiting", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld()
			m := w.engine("10.0.0.1")
			if _, err := w.boot(t.Context(), m, swarm.RoleManager, time.Minute); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			m.state = StateLocked // rebooted with autolock on
			w.mu.Unlock()
			go func() {
				time.Sleep(20 * time.Second) // the operator types the key
				w.mu.Lock()
				m.state = StateActive
				w.mu.Unlock()
			}()
			res, err := w.boot(t.Context(), m, swarm.RoleManager, time.Minute)
			if err != nil || res.Action != ActReconcile {
				t.Fatalf("boot after unlock: action %q err %v, want reconcile", res.Action, err)
			}
			if m.leaves != 0 || w.inits != 1 {
				t.Fatalf("leaves=%d inits=%d; want the swarm kept", m.leaves, w.inits)
			}
		})
	})
}

func TestBootDryRunChangesNothing(t *testing.T) {
	w := newWorld()
	e := w.engine("10.0.0.1")
	d := fakeDisc{w}
	res, err := Boot(t.Context(), Config{Role: swarm.RoleManager, DryRun: true, Identity: swarm.Identity{InstanceID: "i-1", PrivateIP: e.addr}},
		Deps{Engine: e, Discoverer: d, Registrar: d, Locker: d, Tokens: d, Probe: w.probe, Log: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != ActLock || !strings.Contains(res.Decision, "init") {
		t.Fatalf("dry run said %s / %q", res.Action, res.Decision)
	}
	if w.inits != 0 || w.lockOwner != "" || len(w.records) != 0 || e.state != StateInactive {
		t.Fatal("dry run changed something")
	}
}

// TestBootSilentRegisteredManager: a registered manager that does not answer (partition,
// security group, no quorum) is not "no manager": a new manager waits and never inits while
// EC2 says its instance runs; once EC2 says it is gone, the new manager inits.
func TestBootSilentRegisteredManager(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		w.records["i-silent"] = "10.0.0.99:2377"
		w.down["10.0.0.99"] = true
		e := w.engine("10.0.0.1")
		_, err := w.boot(t.Context(), e, swarm.RoleManager, time.Minute)
		if !errors.Is(err, ErrWaitElapsed) || !strings.Contains(err.Error(), "10.0.0.99:2377 does not answer but its instance i-silent is still running") {
			t.Fatalf("err = %v, want ErrWaitElapsed naming the silent manager", err)
		}
		if w.inits != 0 || e.state != StateInactive {
			t.Fatalf("inits=%d state=%s: a second swarm next to a silent manager", w.inits, e.state)
		}
		w.mu.Lock()
		w.gone["i-silent"] = true
		w.mu.Unlock()
		res, err := w.boot(t.Context(), e, swarm.RoleManager, time.Minute)
		if err != nil || res.Action != ActInit {
			t.Fatalf("%v, action %s; want init once the silent manager's instance is gone", err, res.Action)
		}
	})
}

// TestBootSlowPublishKeepsOneSwarm: the initialising manager's registration takes three lock
// TTLs (a slow or throttled AWS); its lease is renewed meanwhile, so the managers racing it
// never take the lock over and there is exactly one swarm.
func TestBootSlowPublishKeepsOneSwarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		w.lockTTL = 10 * time.Second
		w.registerDelay = 30 * time.Second
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range 3 {
			e := w.engine(fmt.Sprintf("10.0.0.%d", 10+i))
			wg.Go(func() {
				time.Sleep(time.Duration(i) * 100 * time.Millisecond)
				_, errs[i] = w.boot(t.Context(), e, swarm.RoleManager, 10*time.Minute)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("manager %d: %v", i, err)
			}
		}
		if w.inits != 1 || w.swarmCount() != 1 {
			t.Fatalf("inits=%d swarms=%d, want one", w.inits, w.swarmCount())
		}
		if w.renewals < 3 {
			t.Fatalf("%d renewals during a 30 s publish with a 10 s lease", w.renewals)
		}
	})
}

// TestBootHandsOverRegistration: with a lock that registers as it releases (Route 53's), the
// creator publishes its tokens first, then registers and releases in one step; the others
// join and register; one swarm.
func TestBootHandsOverRegistration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		w.handOver = true
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range 3 {
			e := w.engine(fmt.Sprintf("10.0.0.%d", 10+i))
			wg.Go(func() { _, errs[i] = w.boot(t.Context(), e, swarm.RoleManager, time.Minute) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("manager %d: %v", i, err)
			}
		}
		if w.inits != 1 || w.swarmCount() != 1 {
			t.Fatalf("inits=%d swarms=%d, want one", w.inits, w.swarmCount())
		}
		if w.handOvers != 1 || !w.tokensBeforeHandOver {
			t.Fatalf("hand-overs=%d tokens published before=%v, want 1 and true", w.handOvers, w.tokensBeforeHandOver)
		}
		if len(w.records) != 3 || w.lockOwner != "" {
			t.Fatalf("registered %v, lock owner %q: want 3 managers and a free lock", w.records, w.lockOwner)
		}
	})
}

// TestBootStopsOnDiscoveryConfigError: a registration refused because discovery is
// misconfigured (no such zone: with no call up front, the first read says so) ends the boot at
// once, not after --wait.
func TestBootStopsOnDiscoveryConfigError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		w.registerConfigErr = fmt.Errorf("%w: route53 hosted zone ZNOSUCHZONE not found", discovery.ErrDiscoveryConfig)
		start := time.Now()
		_, err := w.boot(t.Context(), w.engine("10.0.0.1"), swarm.RoleManager, time.Minute)
		if !errors.Is(err, discovery.ErrDiscoveryConfig) || time.Since(start) > time.Second {
			t.Fatalf("boot = %v after %s, want ErrDiscoveryConfig at once", err, time.Since(start))
		}
	})
}

// TestBootLostLeaseNeverInits: a holder whose lease is taken over before it acts (it was
// paused, its renewal lost the compare-and-swap) never inits.
func TestBootLostLeaseNeverInits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		w.stealAfterLock = "i-thief"
		e := w.engine("10.0.0.1")
		_, err := w.boot(t.Context(), e, swarm.RoleManager, 20*time.Second)
		if !errors.Is(err, ErrWaitElapsed) {
			t.Fatalf("err = %v, want ErrWaitElapsed", err)
		}
		if w.inits != 0 || e.state != StateInactive {
			t.Fatalf("inits=%d state=%s after the lease was lost", w.inits, e.state)
		}
	})
}

// TestBootLiveHolderIsNotDisplaced: a lock not renewed past its TTL whose holder's instance
// still runs (EC2) is not taken over, even after many TTLs.
func TestBootLiveHolderIsNotDisplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		w.lockOwner, w.lockAddr, w.lockUntil = "i-paused", "10.0.0.50", time.Now().Add(w.lockTTL)
		e := w.engine("10.0.0.1")
		_, err := w.boot(t.Context(), e, swarm.RoleManager, 10*w.lockTTL)
		if !errors.Is(err, ErrWaitElapsed) || !strings.Contains(err.Error(), "i-paused") {
			t.Fatalf("err = %v, want ErrWaitElapsed naming the holder", err)
		}
		if w.inits != 0 || w.lockOwner != "i-paused" {
			t.Fatalf("inits=%d owner=%s: a live holder was displaced", w.inits, w.lockOwner)
		}
	})
}

// deniedDisc is discovery whose every answer is an access refusal (IAM, Consul ACL).
type deniedDisc struct{ fakeDisc }

func (deniedDisc) Managers(context.Context) ([]string, error) {
	return nil, fmt.Errorf("consul: list service: %w", discovery.ErrAccessDenied)
}

// TestBootStopsAtOnceOnAccessDenied runs on synctest's clock: the elapsed time is what the
// boot waited (its retries' sleeps), not how fast the machine ran it.
func TestBootStopsAtOnceOnAccessDenied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		e := w.engine("10.0.0.1")
		d := deniedDisc{fakeDisc{w}}
		start := time.Now()
		_, err := Boot(t.Context(), Config{Role: swarm.RoleWorker, Cluster: "test", Wait: time.Minute,
			Identity: swarm.Identity{InstanceID: "i-1", PrivateIP: e.addr}},
			Deps{Engine: e, Discoverer: d, Tokens: d, Probe: w.probe, Log: zerolog.New(io.Discard)})
		if !errors.Is(err, discovery.ErrAccessDenied) || errors.Is(err, ErrWaitElapsed) {
			t.Fatalf("err = %v, want discovery.ErrAccessDenied without waiting", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("retried for %s on a permanent refusal", el)
		}
	})
}

// TestBootInitThenRegisterFailsKeepsLock: when the initialising manager cannot publish itself
// at once, it keeps the lock and retries, so no other manager creates a second swarm, and it
// reports the init it did.
func TestBootInitThenRegisterFailsKeepsLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		w.registerFails = 4
		var es []*fakeEngine
		for i := range 3 {
			es = append(es, w.engine(fmt.Sprintf("10.0.0.%d", 10+i)))
		}
		var wg sync.WaitGroup
		res := make([]Result, len(es))
		errs := make([]error, len(es))
		for i, e := range es {
			wg.Go(func() { res[i], errs[i] = w.boot(t.Context(), e, swarm.RoleManager, 5*time.Minute) })
		}
		wg.Wait()
		inits := 0
		for i := range es {
			if errs[i] != nil {
				t.Fatalf("manager %d: %v", i, errs[i])
			}
			if res[i].Action == ActInit {
				inits++
			}
		}
		if w.inits != 1 || w.swarmCount() != 1 || inits != 1 {
			t.Fatalf("engine inits=%d swarms=%d reported inits=%d, want exactly one", w.inits, w.swarmCount(), inits)
		}
	})
}

// TestPublishTokensAfterRotation: after `docker swarm join-token --rotate`, the leader's pass
// (PublishTokens) republishes, and a new worker joins with the new token.
func TestPublishTokensAfterRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		m := w.engine("10.0.0.1")
		if _, err := w.boot(t.Context(), m, swarm.RoleManager, time.Minute); err != nil {
			t.Fatal(err)
		}
		d := fakeDisc{w}
		if pub, _, err := PublishTokens(t.Context(), m, d); err != nil || pub {
			t.Fatalf("PublishTokens with a current store = %v, %v; want nothing written", pub, err)
		}
		w.mu.Lock()
		w.rotation++
		w.mu.Unlock()
		wk := w.engine("10.0.1.1")
		if _, err := w.boot(t.Context(), wk, swarm.RoleWorker, 10*time.Second); !errors.Is(err, ErrWaitElapsed) {
			t.Fatalf("worker with a stale published token: %v, want it to wait", err)
		}
		pub, cid, err := PublishTokens(t.Context(), m, d)
		if err != nil || !pub || cid != m.swarm {
			t.Fatalf("PublishTokens after rotation = %v, %q, %v; want republished for %s", pub, cid, err, m.swarm)
		}
		if res, err := w.boot(t.Context(), wk, swarm.RoleWorker, time.Minute); err != nil || res.Action != ActJoin {
			t.Fatalf("worker after republish: %v %s", err, res.Action)
		}
	})
}

// TestBootWaitsForTheTokenOfTheSwarmItSees: a token store still holding another swarm's token
// (a rebuilt cluster, the new manager registered but not yet published) is not used: the
// managers' certificates say which swarm answers, and a join with the old token would only be
// refused.
func TestBootWaitsForTheTokenOfTheSwarmItSees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		m := w.engine("10.0.0.1")
		if _, err := w.boot(t.Context(), m, swarm.RoleManager, time.Minute); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock()
		w.tokens[swarm.RoleWorker], w.tokens[swarm.RoleManager], w.clusterID = "SWMTKN-old-worker", "SWMTKN-old-manager", "old"
		w.mu.Unlock()
		wk := w.engine("10.0.1.1")
		_, err := w.boot(t.Context(), wk, swarm.RoleWorker, 20*time.Second)
		if !errors.Is(err, ErrWaitElapsed) || !strings.Contains(err.Error(), "store holds swarm old's") ||
			!strings.Contains(err.Error(), "another cluster's managers") {
			t.Fatalf("err = %v, want a wait naming the stale token's swarm and the likely cause if it stays", err)
		}
		if wk.joins != 0 {
			t.Fatalf("%d joins with another swarm's token", wk.joins)
		}
		if _, _, err := PublishTokens(t.Context(), m, fakeDisc{w}); err != nil {
			t.Fatal(err)
		}
		if res, err := w.boot(t.Context(), wk, swarm.RoleWorker, time.Minute); err != nil || res.Action != ActJoin || wk.joins != 1 {
			t.Fatalf("after publishing: %v %s joins=%d", err, res.Action, wk.joins)
		}
	})
}

// countingTokens counts token reads and says when the first one starts.
type countingTokens struct {
	fakeDisc
	mu      sync.Mutex
	reads   int
	started chan struct{}
}

func (c *countingTokens) Token(ctx context.Context, r swarm.Role) (string, string, error) {
	c.mu.Lock()
	c.reads++
	if c.reads == 1 {
		close(c.started)
	}
	c.mu.Unlock()
	return c.fakeDisc.Token(ctx, r)
}

// TestBootReadsTokenWhileProbing: a node in no swarm reads its join token while the managers
// are probed, not after (the probe waits a second for the read to start: with the read after
// the probes it never does); a worker that finds only silent managers reads it once, in its
// first round, and not again in every later round of its wait.
func TestBootReadsTokenWhileProbing(t *testing.T) {
	t.Run("alongside the probes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld()
			if _, err := w.boot(t.Context(), w.engine("10.0.0.1"), swarm.RoleManager, time.Minute); err != nil {
				t.Fatal(err)
			}
			tokens := &countingTokens{fakeDisc: fakeDisc{w}, started: make(chan struct{})}
			overlapped := false
			worker := w.engine("10.0.1.1")
			d := w.deps()
			d.Engine, d.Tokens = worker, tokens
			d.Probe = func(ctx context.Context, addr string) Probe {
				select {
				case <-tokens.started:
					overlapped = true
				case <-time.After(time.Second):
				}
				return w.probe(ctx, addr)
			}
			cfg := Config{Role: swarm.RoleWorker, Cluster: "test", Wait: time.Minute,
				Identity: swarm.Identity{InstanceID: instanceOf(worker.addr), PrivateIP: worker.addr}}
			res, err := Boot(t.Context(), cfg, d)
			if err != nil || res.Action != ActJoin {
				t.Fatalf("boot: %v, action %s; want a join", err, res.Action)
			}
			if !overlapped || tokens.reads != 1 {
				t.Fatalf("token read alongside the probe: %t, %d reads; want true, 1", overlapped, tokens.reads)
			}
		})
	})
	t.Run("not in every round while no manager answers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld()
			w.records["i-silent"] = "10.0.0.99:2377"
			w.down["10.0.0.99"] = true
			tokens := &countingTokens{fakeDisc: fakeDisc{w}, started: make(chan struct{})}
			worker := w.engine("10.0.1.1")
			d := w.deps()
			d.Engine, d.Tokens = worker, tokens
			cfg := Config{Role: swarm.RoleWorker, Cluster: "test", Wait: time.Minute,
				Identity: swarm.Identity{InstanceID: instanceOf(worker.addr), PrivateIP: worker.addr}}
			res, err := Boot(t.Context(), cfg, d)
			if !errors.Is(err, ErrWaitElapsed) {
				t.Fatalf("boot: %v; want ErrWaitElapsed", err)
			}
			if res.Rounds < 10 || tokens.reads != 1 {
				t.Fatalf("%d rounds, %d token reads; want many rounds and the first round's read only", res.Rounds, tokens.reads)
			}
		})
	})
}
