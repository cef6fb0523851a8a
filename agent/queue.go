package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap/daemonconfig"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/queue"
	"github.com/swarm-agent/swarm-agent/retry"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// queueConsumer runs the SQS consumer while ctx lasts (the leader loop cancels it when this
// manager stops leading). inst is EC2, which confirms a node's claim to an instance before
// the leader drains it on the instance's behalf.
func (d *daemon) queueConsumer(ctx context.Context, dw *drainWiring, inst lifecycle.Instances, ob *onBehalf) error {
	ac, err := dw.awsConfig(ctx, d.cfg)
	if err != nil {
		return err
	}
	scope := &lifecycle.ClusterScope{Cluster: d.cfg.Cluster, Tags: clusterTags{groups: dw.hook, instances: inst},
		Log: d.log.With().Str("component", "queue").Logger()}
	c, err := queue.New(sqs.NewFromConfig(ac), queue.Options{QueueURL: d.cfg.QueueURL, Owns: scope.Owns,
		Health: d.scheduledChanges(dw, inst, ob, scope),
		Log:    d.log.With().Str("component", "queue").Logger()})
	if err != nil {
		return &ConfigError{[]string{fmt.Sprintf("--queue-url (SWARM_AGENT_QUEUE_URL): %v", err)}}
	}
	d.log.Info().Str("queue_url", d.cfg.QueueURL).Msg("leader: consuming termination notices")
	return c.Run(ctx, func(ctx context.Context, n lifecycle.Notice) error { return d.handleNotice(ctx, dw, inst, ob, n) })
}

// clusterTags reads the tags that say which cluster a notice's instance or group is in:
// EC2's for the instance (none without an EC2 client), Auto Scaling's for the group.
type clusterTags struct {
	groups interface {
		GroupTags(ctx context.Context, name string) (map[string]string, bool, error)
	}
	instances lifecycle.Instances
}

func (c clusterTags) InstanceTags(ctx context.Context, id string) (map[string]string, bool, error) {
	it, ok := c.instances.(interface {
		InstanceTags(ctx context.Context, id string) (map[string]string, bool, error)
	})
	if !ok || it == nil {
		return nil, false, nil
	}
	return it.InstanceTags(ctx, id)
}

func (c clusterTags) GroupTags(ctx context.Context, name string) (map[string]string, bool, error) {
	return c.groups.GroupTags(ctx, name)
}

// handleNotice deals with one queued termination notice for any node of the cluster
// (lifecycle.NoticeHandler): the node's own agent drains it when it runs; the leader waits
// QueueGrace for that and drains the node itself when nothing started.
func (d *daemon) handleNotice(ctx context.Context, dw *drainWiring, inst lifecycle.Instances, ob *onBehalf, n lifecycle.Notice) error {
	log := d.log.With().Str("instance_id", n.InstanceID).Str("asg_name", n.ASG).Str("hook_name", n.Hook).Logger()
	if n.InstanceID == dw.identity.InstanceID {
		log.Info().Msg("queued notice for this node: its own agent handles it")
		return nil
	}
	if n.Kind == "launch" {
		h := &lifecycle.LaunchNoticeHandler{
			Swarm:      engineSwarm{dw.engine},
			Hook:       countedLaunch{dw.hook, d.m},
			Instances:  inst,
			WantLabels: func(n swarm.Node) map[string]string { return daemonconfig.NodeLabels(n.EngineLabels) },
			Grace:      d.cfg.QueueGrace,
			Observe:    d.m.observe,
			Log:        log,
		}
		return h.Handle(ctx, n)
	}
	h := &lifecycle.NoticeHandler{
		Swarm:     engineSwarm{dw.engine},
		Hook:      dw.hook,
		Instances: inst,
		Grace:     d.cfg.QueueGrace,
		Wait:      d.cfg.DrainDeadline + 5*time.Minute,
		DrainOnBehalf: func(ctx context.Context, n lifecycle.Notice) error {
			return ob.run(ctx, n.InstanceID, func(ctx context.Context) error { return d.drainOnBehalf(ctx, dw, n, log) })
		},
		Observe: d.m.observe,
		Log:     log,
	}
	return h.Handle(ctx, n)
}

// countedLaunch counts the launch completions of the leader's LaunchNoticeHandler.
type countedLaunch struct {
	lifecycle.LaunchHook
	m *metrics
}

