package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/swarm-agent/swarm-agent/agent/sdnotify"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/imds"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func init() { extraCommands = append(extraCommands, runCmd) }

// runOptions: everything boot takes, plus what draining and the daemon take.
var runOptions = func() []string {
	out := append([]string(nil), bootOptions...)
	for _, o := range append(drainOptions, "metrics-listen", "reap-grace", "watch-interval", "queue-url", "queue-grace", "drain-on-rebalance", "maintenance-lead",
		"rebalance-cooldown", "resize-interval") {
		seen := false
		for _, x := range out {
			if x == o {
				seen = true
			}
		}
		if !seen {
			out = append(out, o)
		}
	}
	return out
}()

func runCmd(e env) *cobra.Command {
	var cfg Config
	cmd := &cobra.Command{
		Use:   "run",
		Short: "The long-running agent: boot, then watch for this node's end and drain it; leader duties on managers",
		Long: `run is what the systemd unit starts (Type=notify). It boots first (READY=1 only once the
node is in the swarm), then watches instance metadata for the Auto Scaling target lifecycle state
Terminated, for a spot interruption notice and for EC2 scheduled events, and drains the node
when either comes (a scheduled reboot or host maintenance drains the node ahead of its window
and makes it active again once the instance is back). On managers it also serves the control
API that workers use to drain themselves, and the leader reaps nodes that died without warning
and drains nodes whose instances fail their EC2 status checks. A SIGTERM stops the watching; a drain in progress goes
on to its end (its own deadline).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfig(cmd.Flags(), e, &cfg); err != nil {
				abandonAfterConfigError(cmd.Context(), cfg, newLogger(e.stderr, "auto", "info"), err)
				return err
			}
			log := newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
			return runDaemon(cmd.Context(), cfg, log)
		},
	}
	bindOptions(cmd.Flags(), &cfg, runOptions...)
	return cmd
}

// daemon is the state of one `run`.
type daemon struct {
	cfg    Config
	log    zerolog.Logger
	st     *statusFile
	m      *metrics
	notify *sdnotify.Notifier
	imds   *imds.Client
}

// runDaemon runs the daemon; when its node leaves the swarm for the warm pool (a scale-in
// with ReuseOnScaleIn) it starts over as a warm pool instance: prepare, complete the pool's
// launch action, wait for InService, join the swarm fresh.
func runDaemon(ctx context.Context, cfg Config, log zerolog.Logger) error {
	for {
		err := runOnce(ctx, cfg, log)
		if !errors.Is(err, errLeftForPool) {
			return err
		}
		log.Info().Msg("the node left the swarm for the warm pool: starting over as a warm pool instance")
	}
}

func runOnce(ctx context.Context, cfg Config, log zerolog.Logger) error {
	n, err := sdnotify.New()
	if err != nil {
		return &ConfigError{[]string{err.Error()}}
	}
	d := &daemon{cfg: cfg, log: log, st: newStatusFile(cfg.StatusFile, "run"), m: newMetrics(), notify: n}
	d.m.tick()
	// The helpers (watchdog, metrics) run until the daemon ends: an early return (boot failed,
	// a drain instead of a boot) stops them before it waits for them, or it would wait forever.
	gbase, stopHelpers := context.WithCancel(ctx)
	defer stopHelpers()
	g, gctx := errgroup.WithContext(gbase)
	g.Go(func() error { return n.Run(gctx) })
	if cfg.MetricsListen != "" {
		g.Go(func() error {
			if err := d.m.serve(gctx, cfg.MetricsListen, log, d.st.snapshot); err != nil {
				log.Warn().Err(err).Str("addr", cfg.MetricsListen).Msg("metrics endpoint failed; running without it")
			}
			return nil
		})
	}
	// Until READY, every stage the agent records is also systemd's STATUS: `systemctl status`
	// says what a unit still activating waits for. From READY on, STATUS says "in swarm" until
	// a drain says otherwise.
	d.st.setOnStage(func(s string) { _ = n.Status(s) })
	status := d.st.stage

	// A terminating instance is never booted: a drain that left the swarm and then exited
	// non-zero (deadline with abandon, completion failed, SIGKILL after leaving) is restarted
	// by systemd, and must finish what remains instead of joining again.
	d.imds = newIMDS()
	if cfg.Identity != "static" {
		if done, err := d.drainBeforeBoot(ctx, cfg); done {
			_ = n.Stopping()
			stopHelpers()
			return errors.Join(err, waitGroup(g, ctx))
		}
	}

	// An instance of the warm pool prepares only, and boots once it goes InService.
	if state, warm := warmTarget(ctx, cfg); warm && d.imds != nil {
		if err := d.waitWarm(ctx, state); err != nil {
			_ = n.Stopping()
			stopHelpers()
			if ctx.Err() != nil {
				return waitGroup(g, ctx) // SIGTERM in the pool: a clean stop
			}
			return errors.Join(err, waitGroup(g, ctx))
		}
	}

	// Boot first: the unit is READY only once the node is in the swarm.
	status("booting")
	cfg.Persist = false
	res, err := bootLaunched(ctx, cfg, log, d.st, d.m)
	if err != nil {
		_ = n.Stopping()
		stopHelpers()
		return errors.Join(err, waitGroup(g, ctx))
	}
	d.m.inSwarm.Set(1)
	_ = n.Ready()
	status(fmt.Sprintf("in swarm as %s (node %s)", cfg.Role, res.NodeID))
	d.st.setOnStage(nil)

	dw, err := wireDrain(ctx, cfg, log, d.st, d.m)
	if err != nil {
		_ = n.Stopping()
		stopHelpers()
		return errors.Join(err, waitGroup(g, ctx))
	}
	defer dw.close()

	if swarm.Role(cfg.Role) == swarm.RoleManager {
		g.Go(func() error { return d.serveControl(gctx, dw) })
		g.Go(func() error { return d.leaderLoop(gctx, dw) })
	} else {
		g.Go(func() error { return d.labelSelf(gctx, dw) })
	}
	g.Go(func() error { return d.maintain(gctx, dw) })
	drainErr := make(chan error, 1)
	g.Go(func() error {
		err := d.watch(gctx, dw)
		drainErr <- err
		return errDone // ends the other loops: the node is gone
	})
	err = g.Wait()
	select {
	case derr := <-drainErr:
		if derr != nil {
			return derr
		}
	default:
	}
	// A SIGTERM without a termination notice is a clean stop (systemctl stop): exit 0.
	if err != nil && !errors.Is(err, errDone) && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// drainBeforeBoot asks instance metadata whether this instance is already terminating
// (scale-in, spot interruption) and, if so, resumes the drain (it skips what is done: a node
// that left is removed and its action completed) instead of booting. done is false when the
// instance is not terminating or metadata cannot tell (boot then reports its own errors).
func (d *daemon) drainBeforeBoot(ctx context.Context, cfg Config) (done bool, err error) {
	id, err := identity(ctx, cfg)
	if err != nil {
		return false, nil
	}
	n, ok := d.notice(ctx, id.InstanceID, false)
	if !ok {
		return false, nil
	}
	if n.Destination == lifecycle.DestinationWarmPool && !engineInSwarm(ctx, cfg) {
		return false, nil // an instance of the warm pool, not in the swarm: nothing to drain
	}
	d.log.Warn().Str("reason", n.Kind).Msg("this instance is terminating: resuming its drain instead of booting")
	d.st.stage("terminating (" + n.Kind + "): resuming the drain instead of booting")
	d.m.bootsSkipped.Inc()
	dw, err := wireDrain(ctx, cfg, d.log, d.st, d.m)
	if err != nil {
		return true, err
	}
	defer dw.close()
	stop := d.keepAlive()
	defer stop()
	_, err = runDrain(ctx, drainerFor(dw, n), n, d.m, d.log, d.st, dw.notifier)
	if err == nil && n.Destination == lifecycle.DestinationWarmPool {
		if err := d.wipeForPool(ctx, dw); !errors.Is(err, errLeftForPool) {
			return true, err
		}
		return false, nil // on into the warm pool
	}
	return true, err
}

// errDone ends the daemon's loops after the drain.
var errDone = errors.New("done")

func waitGroup(g *errgroup.Group, ctx context.Context) error {
	err := g.Wait()
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
