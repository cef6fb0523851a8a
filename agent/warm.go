package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// ActionWarm is boot's result on an instance in its group's warm pool: prepared, not in
// the swarm.
const ActionWarm bootstrap.Action = "warm"

// errInSwarmWhileWarm: the warm pool preparation refuses an engine that is still in a swarm
// (only a drain takes a node out; run drains a node whose instance returns to the pool).
var errInSwarmWhileWarm = errors.New("the engine is in a swarm while its instance is in the warm pool")

// warmTarget reads this instance's Auto Scaling target lifecycle state and reports whether it
// is a warm pool state (lifecycle.Warmed). A dry run, a static identity or instance metadata
// that does not answer are not warm: boot goes on as before and reports its own errors.
func warmTarget(ctx context.Context, cfg Config) (string, bool) {
	if cfg.DryRun || cfg.Identity == "static" {
		return "", false
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := newIMDS().TargetLifecycleState(tctx)
	if err != nil {
		return "", false
	}
	return st, lifecycle.Warmed(st)
}

// prepareWarm prepares an instance of the warm pool and nothing more: Docker checked (and
// daemon.json merged), the --warm-pull-images present, then its launch lifecycle action
// (Warmed:Pending:Wait) completed with CONTINUE. It joins no swarm, registers nothing, reads
// no token and sets up no discovery. A preparation that fails for good completes the action
// with ABANDON, so that Auto Scaling replaces the instance instead of keeping an unprepared one
// in the pool.
//
// beforeDone (nil for nothing) runs once the instance is prepared, before the action is
// completed: Auto Scaling stops a pool instance as soon as its action is, so whatever its
// next start needs (boot's settings for the service) must be on disk by then.
func prepareWarm(ctx context.Context, cfg Config, log zerolog.Logger, st *statusFile, m *metrics, beforeDone func()) (bootstrap.Result, error) {
	start := time.Now()
	log = log.With().Str("component", "warm").Logger()
	st.stage("checking docker")
	eng, err := engine.New(cfg.DockerHost, m.engineOptions()...)
	if err != nil {
		return bootstrap.Result{}, fmt.Errorf("%w: %w", errDocker, err)
	}
	defer func() { _ = eng.Close() }()
	st.stage("reading identity")
	id, err := identity(ctx, cfg)
	if err != nil {
		return bootstrap.Result{}, err
	}
	log = log.With().Str("instance_id", id.InstanceID).Logger()
	l := startLaunchFor(ctx, cfg, id, log, m)
	fail := func(err error) (bootstrap.Result, error) {
		if l != nil {
			l.failed(ctx, err)
		}
		return bootstrap.Result{}, err
	}
	ver, err := checkEngine(ctx, cfg, eng, log)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", errDocker, err))
	}
	log.Info().Str("engine_version", ver.Engine).Str("api_version", ver.API).Msg("docker engine answers")
	if ln, err := eng.Local(ctx); err != nil {
		return fail(fmt.Errorf("%w: %w", errDocker, err))
	} else if ln.State != bootstrap.StateInactive {
		return fail(fmt.Errorf("%w: %w (local node state %s)", errDocker, errInSwarmWhileWarm, ln.State))
	}
	st.stage("configuring docker")
	if err := configureEngine(ctx, cfg, &wiring{engine: eng, identity: id, m: m}, log); err != nil {
		return fail(err)
	}
	for _, ref := range cfg.WarmPullImages {
		st.stage("warm pool: pulling " + ref)
		pulled, err := eng.EnsureImage(ctx, ref)
		if err != nil {
			return fail(fmt.Errorf("%w: warm pool preparation: %w", errDocker, err))
		}
		log.Info().Str("image", ref).Bool("pulled", pulled).Msg("warm pool: image present")
	}
	if beforeDone != nil {
		beforeDone()
	}
	if l != nil {
		if held, known := l.hold.Held(ctx, launchLookup); known && !held {
			l.hold.Release()
		} else {
			st.stage("warm pool: completing the launch lifecycle action")
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), launchSettle)
			rep, err := l.hold.Complete(cctx, lifecycle.ResultContinue)
			cancel()
			l.count(rep)
			if err != nil {
				log.Error().Err(err).Msg("warm pool launch lifecycle action not completed: the hook's default result applies at its timeout")
			} else if rep.Result != "" {
				log.Info().Str("result", rep.Result).Msg("warm pool launch lifecycle action completed")
			}
		}
	}
	st.update(func(s *Status) { s.Action, s.Stage = string(ActionWarm), "prepared in the warm pool" })
	log.Info().Dur("elapsed", time.Since(start)).Int("images", len(cfg.WarmPullImages)).
		Msg("prepared in the warm pool: the node joins the swarm once its instance goes InService")
	return bootstrap.Result{Action: ActionWarm}, nil
}

