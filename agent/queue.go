package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/queue"
)

// queueConsumer runs the SQS consumer while ctx lasts (the leader loop cancels it when this
// manager stops leading). inst is EC2, which confirms a node's claim to an instance before
// the leader drains it on the instance's behalf.
func (d *daemon) queueConsumer(ctx context.Context, dw *drainWiring, inst lifecycle.Instances) error {
	ac, err := dw.awsConfig(ctx, d.cfg)
	if err != nil {
		return err
	}
	c, err := queue.New(sqs.NewFromConfig(ac), queue.Options{QueueURL: d.cfg.QueueURL,
		Log: d.log.With().Str("component", "queue").Logger()})
	if err != nil {
		return &ConfigError{[]string{fmt.Sprintf("--queue-url (SWARM_AGENT_QUEUE_URL): %v", err)}}
	}
	d.log.Info().Str("queue_url", d.cfg.QueueURL).Msg("leader: consuming termination notices")
	return c.Run(ctx, func(ctx context.Context, n lifecycle.Notice) error { return d.handleNotice(ctx, dw, inst, n) })
}

// handleNotice deals with one queued termination notice for any node of the cluster
// (lifecycle.NoticeHandler): the node's own agent drains it when it runs; the leader waits
// QueueGrace for that and drains the node itself when nothing started.
func (d *daemon) handleNotice(ctx context.Context, dw *drainWiring, inst lifecycle.Instances, n lifecycle.Notice) error {
	log := d.log.With().Str("instance_id", n.InstanceID).Str("asg_name", n.ASG).Str("hook_name", n.Hook).Logger()
	if n.InstanceID == dw.identity.InstanceID {
		log.Info().Msg("queued notice for this node: its own watch drains it")
		return nil
	}
	h := &lifecycle.NoticeHandler{
		Swarm:     engineSwarm{dw.engine},
		Hook:      dw.hook,
		Instances: inst,
		Grace:     d.cfg.QueueGrace,
		Wait:      d.cfg.DrainDeadline + 5*time.Minute,
		DrainOnBehalf: func(ctx context.Context, n lifecycle.Notice) error {
			return d.drainOnBehalf(ctx, dw, n, log)
		},
		Observe: d.m.observe,
		Log:     log,
	}
	return h.Handle(ctx, n)
}

// drainOnBehalf drains the notice's instance on its behalf: its node does not leave (its
// engine ends with the instance) and the reaper removes it once it is down.
func (d *daemon) drainOnBehalf(ctx context.Context, dw *drainWiring, n lifecycle.Notice, log zerolog.Logger) error {
	swarm := engineSwarm{dw.engine}
	dr := &lifecycle.Drainer{
		Swarm:     swarm,
		Local:     lifecycle.RemoteLocal{Swarm: swarm, InstanceID: n.InstanceID},
		Hook:      dw.hook,
		Registrar: dw.drainer.Registrar,
		Log:       log.With().Str("component", "drain").Logger(),
		Options: lifecycle.DrainOptions{
			Deadline: d.cfg.DrainDeadline, OnTimeout: d.cfg.OnTimeout, HeartbeatOverride: d.cfg.HeartbeatEvery,
			InstanceID: n.InstanceID, Remote: true,
		},
	}
	_, err := runDrain(ctx, dr, n, d.m, log, nil)
	if errors.Is(err, lifecycle.ErrAmbiguous) {
		d.m.observe(lifecycle.EventRefused, lifecycle.ReasonAmbiguous)
	}
	if err != nil && !errors.Is(err, lifecycle.ErrDrainTimeout) {
		return fmt.Errorf("drain instance %s on its behalf: %w", n.InstanceID, err)
	}
	return nil
}

// labelSelf puts this worker's instance id on its node through the managers' control API
// (a worker cannot label itself otherwise), so that the leader can find the node by instance
// id when a queued notice comes and the agent here is dead. It retries until done or ctx ends.
func (d *daemon) labelSelf(ctx context.Context, dw *drainWiring) error {
	for {
		nodeID, _, err := dw.engine.Self(ctx)
		if err == nil && nodeID != "" {
			err = dw.drainer.Swarm.SetNodeLabels(ctx, nodeID, map[string]string{lifecycle.LabelInstanceID: dw.identity.InstanceID})
			if err == nil {
				d.log.Info().Str("node_id", nodeID).Msg("node labelled with its instance id")
				return nil
			}
		}
		d.log.Debug().Err(err).Msg("label node with its instance id (will retry)")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}
