package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// Config is what a boot needs besides its collaborators.
type Config struct {
	Role     swarm.Role
	Cluster  string
	Identity swarm.Identity
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
	// Settle is how long a pending or error state without a node identity (a join that never
	// completed) may last before boot leaves it; 0 means DefaultSettle. State WITH a node
	// identity is never left on a timer.
	Settle time.Duration
	// Autolock (managers): the swarm is created locked, autolock is turned on in a swarm
	// that lacks it, and the unlock key is kept in the token store.
	Autolock bool
}

// DefaultSettle is Config.Settle's default: longer than the engine's own join timeout (20 s).
const DefaultSettle = time.Minute

// Deps are the collaborators of a boot.
type Deps struct {
	Engine Engine
	// Autolocker is the engine's autolock side; nil when it has none: then boot never unlocks
	// a locked manager and --autolock fails.
	Autolocker Autolocker
	Discoverer discovery.Discoverer
	Registrar  discovery.Registrar // may be nil (static discovery)
	Locker     discovery.Locker    // may be nil: then no node may init
	Tokens     discovery.TokenStore
	// Probe asks a manager address who it is; nil means TLSProbe.
	Probe ProbeFunc
	// InstanceGone tells whether EC2 says an instance is gone (terminated, shutting down or
	// unknown); nil when no such source exists (then only a silent swarm port counts).
	InstanceGone func(ctx context.Context, instanceID string) (bool, error)
	Log          zerolog.Logger
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
	if d.Probe == nil {
		d.Probe = TLSProbe
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
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
	// unsettledSince is when this boot first saw the current pending or error state.
	unsettledSince time.Time
	unsettledState SwarmState
	// locked: the last round found the node autolocked.
	locked bool
	// lastSilent is why the registry's silent managers counted as alive when this boot last
	// held the lock ("" once a manager answers).
	lastSilent string
	// answered: the last round found a manager answering.
	answered bool
}

// tokenRead is a join token read running alongside the managers' probes.
type tokenRead struct {
	cancel         context.CancelFunc
	done           chan struct{}
	token, cluster string
	err            error
}

// readToken starts reading this role's join token in the background.
func (b *booter) readToken(ctx context.Context) *tokenRead {
	ctx, cancel := context.WithCancel(ctx)
	t := &tokenRead{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.token, t.cluster, t.err = b.d.Tokens.Token(ctx, b.cfg.Role)
	}()
	return t
}

// result waits for the read and returns what it got.
func (t *tokenRead) result() (string, string, error) {
	<-t.done
	t.cancel()
	return t.token, t.cluster, t.err
}

// drop cancels the read, if any, and waits for it to end.
func (t *tokenRead) drop() {
	if t != nil {
		t.cancel()
		<-t.done
	}
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
		if b.locked {
			// Still locked at the deadline: what stops it is the missing key, not time.
			return fmt.Errorf("%s: %w", msg, ErrSwarmLocked)
		}
		return fmt.Errorf("%s: %w", msg, ErrWaitElapsed)
	}
	return fmt.Errorf("%s: %w", msg, cause)
}

// permanent marks errors that retrying cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

func retryable(err error) bool {
	var p permanent
	return !errors.As(err, &p) && !errors.Is(err, discovery.ErrAccessDenied) && !errors.Is(err, discovery.ErrDiscoveryConfig)
}

