package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/swarm-agent/swarm-agent/agent/sdnotify"
	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/bootstrap/daemonconfig"
	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/imds"
	"github.com/swarm-agent/swarm-agent/lifecycle/scaleout"
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

// watch polls instance metadata until this node must go, then drains it. It returns nil
// when ctx ends without a notice (SIGTERM), and the drain's error after a drain.
func (d *daemon) watch(ctx context.Context, dw *drainWiring) error {
	t := time.NewTicker(d.cfg.WatchInterval)
	defer t.Stop()
	var keeper engineKeeper
	for {
		d.m.tick()
		d.notify.Alive()
		if n, ok := d.notice(ctx, dw.identity.InstanceID, d.cfg.DrainOnRebalance); ok {
			ev := d.log.Warn().Str("reason", n.Kind)
			if !n.Deadline.IsZero() {
				ev = ev.Time("deadline", n.Deadline)
			}
			ev.Msg("this node is terminating: draining")
			_ = d.notify.Status("draining: " + n.Kind)
			// The drain outlives ctx (its own deadline); keep the watchdog fed meanwhile.
			stop := d.keepAlive()
			_, err := runDrain(ctx, drainerFor(dw, n), n, d.m, d.log, d.st, dw.notifier)
			stop()
			if err == nil && n.Destination == lifecycle.DestinationWarmPool {
				return d.wipeForPool(ctx, dw)
			}
			_ = d.notify.Stopping()
			return err
		}
		keeper.watch(ctx, dw.engine, d.cfg.MinDockerVersion, d.log)
		select {
		case <-ctx.Done():
			_ = d.notify.Stopping()
			return nil
		case <-t.C:
		}
	}
}

// drainerFor is the drainer for notice n: a scheduled stop or retirement holds no lifecycle
// action (the instance stays in service in its group until EC2 stops it), so its drain looks
// for none.
func drainerFor(dw *drainWiring, n lifecycle.Notice) *lifecycle.Drainer {
	if n.Kind != lifecycle.EventInstanceStop && n.Kind != lifecycle.EventInstanceRetirement {
		return dw.drainer
	}
	dr := *dw.drainer
	dr.Hook = nil
	return &dr
}

// maintain keeps this node out of task placement around an EC2 scheduled reboot or host
// maintenance event of its instance (lifecycle.Maintainer): drained from --maintenance-lead
// before the event's window, active again once the event is over and the node is back. It
// asks the swarm only while such an event is due or the node carries its mark (after the
// reboot, this run's first pass finds the mark), so that a thousand workers do not poll the
// managers for nothing.
func (d *daemon) maintain(ctx context.Context, dw *drainWiring) error {
	lead := d.cfg.MaintenanceLead
	if lead <= 0 || d.imds == nil {
		return nil
	}
	m := &lifecycle.Maintainer{Swarm: dw.drainer.Swarm, Lead: lead,
		Log: d.log.With().Str("component", "maintenance").Logger(), Observe: d.m.observe}
	t := time.NewTicker(d.cfg.WatchInterval)
	defer t.Stop()
	pending := true // a mark left from before a reboot
	lastErr := ""
	for {
		evs, err := d.imds.ScheduledEvents(ctx)
		_, due := lifecycle.DueEvent(evs, time.Now(), lead, lifecycle.ScheduledEvent.Reboots)
		if err == nil && (due || pending) {
			var nodeID string
			if nodeID, _, err = dw.engine.Self(ctx); err == nil && nodeID != "" {
				var st lifecycle.MaintenanceState
				st, err = m.Pass(ctx, nodeID, evs, time.Now())
				if err == nil {
					pending = st.Marked
					switch {
					case st.Drained:
						d.st.update(func(s *Status) {
							s.Stage = fmt.Sprintf("drained for the scheduled %s from %s (%s)", st.Event.Code, st.Event.NotBefore.UTC().Format(time.RFC3339), st.Event.ID)
						})
					case st.Restored:
						d.st.update(func(s *Status) { s.Stage = fmt.Sprintf("in swarm as %s (node %s)", d.cfg.Role, nodeID) })
					}
				}
			}
		}
		if err != nil && ctx.Err() == nil && err.Error() != lastErr {
			d.log.Warn().Err(err).Msg("scheduled events: will retry")
		}
		if err != nil {
			lastErr = err.Error()
		} else {
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// engineKeeper starts docker.service again (systemd's D-Bus API, as boot does) when the engine
// stopped answering while the node is in service: stopped by hand, or dead past its unit's own
// restart limit. A node whose engine is down is a node the swarm has lost. It acts once the
// engine failed two watches in a row, and at most once a minute; where systemd does not run
// the machine it only says so.
type engineKeeper struct {
	down int
	last time.Time
}

func (k *engineKeeper) watch(ctx context.Context, e *engine.Engine, minVersion string, log zerolog.Logger) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := e.Check(cctx, minVersion)
	cancel()
	var ee *engine.Error
	if err == nil || !errors.As(err, &ee) || !ee.Down || ctx.Err() != nil {
		k.down = 0
		return
	}
	k.down++
	if k.down < 2 || time.Since(k.last) < time.Minute {
		return
	}
	k.last = time.Now()
	started, serr := startEngine(ctx)
	switch {
	case serr != nil:
		log.Error().Err(serr).Msg("the docker engine does not answer, and starting docker.service failed")
	case started:
		log.Warn().Err(err).Str("unit", "docker.service").Msg("the docker engine did not answer: started docker.service")
	default:
		log.Warn().Err(err).Msg("the docker engine does not answer (systemd does not run this machine: start it yourself)")
	}
}

// keepAlive marks the main loop alive while a long drain runs, until the returned stop.
func (d *daemon) keepAlive() func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				d.m.tick()
				d.notify.Alive()
			}
		}
	}()
	return func() { close(done); <-finished }
}

