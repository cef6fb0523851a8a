package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"
)

// Identity is who this node is, as instance metadata tells.
type Identity struct {
	InstanceID   string
	PrivateIP    string
	AZ           string
	Region       string
	InstanceType string
	Tags         map[string]string
}

// Confirmer is implemented by discoverers that can read the source of truth directly,
// bypassing resolver caches. The boot loop uses it once it holds the bootstrap lock.
type Confirmer interface {
	ConfirmManagers(ctx context.Context) ([]string, error)
}

// Config is what a boot needs besides its collaborators.
type Config struct {
	Role     Role
	Cluster  string
	Identity Identity
	// SwarmPort is the port managers listen on (2377).
	SwarmPort int
	// Wait bounds the whole boot; ErrWaitElapsed after it.
	Wait time.Duration
	// Labels are set as node labels on this node when it is a manager.
	Labels map[string]string
	// DryRun observes and reports the decision without changing anything.
	DryRun bool
	// PollMin and PollMax bound the jittered wait between rounds.
	PollMin, PollMax time.Duration
}

// Deps are the collaborators of a boot.
type Deps struct {
	Engine     Engine
	Discoverer Discoverer
	Registrar  Registrar // may be nil (static discovery)
	Locker     Locker    // may be nil: then no node may init
	Tokens     TokenStore
	// Reachable reports whether a manager address accepts connections; nil means TCP dial.
	Reachable func(ctx context.Context, addr string) bool
	Log       zerolog.Logger
	// Stage is told each stage for status reporting (sd_notify STATUS); may be nil.
	Stage func(stage string)
}

// Result is what a boot did.
type Result struct {
	Action   Action   `json:"action"`
	NodeID   string   `json:"node_id,omitempty"`
	Managers []string `json:"managers,omitempty"`
	Rounds   int      `json:"rounds"`
	// Decision is the dry-run's explanation.
	Decision string `json:"decision,omitempty"`
}

// Boot brings this node into the cluster's swarm, or confirms it is already there. It
// returns ErrWaitElapsed (wrapped, naming what it waited for) when cfg.Wait passes first.
func Boot(ctx context.Context, cfg Config, d Deps) (Result, error) {
	if cfg.SwarmPort == 0 {
		cfg.SwarmPort = 2377
	}
	if cfg.PollMin == 0 {
		cfg.PollMin = 250 * time.Millisecond
	}
	if cfg.PollMax == 0 {
		cfg.PollMax = 5 * time.Second
	}
	if d.Reachable == nil {
		d.Reachable = tcpReachable
	}
	if d.Stage == nil {
		d.Stage = func(string) {}
	}
	b := &booter{cfg: cfg, d: d, log: d.Log}
	start := time.Now()
	if cfg.Wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, cfg.Wait, ErrWaitElapsed)
		defer cancel()
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = cfg.PollMin
	bo.MaxInterval = cfg.PollMax
	bo.RandomizationFactor = 0.5

	var res Result
	for round := 1; ; round++ {
		res.Rounds = round
		done, err := b.round(ctx, &res)
		if done || (err != nil && !retryable(err)) {
			return res, err
		}
		if err != nil {
			b.log.Warn().Err(err).Int("attempt", round).Msg("boot round failed, will retry")
			b.lastErr = err
		}
		wait := bo.NextBackOff()
		b.log.Debug().Int("attempt", round).Str("retry_in", wait.String()).Str("reason", b.waiting).Msg("waiting")
		select {
		case <-ctx.Done():
			return res, b.timeoutErr(ctx, start)
		case <-time.After(wait):
		}
	}
}

type booter struct {
	cfg     Config
	d       Deps
	log     zerolog.Logger
	waiting string // what the last round waited for, for the final error
	lastErr error
}

func (b *booter) timeoutErr(ctx context.Context, start time.Time) error {
	cause := context.Cause(ctx)
	what := b.waiting
	if what == "" {
		what = "the swarm"
	}
	msg := fmt.Sprintf("waited %s for %s", time.Since(start).Round(time.Second), what)
	if b.lastErr != nil {
		msg += fmt.Sprintf(" (last error: %v)", b.lastErr)
	}
	if errors.Is(cause, ErrWaitElapsed) {
		return fmt.Errorf("%s: %w", msg, ErrWaitElapsed)
	}
	return fmt.Errorf("%s: %w", msg, cause)
}

// permanent marks errors that retrying cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

func retryable(err error) bool {
	var p permanent
	return !errors.As(err, &p) && !errors.Is(err, ErrAccessDenied)
}