// round observes, decides and acts once. It returns done=true when the boot is complete.
func (b *booter) round(ctx context.Context, res *Result) (bool, error) {
	b.d.Stage("reading local swarm state")
	local, err := b.d.Engine.Local(ctx)
	if err != nil {
		return false, fmt.Errorf("read local swarm state: %w", err)
	}
	obs := Observation{Role: b.cfg.Role, Local: local.State, HasNodeID: local.NodeID != "" || local.CertNodeID != "", Settle: b.cfg.Settle,
		CertManager: local.CertManager}
	if unsettledState(local.State) && !local.CertNotAfter.IsZero() && time.Now().After(local.CertNotAfter) {
		obs.CertExpired = true
	}
	obs.Unsettled = b.unsettled(local.State)
	b.locked = false
	var seen observed
	// A node that is in no swarm reads its join token while the managers are probed (a read
	// made when the probes then find none answering is wasted, so only in a first round or
	// after a round that found managers answering): the same read, taken a few milliseconds
	// before the probes' answers rather than after; Decide gets the same observation.
	var early *tokenRead
	defer func() { early.drop() }()
	var unlock swarm.UnlockKey
	var noKey string // why the store's unlock key cannot unlock this node
	if local.State == StateLocked {
		unlock, noKey = b.unlockKey(ctx, local)
		obs.UnlockKey = noKey == ""
	}
	if local.State != StateLocked {
		b.d.Stage("discovering managers")
		var alongside func()
		if local.State == StateInactive && (res.Rounds <= 1 || b.answered) {
			alongside = func() { early = b.readToken(ctx) }
		}
		seen, err = b.observe(ctx, local, alongside)
		if err != nil {
			return false, err
		}
		obs.Managers = len(seen.answering) > 0
		b.answered = obs.Managers
		obs.Registered = len(seen.silent) > 0
		if obs.Managers {
			b.lastSilent = ""
		} else if obs.Registered {
			b.lastSilent = strings.Join(seen.silentWhy, "; ")
		}
		obs.Membership = seen.membership
		res.Managers = seen.answering
	}
	var token, tokenCluster string
	if local.State == StateInactive && obs.Managers {
		if early != nil {
			token, tokenCluster, err = early.result()
			early = nil
		} else {
			token, tokenCluster, err = b.d.Tokens.Token(ctx, b.cfg.Role)
		}
		switch {
		case err == nil:
			// A token of another swarm (a rebuilt cluster's, not yet republished) would only
			// be refused: the managers' certificates say which swarm they are.
			obs.TokenReady = tokenCluster == "" || len(seen.clusterIDs) == 0 || slices.Contains(seen.clusterIDs, tokenCluster)
		case errors.Is(err, discovery.ErrNoToken):
		default:
			return false, fmt.Errorf("read %s join token: %w", b.cfg.Role, err)
		}
	}
	act := Decide(obs)
	if obs.CertExpired {
		b.log.Error().Str("node_id", orNone(local.CertNodeID)).Time("cert_not_after", local.CertNotAfter).Bool("cert_manager", local.CertManager).
			Msg("this node's swarm certificate has expired (the node was off longer than its validity): the swarm will never take it back with it")
	}
	b.log.Info().Str("state", string(local.State)).Bool("managers_found", obs.Managers).
		Bool("registered_silent", obs.Registered).Str("membership", string(obs.Membership)).
		Bool("token_ready", obs.TokenReady).Str("action", string(act)).Msg("boot decision")

	if b.cfg.DryRun {
		res.Action = act
		res.Decision = explain(obs, act, b.d.Locker != nil, local, seen)
		return true, nil
	}

	switch act {
	case ActFail:
		// Unlocking needs a person, or the key in the store: wait for either, bounded by
		// --wait, and leave the state alone; the deadline's error says locked.
		b.locked = true
		b.waiting = fmt.Sprintf("the swarm to be unlocked (node %s is autolocked and %s: run `docker swarm unlock` with the unlock key on it); its state is left alone", orNone(local.NodeID), noKey)
		b.d.Stage("waiting for " + b.waiting)
		return false, nil
	case ActUnlock:
		b.locked = true
		b.d.Stage("unlocking the swarm with the unlock key from the token store")
		if err := b.unlock(ctx, unlock); err != nil {
			b.waiting = fmt.Sprintf("the swarm to be unlocked (node %s is autolocked and %v: run `docker swarm unlock` with the unlock key on it); its state is left alone", orNone(local.NodeID), err)
			b.log.Warn().Err(err).Str("node_id", orNone(local.NodeID)).Msg("could not unlock this manager with the unlock key from the token store; waiting")
			b.d.Stage("waiting for " + b.waiting)
			return false, nil
		}
		b.log.Info().Str("node_id", orNone(local.NodeID)).Str("cluster_id", unlock.ClusterID).Msg("unlocked this manager with the unlock key from the token store")
		return false, nil // the next round sees it active and reconciles
	case ActLeave:
		b.d.Stage("leaving stale swarm state")
		b.log.Warn().Str("state", string(local.State)).Str("membership", string(obs.Membership)).
			Str("node_id", local.NodeID).Strs("cluster_ids", seen.clusterIDs).Msg("leaving swarm state proven stale")
		if err := b.d.Engine.Leave(ctx, true); err != nil {
			return false, fmt.Errorf("leave stale swarm state: %w", err)
		}
		return false, nil
	case ActSettle:
		if obs.CertExpired {
			b.waiting = fmt.Sprintf("a manager of this node's swarm %s to answer: this manager's certificate expired at %s, and with no other manager of its swarm answering its Raft state may be the last copy, so it is left alone (to recover, run `docker swarm init --force-new-cluster` on the manager with the newest state, then boot the others again)",
				orNone(local.CertClusterID), local.CertNotAfter.UTC().Format(time.RFC3339))
			b.d.Stage("waiting for " + b.waiting)
			return false, nil
		}
		b.waiting = fmt.Sprintf("the engine's swarm state %s (node %s) to settle: a manager waiting for its quorum or a node reconnecting is not proven stale, so it is left alone", local.State, orNone(local.NodeID))
		if local.Error != "" {
			b.waiting += " (engine says: " + cut(local.Error, 200) + ")"
		}
		b.d.Stage("waiting for " + b.waiting)
		return false, nil
	case ActHold:
		b.waiting = fmt.Sprintf("proof that this node's swarm (node %s) is this cluster's or another's: managers %v answer but this node's cluster id is unknown, so its swarm state is left alone", orNone(local.NodeID), seen.answering)
		b.d.Stage("waiting for " + b.waiting)
		return false, nil
	case ActReconcile:
		b.d.Stage("reconciling")
		if err := b.afterJoin(ctx, local); err != nil {
			return false, err
		}
		res.Action, res.NodeID = ActReconcile, local.NodeID
		return true, nil
	case ActJoin:
		return b.join(ctx, res, seen.answering, token)
	case ActWait:
		switch {
		case obs.Managers && tokenCluster != "":
			// A rebuilt cluster's store catches up by itself; one that never does most likely
			// means discovery finds another cluster's managers (one record name given to two
			// clusters, made by an older version that recorded no owner).
			b.waiting = fmt.Sprintf("the %s join token of swarm %v to be published (the store holds swarm %s's; if it stays so, discovery may be finding another cluster's managers: give each cluster its own managers' name in --discovery)", b.cfg.Role, seen.clusterIDs, tokenCluster)
		case obs.Managers:
			b.waiting = fmt.Sprintf("the %s join token to be published", b.cfg.Role)
		case obs.Registered:
			b.waiting = fmt.Sprintf("registered managers that do not answer on the swarm port and are not proven gone (%s); not creating a second swarm", strings.Join(seen.silentWhy, "; "))
		default:
			b.waiting = "a manager to appear in discovery"
		}
		b.d.Stage("waiting for " + b.waiting)
		return false, nil
	case ActLock:
		return b.lockAndInit(ctx, res, local)
	}
	return false, fmt.Errorf("unexpected action %q", act)
}

