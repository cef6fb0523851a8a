package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/retry"
	"github.com/swarm-agent/swarm-agent/swarm"
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
// started (ReasonNoAgent), so that a node whose agent is dead is still drained and its action
// completed. A started drain is watched, not trusted forever: when its progress
// (LabelProgress) stops for ProgressStale while the node is up, or the node left the swarm
// and the action still waits ProgressStale later, its agent died, and the handler takes the
// drain over (ReasonStale); the drain resumes from what the swarm shows.
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
	// plus the drain's margin for the steps after the tasks. A leaving node that reports no
	// progress at all (an older agent) is taken over once its mark is older than Wait.
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
	wait := cmp.Or(h.Wait, DefaultDrainDeadline+finishMargin)
	start := time.Now()
	deadline := start.Add(h.Grace + wait)
	watch := progressWatch{legacy: wait}
	var (
		draining  bool      // the node's own agent marked it leaving
		goneSince time.Time // since when a draining node shows no live node object
		looked    time.Time // when Auto Scaling was last asked
	)
	for {
		now := time.Now()
		if draining && now.Sub(looked) >= actionPoll {
			looked = now
			if ended, err := h.actionEnded(ctx, n); err != nil {
				log.Debug().Err(err).Msg("lifecycle action not read")
			} else if ended {
				log.Info().Msg("the node's own agent finished")
				return nil
			}
		}
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
		case !ok && !draining:
			// Not in the swarm: the drain removes its down node objects, if any, and
			// completes the action.
			log.Info().Msg("the instance has no live node: completing its action on its behalf")
			return h.onBehalf(ctx, n, nil, ReasonNoAgent, log)
		case !ok:
			// Its agent left the swarm and has its node removed and the action completed.
			if goneSince.IsZero() {
				goneSince = now
			}
			if now.Sub(goneSince) >= ProgressStale {
				log.Warn().Dur("elapsed", now.Sub(goneSince)).Str("reason", ReasonStale).
					Msg("the node left the swarm but its lifecycle action still waits: completing it on its behalf")
				return h.onBehalf(ctx, n, nil, ReasonStale, log)
			}
		case node.Labels[swarm.LabelLeaving] != "":
			goneSince = time.Time{}
			if !draining {
				draining = true
				log.Info().Str("node_id", node.ID).Msg("the node's own agent is draining it")
			}
			if stale, why := watch.stale(node, now); stale {
				log.Warn().Str("node_id", node.ID).Str("reason", ReasonStale).Msg(why + ": taking the drain over")
				return h.onBehalf(ctx, n, &node, ReasonStale, log)
			}
		case now.Sub(start) >= h.Grace:
			log.Warn().Str("node_id", node.ID).Dur("waited", now.Sub(start)).Str("reason", ReasonNoAgent).
				Msg("the node's own agent did not start draining (or took its mark back): draining it on its behalf")
			return h.onBehalf(ctx, n, &node, ReasonNoAgent, log)
		}
		if now.After(deadline) {
			return fmt.Errorf("instance %s still waits in %s after %s", n.InstanceID, StateTerminatingWait, now.Sub(start).Round(time.Second))
		}
		if !retry.Sleep(ctx, poll) {
			return ctx.Err()
		}
	}
}

// actionEnded reports whether Auto Scaling no longer holds the instance.
func (h *NoticeHandler) actionEnded(ctx context.Context, n Notice) (bool, error) {
	if h.Hook == nil {
		return false, nil
	}
	a, err := h.Hook.Action(ctx, n.InstanceID)
	switch {
	case errors.Is(err, ErrNoHook):
		return true, nil
	case err != nil:
		return false, err
	}
	return a.State != StateTerminatingWait, nil
}

// onBehalf checks node's claim to the instance with EC2, then drains it on its behalf
// (a takeover, for reason).
func (h *NoticeHandler) onBehalf(ctx context.Context, n Notice, node *swarm.Node, reason string, log zerolog.Logger) error {
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
	h.Observe.observe(EventTakeover, reason)
	return h.DrainOnBehalf(ctx, n)
}