// round observes, decides and acts once. It returns done=true when the boot is complete.
func (b *booter) round(ctx context.Context, res *Result) (bool, error) {
	b.d.Stage("reading local swarm state")
	local, err := b.d.Engine.Local(ctx)
	if err != nil {
		return false, fmt.Errorf("read local swarm state: %w", err)
	}
	obs := Observation{Role: b.cfg.Role, Local: local.State}
	var managers []string
	if local.State == StateInactive || local.State == StateActive {
		b.d.Stage("discovering managers")
		managers, err = b.reachableManagers(ctx, local)
		if err != nil {
			return false, err
		}
		obs.Managers = len(managers) > 0
		res.Managers = managers
	}
	if local.State == StateActive {
		obs.Foreign, err = b.foreign(ctx, local, managers)
		if err != nil {
			return false, err
		}
	}
	var token string
	if local.State == StateInactive && obs.Managers {
		token, _, err = b.d.Tokens.Token(ctx, b.cfg.Role)
		switch {
		case err == nil:
			obs.TokenReady = true
		case errors.Is(err, ErrNoToken):
		default:
			return false, fmt.Errorf("read %s join token: %w", b.cfg.Role, err)
		}
	}
	act := Decide(obs)
	b.log.Info().Str("state", string(local.State)).Bool("managers_found", obs.Managers).
		Bool("token_ready", obs.TokenReady).Str("action", string(act)).Msg("boot decision")

	if b.cfg.DryRun {
		res.Action = act
		res.Decision = explain(obs, act, b.d.Locker != nil)
		return true, nil
	}

	switch act {
	case ActFail:
		return true, permanent{ErrSwarmLocked}
	case ActLeave:
		b.d.Stage("leaving stale swarm state")
		b.log.Warn().Str("state", string(local.State)).Bool("foreign", obs.Foreign).Msg("leaving stale swarm state")
		if err := b.d.Engine.Leave(ctx, true); err != nil {
			return false, fmt.Errorf("leave stale swarm state: %w", err)
		}
		return false, nil
	case ActReconcile:
		b.d.Stage("reconciling")
		if err := b.afterJoin(ctx, local, true); err != nil {
			return false, err
		}
		res.Action, res.NodeID = ActReconcile, local.NodeID
		return true, nil
	case ActJoin:
		return b.join(ctx, res, managers, token)
	case ActWait:
		if obs.Managers {
			b.waiting = fmt.Sprintf("the %s join token to be published", b.cfg.Role)
		} else {
			b.waiting = "a manager to appear in discovery"
		}
		b.d.Stage("waiting for " + b.waiting)
		return false, nil
	case ActLock:
		return b.lockAndInit(ctx, res, local)
	}
	return false, fmt.Errorf("unexpected action %q", act)
}

func explain(o Observation, a Action, canLock bool) string {
	switch a {
	case ActLock:
		if !canLock {
			return "no manager found and this discovery provider has no bootstrap lock: would wait for a manager"
		}
		return "no manager answers: would take the bootstrap lock, look again and init the swarm if still alone"
	case ActJoin:
		return fmt.Sprintf("a manager answers and the %s token is published: would join as %s", o.Role, o.Role)
	case ActWait:
		if o.Managers {
			return "a manager answers but the join token is not published yet: would wait"
		}
		return "no manager answers and this node is a worker: would wait for a manager"
	case ActReconcile:
		return "already active in this cluster's swarm: would only reconcile registration and labels"
	case ActLeave:
		return fmt.Sprintf("local swarm state %s is stale: would leave it and then join", o.Local)
	case ActFail:
		return "the swarm is locked: needs its unlock key"
	}
	return string(a)
}

// reachableManagers asks discovery and keeps the addresses that accept connections,
// leaving out this node itself.
func (b *booter) reachableManagers(ctx context.Context, local LocalNode) ([]string, error) {
	addrs, err := b.d.Discoverer.Managers(ctx)
	if err != nil {
		if errors.Is(err, ErrDiscoveryConfig) {
			return nil, permanent{err}
		}
		return nil, fmt.Errorf("discover managers: %w", err)
	}
	return b.filterReachable(ctx, addrs), nil
}