// unsettledState: the engine is pending or in error.
func unsettledState(s SwarmState) bool { return s == StatePending || s == StateError }

// unsettled tracks how long this boot has seen the engine pending or in error.
func (b *booter) unsettled(s SwarmState) time.Duration {
	if !unsettledState(s) {
		b.unsettledSince, b.unsettledState = time.Time{}, ""
		return 0
	}
	if b.unsettledSince.IsZero() || b.unsettledState != s {
		b.unsettledSince, b.unsettledState = time.Now(), s
	}
	return time.Since(b.unsettledSince)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// cut shortens a value shown in a message to n bytes, saying how long it was.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}

func explain(o Observation, a Action, canLock bool, local LocalNode, seen observed) string {
	switch a {
	case ActLock:
		if !canLock {
			return "no manager found and this discovery provider has no bootstrap lock: would wait for a manager"
		}
		return "no manager answers or is registered: would take the bootstrap lock, read the registry again and init the swarm if still alone"
	case ActJoin:
		return fmt.Sprintf("a manager answers and the %s token is published: would join as %s", o.Role, o.Role)
	case ActWait:
		switch {
		case o.Managers:
			return "a manager answers but the join token is not published yet: would wait"
		case o.Registered:
			return fmt.Sprintf("registered managers do not answer and are not proven gone (%s): would wait, never init a second swarm", strings.Join(seen.silentWhy, "; "))
		}
		return "no manager answers and this node is a worker: would wait for a manager"
	case ActReconcile:
		return "already active in this cluster's swarm: would only reconcile registration and labels"
	case ActLeave:
		if o.CertExpired && o.Membership != MemberForeign {
			if o.CertManager {
				return fmt.Sprintf("this manager's swarm certificate expired at %s and managers of its swarm answer (they hold the state): would leave and join again", local.CertNotAfter.UTC().Format(time.RFC3339))
			}
			return fmt.Sprintf("this node's swarm certificate expired at %s (off longer than its validity): would leave and join again", local.CertNotAfter.UTC().Format(time.RFC3339))
		}
		if o.Membership == MemberForeign {
			return fmt.Sprintf("local swarm state %s belongs to another swarm (managers show %v): would leave it and then join", o.Local, seen.clusterIDs)
		}
		return fmt.Sprintf("local swarm state %s has no node identity after %s (a join that never completed): would leave it and then join", o.Local, o.Settle)
	case ActSettle:
		if o.CertExpired {
			return fmt.Sprintf("this manager's swarm certificate expired at %s and no manager of its swarm answers: its Raft state may be the last copy, so it is left alone (recover with `docker swarm init --force-new-cluster`)", local.CertNotAfter.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("local swarm state %s with node %s is not proven stale: would wait for it to settle and never force-leave it", o.Local, orNone(local.NodeID))
	case ActHold:
		return "active in a swarm that no answering manager shows to be this cluster's or another's: would leave it alone and report"
	case ActFail:
		return "the swarm is locked and the token store holds no unlock key of its swarm: would wait up to --wait for someone to unlock it (docker swarm unlock), touching nothing, then exit 7"
	case ActUnlock:
		return "the swarm is locked and the token store holds its unlock key: would unlock it with that key, touching nothing else"
	}
	return string(a)
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
		if err := b.afterJoin(ctx, local); err != nil {
			return false, err
		}
		res.Action, res.NodeID = ActJoin, local.NodeID
		b.log.Info().Str("node_id", local.NodeID).Str("manager_addr", m).Msg("joined swarm")
		return true, nil
	}
	b.waiting = "a manager that accepts the join"
	return false, errors.Join(errs...)
}

// afterJoin registers the manager, publishes the tokens and labels the node. It is
// idempotent: reconcile runs it on every boot. Registration comes first: it is what makes a
// new swarm findable, and findable is what stops another manager from creating one.
func (b *booter) afterJoin(ctx context.Context, local LocalNode) error {
	if !local.IsManager {
		return nil
	}
	if err := b.register(ctx); err != nil {
		return err
	}
	return b.publishAndLabel(ctx, local)
}

// register publishes this manager in discovery (nothing without a Registrar).
func (b *booter) register(ctx context.Context) error {
	if b.d.Registrar == nil {
		return nil
	}
	b.d.Stage("registering in discovery")
	if err := b.d.Registrar.Register(ctx, b.member()); err != nil {
		return fmt.Errorf("register manager: %w", err)
	}
	return nil
}

func (b *booter) member() swarm.Member {
	return swarm.Member{InstanceID: b.cfg.Identity.InstanceID, Addr: b.cfg.Identity.PrivateIP, Port: b.cfg.SwarmPort}
}

// publishAndLabel writes the join tokens when the store is behind and labels the node.
func (b *booter) publishAndLabel(ctx context.Context, local LocalNode) error {
	b.d.Stage("publishing join tokens")
	published, clusterID, err := PublishTokens(ctx, b.d.Engine, b.d.Tokens)
	if err != nil {
		return err
	}
	if published {
		b.log.Info().Str("cluster_id", clusterID).Msg("join tokens published")
	}
	if b.cfg.Autolock {
		b.d.Stage("keeping the swarm locked and its unlock key published")
		changed, published, err := KeepAutolock(ctx, b.d.Autolocker, b.d.Tokens, clusterID)
		if err != nil {
			return err
		}
		if changed {
			b.log.Info().Str("cluster_id", clusterID).Msg("swarm autolock turned on")
		}
		if published {
			b.log.Info().Str("cluster_id", clusterID).Msg("unlock key published")
		}
	}
	if len(b.cfg.Labels) > 0 && local.NodeID != "" {
		b.d.Stage("labelling node")
		if err := b.d.Engine.SetNodeLabels(ctx, local.NodeID, b.cfg.Labels); err != nil {
			return fmt.Errorf("label node %s: %w", local.NodeID, err)
		}
	}
	return nil
}

// PublishTokens makes the token store hold the swarm's live join tokens and cluster id,
// writing only when they differ (after `docker swarm join-token --rotate`, a CA rotation, or a
// new swarm). It is the one rule boot and the leader's pass share; managers only.
func PublishTokens(ctx context.Context, eng Engine, store discovery.TokenStore) (published bool, clusterID string, err error) {
	tokens, clusterID, err := eng.JoinTokens(ctx)
	if err != nil {
		return false, "", fmt.Errorf("read join tokens: %w", err)
	}
	if got, cid, err := store.Token(ctx, swarm.RoleManager); err == nil && got == tokens.Manager && cid == clusterID {
		if wt, wcid, err := store.Token(ctx, swarm.RoleWorker); err == nil && wt == tokens.Worker && wcid == clusterID {
			return false, clusterID, nil
		}
	}
	if err := store.PutTokens(ctx, clusterID, tokens); err != nil {
		return false, clusterID, fmt.Errorf("publish join tokens: %w", err)
	}
	return true, clusterID, nil
}
