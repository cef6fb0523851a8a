package agent

// The leader's duties, run every 15 s while this manager leads.

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/bootstrap/daemonconfig"
	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/scaleout"
	"github.com/swarm-agent/swarm-agent/swarm"
)

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
	if h.m != nil {
		countCompletion(h.m.hookCompletions, result, err)
	}
	return err
}

// countCompletion counts one CompleteLifecycleAction in c by its result: the result sent when
// it was taken, "already" when the action had ended (ErrNoAction), nothing for other errors.
func countCompletion(c *prometheus.CounterVec, result string, err error) {
	switch {
	case err == nil:
		c.WithLabelValues(result).Inc()
	case errors.Is(err, lifecycle.ErrNoAction):
		c.WithLabelValues("already").Inc()
	}
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
