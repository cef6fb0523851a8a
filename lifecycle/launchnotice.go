package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/retry"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// Defaults of LaunchNoticeHandler.
const (
	// DefaultLaunchWatch is how long a launch notice's instance is watched for its node.
	DefaultLaunchWatch = 30 * time.Minute
	// ReasonLaunch is the reason of an EventTakeover that completes an instance's launch
	// lifecycle action on its behalf.
	ReasonLaunch = "launch"
)

// LaunchNoticeHandler is the leader's side of launch hooks in queue mode: for a launch notice
// of another instance of the cluster it completes the launch lifecycle action with CONTINUE
// on the instance's behalf once its node is in the swarm (InSwarm) and its own agent has not
// completed it within Grace, the node's claim to the instance confirmed by EC2 (VerifyNode):
// an agent that died after the join, or whose instance profile lacks
// autoscaling:CompleteLifecycleAction, does not leave a node in the swarm to be terminated by
// the hook's default result. It never abandons: a node that never joins is its own agent's to
// abandon, or the hook's timeout's. An instance launched into a warm pool does not join; its
// notice is done at once.
type LaunchNoticeHandler struct {
	Swarm     Swarm
	Hook      LaunchHook
	Instances Instances
	// WantLabels are the node labels a node's engine labels call for (InSwarm's want); nil
	// wants none.
	WantLabels func(swarm.Node) map[string]string
	// Grace is how long the node's own agent has to complete the action once its node is in
	// the swarm.
	Grace time.Duration
	// Wait bounds the whole watch; 0 means DefaultLaunchWatch.
	Wait time.Duration
	// Poll is how often the node list is read; 0 means DefaultNoticePoll.
	Poll    time.Duration
	Observe Observer
	Log     zerolog.Logger
}

// Handle deals with one launch notice; it is idempotent. It returns nil once the action is no
// longer waiting (completed by the node's agent or here, or timed out) or Wait has passed;
// an error leaves the notice for a later delivery.
func (h *LaunchNoticeHandler) Handle(ctx context.Context, n Notice) error {
	log := h.Log.With().Str("instance_id", n.InstanceID).Str("asg_name", n.ASG).Str("hook_name", n.Hook).Logger()
	if n.Destination == "WarmPool" {
		log.Debug().Msg("launch notice of an instance entering the warm pool: it does not join the swarm")
		return nil
	}
	poll := cmp.Or(h.Poll, DefaultNoticePoll)
	deadline := time.Now().Add(cmp.Or(h.Wait, DefaultLaunchWatch))
	var (
		inSince time.Time // since when the node shows in the swarm
		looked  time.Time
	)
	for {
		now := time.Now()
		if now.Sub(looked) >= actionPoll {
			looked = now
			a, err := h.Hook.LaunchAction(ctx, n.InstanceID)
			switch {
			case errors.Is(err, ErrNoHook), errors.Is(err, ErrAmbiguousHook):
				log.Info().Err(err).Msg("launch notice: no launch action to watch")
				return nil
			case err != nil:
				log.Debug().Err(err).Msg("launch action not read")
			case !LaunchWaiting(a.State) && !launchComing(a.State):
				log.Info().Str("state", a.State).Msg("launch notice: the action is over")
				return nil
			}
		}
		nodes, err := h.Swarm.Nodes(ctx)
		if err != nil {
			return err
		}
		node, ok, err := NodeOfInstance(nodes, n.InstanceID)
		switch {
		case errors.Is(err, ErrAmbiguous):
			log.Error().Err(err).Str("reason", ReasonAmbiguous).Msg("refusing the launch notice: several live nodes carry its instance id")
			h.Observe.observe(EventRefused, ReasonAmbiguous)
			return nil
		case err != nil:
			return err
		}
		in := false
		if ok {
			var want map[string]string
			if h.WantLabels != nil {
				want = h.WantLabels(node)
			}
			in, _ = InSwarm(node, node.Role, n.InstanceID, want, true)
		}
		switch {
		case !in:
			inSince = time.Time{}
		case inSince.IsZero():
			inSince = now
		case now.Sub(inSince) >= h.Grace:
			return h.onBehalf(ctx, n, node, log)
		}
		if now.After(deadline) {
			log.Warn().Msg("launch notice: the node did not come into the swarm while watched; the hook's own timeout decides")
			return nil
		}
		if !retry.Sleep(ctx, poll) {
			return ctx.Err()
		}
	}
}

// onBehalf checks node's claim to the instance with EC2 and completes the launch action with
// CONTINUE.
func (h *LaunchNoticeHandler) onBehalf(ctx context.Context, n Notice, node swarm.Node, log zerolog.Logger) error {
	if err := VerifyNode(ctx, h.Instances, node); err != nil {
		if errors.Is(err, ErrIdentity) {
			log.Error().Err(err).Str("node_id", node.ID).Str("reason", ReasonIdentity).Msg("refusing to complete the launch action on the instance's behalf")
			h.Observe.observe(EventRefused, ReasonIdentity)
			return nil
		}
		return err
	}
	a, err := h.Hook.LaunchAction(ctx, n.InstanceID)
	switch {
	case errors.Is(err, ErrNoHook), errors.Is(err, ErrAmbiguousHook):
		return nil
	case err != nil:
		return err
	case !LaunchWaiting(a.State):
		return nil
	}
	h.Observe.observe(EventTakeover, ReasonLaunch)
	err = h.Hook.Complete(ctx, a.ASG, a.Hook, n.InstanceID, ResultContinue)
	switch {
	case errors.Is(err, ErrNoAction):
		log.Info().Msg("the launch action was completed meanwhile")
		return nil
	case err != nil:
		return err
	}
	log.Info().Str("node_id", node.ID).Str("result", ResultContinue).Dur("grace", h.Grace).
		Msg("the node is in the swarm and its own agent did not complete its launch action: completed on its behalf")
	return nil
}
