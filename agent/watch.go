package agent

// The member's watches while it runs: termination notices from instance metadata and the drain
// they start, scheduled maintenance events, and the engine kept running.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/imds"
)

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