// notice reads the termination signals from instance metadata.
func (d *daemon) notice(ctx context.Context, id string, rebalance bool) (lifecycle.Notice, bool) {
	st, err := d.imds.TargetLifecycleState(ctx)
	switch {
	case err == nil && st == lifecycle.StateTerminated:
		return lifecycle.Notice{Kind: "scale-in", InstanceID: id, Source: "imds"}, true
	case err == nil && lifecycle.Warmed(st):
		// A scale-in returning the instance to the warm pool (ReuseOnScaleIn): the node
		// drains and leaves as for a termination, then waits in the pool.
		return lifecycle.Notice{Kind: "scale-in", InstanceID: id, Source: "imds", Destination: lifecycle.DestinationWarmPool}, true
	case err != nil && !errors.Is(err, imds.ErrNotFound) && ctx.Err() == nil:
		d.log.Debug().Err(err).Msg("read target lifecycle state")
	}
	sa, err := d.imds.SpotInstanceAction(ctx)
	switch {
	case err == nil && sa.Action == "terminate" || err == nil && sa.Action == "stop" || err == nil && sa.Action == "hibernate":
		return lifecycle.Notice{Kind: "spot", InstanceID: id, Source: "imds", Deadline: sa.Time}, true
	case err != nil && !errors.Is(err, imds.ErrNotFound) && ctx.Err() == nil:
		d.log.Warn().Err(err).Msg("read spot instance action")
	}
	if lead := d.cfg.MaintenanceLead; lead > 0 {
		evs, err := d.imds.ScheduledEvents(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("read scheduled events")
		}
		if ev, ok := lifecycle.DueEvent(evs, time.Now(), lead, lifecycle.ScheduledEvent.Stops); ok {
			d.log.Warn().Str("reason", ev.Code).Str("value", ev.ID).Time("deadline", ev.NotBefore).
				Msg("scheduled " + ev.Code + ": the instance stops in its window; draining the node out of the swarm before it")
			n := lifecycle.Notice{Kind: ev.Code, InstanceID: id, Source: "imds"}
			if ev.NotBefore.After(time.Now()) {
				n.Deadline = ev.NotBefore
			}
			return n, true
		}
	}
	if rebalance {
		at, err := d.imds.RebalanceRecommendation(ctx)
		switch {
		case err == nil:
			d.log.Info().Time("notice_time", at).Msg("rebalance recommendation")
			return lifecycle.Notice{Kind: "rebalance", InstanceID: id, Source: "imds"}, true
		case !errors.Is(err, imds.ErrNotFound) && ctx.Err() == nil:
			d.log.Warn().Err(err).Msg("read rebalance recommendation")
		}
	}
	return lifecycle.Notice{}, false
}