// errLeftForPool ends a run whose node left the swarm because its instance returns to the
// warm pool (ReuseOnScaleIn): the daemon starts over, as a warm pool instance.
var errLeftForPool = errors.New("returned to the warm pool")

// waitWarm is run on an instance of the warm pool: it prepares it (prepareWarm, once), tells
// systemd it is ready (a pool instance that keeps running must not time the unit out), then
// reads the target lifecycle state every --watch-interval until it is no longer a pool state
// (InService: the caller boots into the swarm). A stopped pool instance is stopped while it
// waits here; on its next start its unit starts run again, which then finds it InService. It
// returns ctx's cause when ctx ends first.
func (d *daemon) waitWarm(ctx context.Context, state string) error {
	prepared := false
	for {
		if !prepared {
			d.st.stage("warm pool (" + state + "): preparing")
			if _, err := prepareWarm(ctx, d.cfg, d.log, d.st, d.m, nil); err != nil {
				return err
			}
			prepared = true
			_ = d.notify.Ready()
			_ = d.notify.Status("prepared in the warm pool (" + state + "): waiting for InService")
		}
		d.m.tick()
		d.notify.Alive()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(d.cfg.WatchInterval):
		}
		st, err := d.imds.TargetLifecycleState(ctx)
		switch {
		case err != nil:
			d.log.Debug().Err(err).Msg("read target lifecycle state")
		case !lifecycle.Warmed(st):
			d.log.Info().Str("state", st).Msg("the instance leaves the warm pool: booting into the swarm")
			return nil
		default:
			state = st
		}
	}
}

// wipeForPool follows the drain of a node whose instance returns to the warm pool: the
// drain took the node out of the swarm (removed, its termination action completed); any swarm
// state the engine still holds is dropped, so that the instance joins fresh when it leaves
// the pool again. It returns errLeftForPool, which starts the daemon over.
func (d *daemon) wipeForPool(ctx context.Context, dw *drainWiring) error {
	ln, err := dw.engine.Local(ctx)
	if err == nil && ln.State != bootstrap.StateInactive {
		d.log.Info().Str("node_id", ln.NodeID).Str("state", string(ln.State)).Msg("warm pool: dropping the engine's swarm state")
		err = dw.engine.Leave(ctx, true)
	}
	if err != nil {
		return fmt.Errorf("wipe the swarm state for the warm pool: %w", err)
	}
	return errLeftForPool
}

// engineInSwarm reports whether the engine has swarm state (false when it cannot tell: the
// warm pool preparation then checks again and reports it).
func engineInSwarm(ctx context.Context, cfg Config) bool {
	eng, err := engine.New(cfg.DockerHost)
	if err != nil {
		return false
	}
	defer func() { _ = eng.Close() }()
	ln, err := eng.Local(ctx)
	return err == nil && ln.State != bootstrap.StateInactive
}

// bootOrWarm is boot's work: on an instance of the warm pool the preparation only
// (prepareWarm, which persists the settings with persist before it completes the launch
// action: Auto Scaling may stop the instance right after), else the boot into the swarm
// (bootLaunched).
func bootOrWarm(ctx context.Context, cfg Config, log zerolog.Logger, st *statusFile, persist func()) (bootstrap.Result, error) {
	if state, warm := warmTarget(ctx, cfg); warm {
		log.Info().Str("state", state).Msg("this instance is in its group's warm pool: preparing only, no swarm join")
		return prepareWarm(ctx, cfg, log, st, nil, persist)
	}
	return bootLaunched(ctx, cfg, log, st, nil)
}
