package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of NoticeHandler.
const (
	DefaultNoticePoll = time.Second
	// actionPoll is how often a handler asks Auto Scaling whether the action still waits.
	actionPoll = 5 * time.Second
)

// NoticeHandler is the leader's side of queue mode: it handles a termination notice (from
// the hook's queue) for another node of the cluster. The node's own agent drains it when it
// runs, since it sees the same termination in its instance metadata: the handler waits Grace
// for the agent to mark its node leaving, and drains the node on its behalf when nothing
// started, so that a node whose agent is dead is still drained and its action completed.
//
// The node is the one live node object labelled with the notice's instance id: several are
// ErrAmbiguous and nothing is done. Before draining on a node's behalf (heartbeats and the
// completion are AWS actions) EC2 must confirm that the node's address is the instance's
// (VerifyNode); otherwise the notice is refused with ErrIdentity.
type NoticeHandler struct {
	Swarm Swarm
	// Hook tells whether the instance's action still waits.
	Hook      Hook
	Instances Instances
	// Grace is how long the node's own agent has to start draining.
	Grace time.Duration
	// Wait bounds the wait for the node's own agent to finish; 0 means DefaultDrainDeadline
	// plus the drain's margin for the steps after the tasks.
	Wait time.Duration
	// Poll is how often the node list is read; 0 means DefaultNoticePoll.
	Poll time.Duration
	// DrainOnBehalf drains the notice's instance on its behalf: a Drainer with
	// DrainOptions.Remote and a RemoteLocal.
	DrainOnBehalf func(ctx context.Context, n Notice) error
	Observe       Observer
	Log           zerolog.Logger
}

// Handle deals with one notice; it is idempotent (a notice may come twice). An error leaves
// the notice for a later delivery.
func (h *NoticeHandler) Handle(ctx context.Context, n Notice) error {
	log := h.Log.With().Str("instance_id", n.InstanceID).Logger()
	poll := cmp.Or(h.Poll, DefaultNoticePoll)
	start := time.Now()
	for {
		nodes, err := h.Swarm.Nodes(ctx)
		if err != nil {
			return fmt.Errorf("notice for instance %s: list nodes: %w", n.InstanceID, err)
		}
		node, ok, err := NodeOfInstance(nodes, n.InstanceID)
		switch {
		case errors.Is(err, ErrAmbiguous):
			log.Error().Err(err).Str("reason", ReasonAmbiguous).Msg("refusing the notice: several live nodes carry its instance id")
			h.Observe.observe(EventRefused, ReasonAmbiguous)
			return err
		case err != nil:
			return err
		case !ok:
			// Not (or no longer) in the swarm: the drain removes its down node objects and
			// completes the action.
			log.Info().Msg("the instance has no live node: completing its action on its behalf")
			return h.onBehalf(ctx, n, nil, log)
		case node.Labels[LabelLeaving] != "":
			log.Info().Str("node_id", node.ID).Msg("the node's own agent is draining it")
			return h.waitActionEnds(ctx, n, log)
		case time.Since(start) >= h.Grace:
			log.Warn().Str("node_id", node.ID).Dur("waited", h.Grace).Msg("the node's own agent did not start draining: draining it on its behalf")
			return h.onBehalf(ctx, n, &node, log)
		}
		if !sleepCtx(ctx, poll) {
			return ctx.Err()
		}
	}
}

// onBehalf checks node's claim to the instance with EC2, then drains it on its behalf.
func (h *NoticeHandler) onBehalf(ctx context.Context, n Notice, node *Node, log zerolog.Logger) error {
	if node != nil {
		err := VerifyNode(ctx, h.Instances, *node)
		if errors.Is(err, ErrIdentity) {
			log.Error().Err(err).Str("node_id", node.ID).Str("reason", ReasonIdentity).Msg("refusing to drain the node on the instance's behalf")
			h.Observe.observe(EventRefused, ReasonIdentity)
		}
		if err != nil {
			return err
		}
	}
	return h.DrainOnBehalf(ctx, n)
}

// waitActionEnds keeps the notice until Auto Scaling no longer holds the instance, so that a
// node agent that dies mid-drain is taken over when the notice comes back.
func (h *NoticeHandler) waitActionEnds(ctx context.Context, n Notice, log zerolog.Logger) error {
	if h.Hook == nil {
		return nil
	}
	wait := cmp.Or(h.Wait, DefaultDrainDeadline+finishMargin)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		a, err := h.Hook.Action(ctx, n.InstanceID)
		if errors.Is(err, ErrNoHook) || err == nil && a.State != StateTerminatingWait {
			log.Info().Msg("the node's own agent finished")
			return nil
		}
		if !sleepCtx(ctx, actionPoll) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("instance %s still waits in %s after %s", n.InstanceID, StateTerminatingWait, wait)
}

// sleepCtx waits d or until ctx is done; it reports whether the wait completed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
