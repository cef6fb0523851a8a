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
// manager stops leading).
func (d *daemon) queueConsumer(ctx context.Context, dw *drainWiring) error {
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
	return c.Run(ctx, func(ctx context.Context, n lifecycle.Notice) error { return d.handleNotice(ctx, dw, n) })
}

// handleNotice deals with one queued termination notice for any node of the cluster. The
// node's own agent drains it when it runs (it sees the same termination in its instance
// metadata): the leader only waits for that, for QueueGrace, and drains the node itself when
// nothing started, so that a node whose agent is dead is still drained and its hook completed.
func (d *daemon) handleNotice(ctx context.Context, dw *drainWiring, n lifecycle.Notice) error {
	log := d.log.With().Str("instance_id", n.InstanceID).Str("asg_name", n.ASG).Str("hook_name", n.Hook).Logger()
	if n.InstanceID == dw.identity.InstanceID {
		log.Info().Msg("queued notice for this node: its own watch drains it")
		return nil
	}
	swarm := engineSwarm{dw.engine}
	local := lifecycle.RemoteLocal{Swarm: swarm, InstanceID: n.InstanceID}
	if started, err := d.ownAgentDraining(ctx, local, log); errors.Is(err, lifecycle.ErrAmbiguous) {
		log.Error().Err(err).Str("reason", lifecycle.ReasonAmbiguous).Msg("refusing the notice: several live nodes carry its instance id")
		d.m.observe(lifecycle.EventRefused, lifecycle.ReasonAmbiguous)
		return err
	} else if err != nil {
		return err
	} else if started {
		return d.waitActionEnds(ctx, dw, n, log)
	}
	log.Warn().Dur("waited", d.cfg.QueueGrace).Msg("the node's own agent did not start draining: draining it on its behalf")
	dr := &lifecycle.Drainer{
		Swarm:     swarm,
		Local:     local,
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

// ownAgentDraining waits up to QueueGrace for the node to be labelled leaving by its own agent.
func (d *daemon) ownAgentDraining(ctx context.Context, local lifecycle.RemoteLocal, log zerolog.Logger) (bool, error) {
	deadline := time.Now().Add(d.cfg.QueueGrace)
	for {
		id, _, err := local.Self(ctx)
		if err != nil {
			return false, err
		}
		if id == "" {
			return false, nil // not (or no longer) in the swarm: the drain completes the action
		}
		n, err := local.Swarm.Node(ctx, id)
		if err == nil && n.Labels[lifecycle.LabelLeaving] != "" {
			log.Info().Str("node_id", id).Msg("the node's own agent is draining it")
			return true, nil
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// waitActionEnds keeps the message until Auto Scaling no longer holds the instance, so that a
// node agent that dies mid-drain is taken over when the message comes back.
func (d *daemon) waitActionEnds(ctx context.Context, dw *drainWiring, n lifecycle.Notice, log zerolog.Logger) error {
	deadline := time.Now().Add(d.cfg.DrainDeadline + 5*time.Minute)
	for time.Now().Before(deadline) {
		a, err := dw.hook.Action(ctx, n.InstanceID)
		if errors.Is(err, lifecycle.ErrNoHook) || err == nil && a.State != lifecycle.StateTerminatingWait {
			log.Info().Msg("the node's own agent finished")
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
	return fmt.Errorf("instance %s still waits in Terminating:Wait after %s", n.InstanceID, d.cfg.DrainDeadline+5*time.Minute)
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
