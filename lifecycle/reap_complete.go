package lifecycle

// The reaper's completions: lifecycle actions left behind by nodes already gone, and the
// removal of a reaped node.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// completeLeftBehind completes the actions still waiting Grace after their leaving node was
// removed, and forgets the instances whose action ended otherwise. An instance with a live
// node object again (it joined anew) is left to that node's own drain.
func (r *Reaper) completeLeftBehind(ctx context.Context, nodes []swarm.Node, now time.Time) []error {
	var errs []error
	for id, removed := range r.leftBehind {
		if now.Sub(removed.at) < r.Grace {
			continue
		}
		log := r.Log.With().Str("instance_id", id).Logger()
		if live, _ := nodesOf(nodes, id); len(live) > 0 {
			log.Warn().Str("node_id", live[0].ID).Str("reason", ReasonLiveNode).
				Msg("the removed leaving node's instance has a live node object: its lifecycle action is left to that node's drain")
			r.Observe.observe(EventRefused, ReasonLiveNode)
			delete(r.leftBehind, id)
			continue
		}
		a, err := r.Hook.Action(ctx, id)
		switch {
		case errors.Is(err, ErrNoHook):
			delete(r.leftBehind, id)
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("lifecycle action of removed leaving node's instance %s: %w", id, err))
			continue
		case a.State != StateTerminatingWait:
			delete(r.leftBehind, id)
			continue
		}
		if err := VerifyNode(ctx, r.Instances, removed.node); errors.Is(err, ErrIdentity) {
			log.Warn().Err(err).Str("node_id", removed.node.ID).Str("reason", ReasonIdentity).
				Msg("not completing the removed leaving node's lifecycle action: EC2 does not confirm the node was on the instance")
			r.Observe.observe(EventRefused, ReasonIdentity)
			delete(r.leftBehind, id)
			continue
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		log.Warn().Dur("since_removal", now.Sub(removed.at)).Msg("the removed leaving node's lifecycle action still waits: its agent did not complete it")
		if err := r.complete(ctx, id, a, log); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.leftBehind, id)
	}
	return errs
}

// complete ends the lifecycle action that holds a reaped node's instance with CONTINUE. An
// action no longer active (completed by the node's own agent or timed out) is not an error.
func (r *Reaper) complete(ctx context.Context, instanceID string, a HookAction, log zerolog.Logger) error {
	err := r.Hook.Complete(ctx, a.ASG, a.Hook, instanceID, ResultContinue)
	switch {
	case errors.Is(err, ErrNoAction):
		log.Info().Str("asg_name", a.ASG).Str("hook_name", a.Hook).Msg("lifecycle action of the reaped node already ended")
		return nil
	case err != nil:
		return fmt.Errorf("complete the lifecycle action of instance %s: %w", instanceID, err)
	}
	log.Info().Str("asg_name", a.ASG).Str("hook_name", a.Hook).Str("result", ResultContinue).Msg("lifecycle action of the reaped node completed")
	return nil
}

// reap demotes a manager and removes the node. It reports false without error while a
// demotion is under way; the next pass removes the node.
func (r *Reaper) reap(ctx context.Context, n swarm.Node, log zerolog.Logger) (bool, error) {
	if n.Role == swarm.RoleManager || n.Reachability != "" {
		if n.Role == swarm.RoleManager {
			nodes, err := r.Swarm.Nodes(ctx)
			if err != nil {
				return false, fmt.Errorf("list nodes: %w", err)
			}
			if err := CheckDemotion(nodes, n.ID); err != nil {
				return false, err
			}
			if err := r.Swarm.SetRole(ctx, n.ID, swarm.RoleWorker); err != nil {
				if errors.Is(err, ErrNoSuchNode) {
					return true, nil
				}
				return false, fmt.Errorf("demote: %w", err)
			}
			log.Info().Msg("demoted down manager")
		}
		if r.Registrar != nil && n.InstanceID() != "" {
			if err := r.Registrar.Deregister(ctx, swarm.Member{InstanceID: n.InstanceID(), Addr: n.Addr}); err != nil {
				log.Warn().Err(err).Msg("deregister down manager")
			}
		}
		now, err := r.Swarm.Node(ctx, n.ID)
		switch {
		case errors.Is(err, ErrNoSuchNode):
			return true, nil
		case err != nil:
			return false, fmt.Errorf("inspect after demotion: %w", err)
		case now.Role != swarm.RoleWorker || now.Reachability != "":
			log.Info().Msg("demotion under way: the node is removed on a later pass")
			return false, nil
		}
	}
	if err := r.Swarm.RemoveNode(ctx, n.ID, false); err != nil && !errors.Is(err, ErrNoSuchNode) {
		return false, fmt.Errorf("remove: %w", err)
	}
	return true, nil
}