// leaderLoop runs the leader's duties every 15 s while this manager leads: keep its own
// registration true, copy the engine labels the agents set into node labels (az,
// instance-type, workload=...: usable in placement constraints), reap nodes that died and
// their ghosts, take over the drains of nodes whose agent stopped (and, with --queue-url,
// consume the termination notices), and keep scale-in protection on the managers whose loss
// would cost quorum. Every AWS action on another node's behalf waits for EC2 to confirm the
// node's instance.
func (d *daemon) leaderLoop(ctx context.Context, dw *drainWiring) error {
	// EC2 confirms a node's claim to an instance before any AWS action on its behalf.
	inst, err := ec2Instances(ctx, dw, d.cfg)
	if err != nil {
		d.log.Error().Err(err).Msg("leader: no EC2 client: no lifecycle action will be completed on another node's behalf")
	}
	// Drains on instances' behalf (queue notices, the reaper's takeovers), one per instance;
	// they run to their own deadline and are waited for when this loop ends.
	ob := newOnBehalf()
	defer ob.wait()
	reaper := &lifecycle.Reaper{
		Swarm:     engineSwarm{dw.engine},
		Hook:      countedHook{dw.hook, d.m},
		Instances: inst,
		Grace:     d.cfg.ReapGrace,
		Log:       d.log.With().Str("component", "reaper").Logger(),
		Observe:   d.m.observe,
		TakeOver: func(ctx context.Context, n lifecycle.Notice) {
			log := d.log.With().Str("instance_id", n.InstanceID).Str("asg_name", n.ASG).Str("hook_name", n.Hook).Logger()
			ob.start(ctx, n.InstanceID, func(ctx context.Context) error { return d.drainOnBehalf(ctx, dw, n, log) }, log)
		},
	}
	if dw.drainer.Registrar != nil {
		reaper.Registrar = dw.drainer.Registrar
	}
	protector := &lifecycle.Protector{Swarm: engineSwarm{dw.engine}, ASG: dw.hook, Instances: inst,
		Log: d.log.With().Str("component", "protection").Logger(), Observe: d.m.observe}
	var health *lifecycle.Health
	if st, ok := inst.(lifecycle.Statuses); ok && st != nil {
		health = &lifecycle.Health{Swarm: engineSwarm{dw.engine}, Status: st, Instances: inst,
			Log: d.log.With().Str("component", "health").Logger(), Observe: d.m.observe}
	}
	scaler := &scaleout.Scaler{Swarm: engineServices{dw.engine}, Options: scaleOptions(d.cfg),
		Log: d.log.With().Str("component", "scale-out").Logger(), Observe: d.m.scaled}
	scaleErr, planned := "", false
	// The queue consumer runs only while this manager leads.
	var stopQueue func()
	defer func() {
		if stopQueue != nil {
			stopQueue()
		}
	}()
	leading := func(yes bool) {
		if !yes && planned { // the plan in the status is another leader's business now
			d.st.update(func(st *Status) { st.Scaling = nil })
			planned = false
		}
		switch {
		case yes && stopQueue == nil && d.cfg.QueueURL != "":
			qctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := d.queueConsumer(qctx, dw, inst, ob); err != nil && qctx.Err() == nil {
					d.log.Error().Err(err).Msg("leader: queue consumer stopped")
				}
			}()
			stopQueue = func() { cancel(); <-done }
		case !yes && stopQueue != nil:
			stopQueue()
			stopQueue = nil
		}
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		nodeID, isMgr, err := dw.engine.Self(ctx)
		if err != nil || !isMgr || nodeID == "" {
			leading(false)
			continue
		}
		n, err := dw.engine.Node(ctx, nodeID)
		if err != nil || !n.Leader {
			leading(false)
			continue
		}
		leading(true)
		// Scale-out every tick: a leaving node's drain waits for its resize.
		scaleErr, planned = d.scaleOut(ctx, scaler, scaleErr), true
		if time.Since(last) < 15*time.Second {
			continue
		}
		last = time.Now()
		if err := d.keepDNS(ctx, dw); err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("leader: keep the managers' record true")
		}
		if published, cid, err := bootstrap.PublishTokens(ctx, dw.engine, dw.deps.Tokens); err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("leader: keep the published join tokens current")
		} else if published {
			d.m.tokensRepublished.Inc()
			d.log.Info().Str("cluster_id", cid).Msg("leader: join tokens changed (rotated, or the store was behind): republished")
		}
		if d.cfg.Autolock {
			d.keepAutolock(ctx, dw.wiring)
		}
		if err := copyNodeLabels(ctx, dw.engine); err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("leader: copy engine labels to node labels")
		}
		removed, err := reaper.Reap(ctx, time.Now())
		if err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("leader: reap dead nodes")
		}
		d.m.reaped.Add(float64(len(removed)))
		if nodes, err := protector.Swarm.Nodes(ctx); err == nil {
			err = protector.Pass(ctx, nodes)
			if err != nil && ctx.Err() == nil {
				d.log.Warn().Err(err).Msg("leader: keep scale-in protection on the managers quorum needs")
			}
			if health != nil {
				if err := health.Pass(ctx, nodes); err != nil && ctx.Err() == nil {
					d.log.Warn().Err(err).Msg("leader: drain the nodes of instances whose status checks fail")
				}
			}
		}
	}
}