func (b *booter) filterReachable(ctx context.Context, addrs []string) []string {
	self := net.JoinHostPort(b.cfg.Identity.PrivateIP, strconv.Itoa(b.cfg.SwarmPort))
	var (
		mu  sync.Mutex
		out []string
		wg  sync.WaitGroup
	)
	seen := map[string]bool{self: true}
	for _, a := range addrs {
		a = withPort(a, b.cfg.SwarmPort)
		if seen[a] {
			continue
		}
		seen[a] = true
		wg.Go(func() {
			if b.d.Reachable(ctx, a) {
				mu.Lock()
				out = append(out, a)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(out)
	out = slices.Compact(out)
	return out
}

func withPort(a string, port int) string {
	if _, _, err := net.SplitHostPort(a); err == nil {
		return a
	}
	return net.JoinHostPort(strings.Trim(a, "[]"), strconv.Itoa(port))
}

// foreign tells whether an active local swarm belongs to another cluster.
func (b *booter) foreign(ctx context.Context, local LocalNode, managers []string) (bool, error) {
	if len(managers) == 0 {
		return false, nil // nothing to compare against: keep what we have
	}
	if local.IsManager {
		_, cid, err := b.d.Tokens.Token(ctx, RoleManager)
		if errors.Is(err, ErrNoToken) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read cluster id from token store: %w", err)
		}
		return cid != "" && local.ClusterID != "" && cid != local.ClusterID, nil
	}
	for _, m := range managers {
		if slices.Contains(local.RemoteManagers, m) {
			return false, nil
		}
	}
	return true, nil
}

// join tries the managers in random order with the token read in this round (one token
// read per round: 1000 workers booting at once share SSM's request rate).
func (b *booter) join(ctx context.Context, res *Result, managers []string, token string) (bool, error) {
	order := slices.Clone(managers)
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var errs []error
	for _, m := range order {
		b.d.Stage("joining swarm via " + m)
		b.log.Info().Str("manager_addr", m).Str("role", string(b.cfg.Role)).Msg("joining swarm")
		err := b.d.Engine.Join(ctx, JoinRequest{
			RemoteAddrs:   []string{m},
			Token:         token,
			AdvertiseAddr: b.cfg.Identity.PrivateIP,
			ListenAddr:    "0.0.0.0:" + strconv.Itoa(b.cfg.SwarmPort),
		})
		if err != nil {
			b.log.Warn().Err(err).Str("manager_addr", m).Msg("join failed")
			errs = append(errs, fmt.Errorf("join swarm via %s: %w", m, err))
			continue
		}
		local, err := b.d.Engine.Local(ctx)
		if err != nil {
			return false, fmt.Errorf("read local swarm state after join: %w", err)
		}
		if err := b.afterJoin(ctx, local, false); err != nil {
			return false, err
		}
		res.Action, res.NodeID = ActJoin, local.NodeID
		b.log.Info().Str("node_id", local.NodeID).Str("manager_addr", m).Msg("joined swarm")
		return true, nil
	}
	b.waiting = "a manager that accepts the join"
	return false, errors.Join(errs...)
}

func (b *booter) lockAndInit(ctx context.Context, res *Result, local LocalNode) (bool, error) {
	if b.d.Locker == nil {
		b.waiting = "a manager (this discovery provider cannot elect the first one)"
		return false, nil
	}
	b.d.Stage("taking the bootstrap lock")
	lock, err := b.d.Locker.TryLock(ctx, b.cfg.Identity.InstanceID)
	if errors.Is(err, ErrLockHeld) {
		b.log.Info().Msg("bootstrap lock held elsewhere; waiting")
		b.waiting = "the node holding the bootstrap lock to create the swarm"
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take bootstrap lock: %w", err)
	}
	b.log.Info().Msg("bootstrap lock acquired")
	// Release with its own deadline so that a cancelled boot still frees the lock, unless the
	// swarm was created but not published (keepLock): then it must expire instead.
	keep := false
	keepLock := &keep
	defer func() {
		if keep {
			b.log.Warn().Msg("leaving the bootstrap lock to expire: this node's swarm is not published")
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		if err := lock.Release(rctx); err != nil {
			b.log.Warn().Err(err).Msg("release bootstrap lock (it will expire)")
		}
	}()

	// Look again, from the source of truth where possible: a manager may have finished
	// between our first look and the lock.
	addrs, err := b.confirm(ctx)
	if err != nil {
		return false, err
	}
	managers := b.filterReachable(ctx, addrs)
	obs := Observation{Role: b.cfg.Role, Local: local.State, Managers: len(managers) > 0, Lock: LockAcquired}
	if act := Decide(obs); act != ActInit {
		b.log.Info().Strs("managers", managers).Msg("a manager appeared while taking the lock; joining instead")
		return false, nil
	}

	b.d.Stage("initialising the swarm")
	b.log.Info().Str("advertise_addr", b.cfg.Identity.PrivateIP).Msg("initialising swarm")
	nodeID, err := b.d.Engine.Init(ctx, InitRequest{
		AdvertiseAddr: b.cfg.Identity.PrivateIP,
		ListenAddr:    "0.0.0.0:" + strconv.Itoa(b.cfg.SwarmPort),
	})
	if err != nil {
		// The engine may have created the swarm and failed only to answer in time.
		if l, lerr := b.d.Engine.Local(ctx); lerr != nil || l.State != StateActive {
			return false, fmt.Errorf("swarm init: %w", err)
		}
		b.log.Warn().Err(err).Msg("swarm init answered with an error but the swarm exists: going on")
	}
	// Until this manager is published (tokens and registration), nobody else can find the
	// swarm: releasing the lock now would let another manager create a second one. So keep the
	// lock and retry; if the boot ends first, leave the lock to expire instead of releasing it.
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = b.cfg.PollMin, b.cfg.PollMax
	for attempt := 1; ; attempt++ {
		local, err = b.d.Engine.Local(ctx)
		if err == nil {
			if err = b.afterJoin(ctx, local, false); err == nil {
				break
			}
		} else {
			err = fmt.Errorf("read local swarm state after init: %w", err)
		}
		b.log.Warn().Err(err).Int("attempt", attempt).Msg("swarm initialised but not yet published: retrying while holding the bootstrap lock")
		if !retryable(err) {
			*keepLock = true
			return true, err
		}
		select {
		case <-ctx.Done():
			*keepLock = true
			return true, fmt.Errorf("swarm initialised but not published before the boot ended (the bootstrap lock is left to expire): %w", err)
		case <-time.After(bo.NextBackOff()):
		}
	}
	if nodeID == "" {
		nodeID = local.NodeID
	}
	res.Action, res.NodeID = ActInit, nodeID
	b.log.Info().Str("node_id", nodeID).Msg("swarm initialised")
	return true, nil
}

func (b *booter) confirm(ctx context.Context) ([]string, error) {
	if c, ok := b.d.Discoverer.(Confirmer); ok {
		addrs, err := c.ConfirmManagers(ctx)
		if err != nil {
			return nil, fmt.Errorf("confirm managers: %w", err)
		}
		return addrs, nil
	}
	addrs, err := b.d.Discoverer.Managers(ctx)
	if err != nil {
		return nil, fmt.Errorf("discover managers: %w", err)
	}
	return addrs, nil
}

// afterJoin publishes tokens (managers), registers the manager and labels the node. It is
// idempotent: reconcile runs it on every boot.
func (b *booter) afterJoin(ctx context.Context, local LocalNode, reconcile bool) error {
	if !local.IsManager {
		return nil
	}
	b.d.Stage("publishing join tokens")
	tokens, clusterID, err := b.d.Engine.JoinTokens(ctx)
	if err != nil {
		return fmt.Errorf("read join tokens: %w", err)
	}
	publish := true
	if got, cid, err := b.d.Tokens.Token(ctx, RoleManager); err == nil && got == tokens.Manager && cid == clusterID {
		if wt, _, err := b.d.Tokens.Token(ctx, RoleWorker); err == nil && wt == tokens.Worker {
			publish = false
		}
	}
	if publish {
		if err := b.d.Tokens.PutTokens(ctx, clusterID, tokens); err != nil {
			return fmt.Errorf("publish join tokens: %w", err)
		}
		b.log.Info().Str("cluster_id", clusterID).Msg("join tokens published")
	}
	if b.d.Registrar != nil {
		b.d.Stage("registering in discovery")
		m := Member{InstanceID: b.cfg.Identity.InstanceID, Addr: b.cfg.Identity.PrivateIP, Port: b.cfg.SwarmPort}
		if err := b.d.Registrar.Register(ctx, m); err != nil {
			return fmt.Errorf("register manager: %w", err)
		}
	}
	if len(b.cfg.Labels) > 0 && local.NodeID != "" {
		b.d.Stage("labelling node")
		if err := b.d.Engine.SetNodeLabels(ctx, local.NodeID, b.cfg.Labels); err != nil {
			return fmt.Errorf("label node %s: %w", local.NodeID, err)
		}
	}
	_ = reconcile
	return nil
}

func tcpReachable(ctx context.Context, addr string) bool {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
