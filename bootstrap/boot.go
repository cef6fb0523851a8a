package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