// scaleOut runs one pass of the leader's scale-out, records its plan in the status and
// reports an error when it differs from the last one (prev), which it returns.
func (d *daemon) scaleOut(ctx context.Context, s *scaleout.Scaler, prev string) string {
	now := time.Now()
	p, err := s.Pass(ctx, now)
	if lines := p.Lines(now); len(lines) > 0 || len(d.st.snapshot().Scaling) > 0 {
		d.st.update(func(st *Status) { st.Scaling = lines })
	}
	msg := ""
	if err != nil && ctx.Err() == nil {
		msg = err.Error()
		if msg != prev {
			d.log.Warn().Err(err).Msg("leader: scale-out (rebalances, replicas per node)")
		}
	}
	return msg
}

// countedHook counts the reaper's lifecycle completions in the metrics the drains use.
type countedHook struct {
	lifecycle.Hook
	m *metrics
}

func (h countedHook) Complete(ctx context.Context, asg, hook, instanceID, result string) error {
	err := h.Hook.Complete(ctx, asg, hook, instanceID, result)
	switch {
	case h.m == nil:
	case err == nil:
		h.m.hookCompletions.WithLabelValues(result).Inc()
	case errors.Is(err, lifecycle.ErrNoAction):
		h.m.hookCompletions.WithLabelValues("already").Inc()
	}
	return err
}

// copyNodeLabels sets, on every node, the node labels derived from the engine labels its agent
// wrote (daemonconfig.NodeLabels) where they are missing or differ.
func copyNodeLabels(ctx context.Context, e *engine.Engine) error {
	nodes, err := e.Nodes(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		want := daemonconfig.NodeLabels(n.EngineLabels)
		maps.DeleteFunc(want, func(k, v string) bool { return n.Labels[k] == v })
		if len(want) == 0 {
			continue
		}
		if err := e.SetNodeLabels(ctx, n.ID, want); err != nil && !engine.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// keepDNS makes discovery say what the swarm says: the live managers (ready and reachable,
// labelled with their instance id), with this leader first.
func (d *daemon) keepDNS(ctx context.Context, dw *drainWiring) error {
	self := swarm.Member{InstanceID: dw.identity.InstanceID, Addr: dw.identity.PrivateIP, Port: d.cfg.SwarmPort}
	r, ok := dw.deps.Registrar.(discovery.Reconciler)
	if !ok {
		if dw.deps.Registrar == nil {
			return nil
		}
		return dw.deps.Registrar.Register(ctx, self)
	}
	nodes, err := dw.engine.Nodes(ctx)
	if err != nil {
		return err
	}
	live := []swarm.Member{self}
	for _, n := range nodes {
		if n.Role != swarm.RoleManager || n.State != "ready" || n.Reachability != "reachable" || n.Leader {
			continue
		}
		if n.Labels[swarm.LabelLeaving] != "" || n.InstanceID() == "" || n.Addr == "" {
			continue
		}
		live = append(live, swarm.Member{InstanceID: n.InstanceID(), Addr: n.Addr, Port: d.cfg.SwarmPort})
	}
	return r.Reconcile(ctx, self, live)
}