func (h countedLaunch) Complete(ctx context.Context, asg, hook, instanceID, result string) error {
	err := h.LaunchHook.Complete(ctx, asg, hook, instanceID, result)
	if h.m != nil {
		countCompletion(h.m.launchHooks, result, err)
	}
	return err
}

// drainOnBehalf drains the notice's instance on its behalf: its node does not leave (its
// engine ends with the instance) and the reaper removes it once it is down.
func (d *daemon) drainOnBehalf(ctx context.Context, dw *drainWiring, n lifecycle.Notice, log zerolog.Logger) error {
	swarm := engineSwarm{dw.engine}
	dr := &lifecycle.Drainer{
		Swarm:     swarm,
		Local:     lifecycle.RemoteLocal{Swarm: swarm, InstanceID: n.InstanceID},
		Hook:      drainerFor(dw, n).Hook,
		Registrar: dw.drainer.Registrar,
		Capacity:  dw.hook,
		Log:       log.With().Str("component", "drain").Logger(),
		Options: lifecycle.DrainOptions{
			Deadline: d.cfg.DrainDeadline, OnTimeout: d.cfg.OnTimeout, HeartbeatOverride: d.cfg.HeartbeatEvery,
			InstanceID: n.InstanceID, Remote: true,
		},
	}
	_, err := runDrain(ctx, dr, n, d.m, log, nil, dw.notifier)
	if errors.Is(err, lifecycle.ErrAmbiguous) {
		d.m.observe(lifecycle.EventRefused, lifecycle.ReasonAmbiguous)
	}
	if err != nil && !errors.Is(err, lifecycle.ErrDrainTimeout) {
		return fmt.Errorf("drain instance %s on its behalf: %w", n.InstanceID, err)
	}
	return nil
}

// onBehalf runs the leader's drains on instances' behalf, at most one per instance at a time:
// the queue consumer (a notice, or the same notice delivered twice) and the reaper may both
// decide to take a node over.
type onBehalf struct {
	mu      sync.Mutex
	running map[string]chan struct{} // instance id -> closed when its drain ends
	wg      sync.WaitGroup
}

func newOnBehalf() *onBehalf { return &onBehalf{running: map[string]chan struct{}{}} }

// claim reserves the instance; when a drain for it runs already, it returns that drain's done
// channel and false.
func (o *onBehalf) claim(instanceID string) (chan struct{}, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if done, ok := o.running[instanceID]; ok {
		return done, false
	}
	done := make(chan struct{})
	o.running[instanceID] = done
	return done, true
}

func (o *onBehalf) release(instanceID string, done chan struct{}) {
	o.mu.Lock()
	delete(o.running, instanceID)
	o.mu.Unlock()
	close(done)
}

// run drains with drain, or waits for the drain of the instance that runs already.
func (o *onBehalf) run(ctx context.Context, instanceID string, drain func(context.Context) error) error {
	done, mine := o.claim(instanceID)
	if !mine {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer o.release(instanceID, done)
	return drain(ctx)
}

// start drains with drain in the background unless a drain of the instance runs already;
// wait waits for the drains start began.
func (o *onBehalf) start(ctx context.Context, instanceID string, drain func(context.Context) error, log zerolog.Logger) {
	done, mine := o.claim(instanceID)
	if !mine {
		return
	}
	o.wg.Go(func() {
		defer o.release(instanceID, done)
		if err := drain(ctx); err != nil {
			log.Error().Err(err).Str("instance_id", instanceID).Msg("leader: drain on the instance's behalf failed")
		}
	})
}

func (o *onBehalf) wait() { o.wg.Wait() }

// labelSelf puts this worker's instance id on its node through the managers' control API
// (a worker cannot label itself otherwise), so that the leader can find the node by instance
// id when a queued notice comes and the agent here is dead. It retries until done or ctx ends.
func (d *daemon) labelSelf(ctx context.Context, dw *drainWiring) error {
	for {
		nodeID, _, err := dw.engine.Self(ctx)
		if err == nil && nodeID != "" {
			err = dw.drainer.Swarm.SetNodeLabels(ctx, nodeID, map[string]string{swarm.LabelInstanceID: dw.identity.InstanceID})
			if err == nil {
				d.log.Info().Str("node_id", nodeID).Msg("node labelled with its instance id")
				return nil
			}
		}
		d.log.Debug().Err(err).Msg("label node with its instance id (will retry)")
		if !retry.Sleep(ctx, 5*time.Second) {
			return nil
		}
	}
}
