package lifecycle

// The drain's membership steps: where the node stands in the swarm, the managers' leaving
// turn, demotion, deregistration, leaving and removing the node object.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/swarm-agent/swarm-agent/retry"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func (r *drainRun) self(ctx context.Context) (nodeID string, manager bool, err error) {
	err = r.retry(ctx, "find this node", func(ctx context.Context) error {
		nodeID, manager, err = r.d.Local.Self(ctx)
		return err
	})
	return nodeID, manager, err
}

// inSwarm runs the sequence for a node whose engine is still in the swarm.
func (r *drainRun) inSwarm(ctx context.Context, nodeID string, engineManager bool) error {
	t := time.Now()
	var node swarm.Node
	err := r.retry(ctx, "inspect node "+nodeID, func(ctx context.Context) (err error) {
		node, err = r.d.Swarm.Node(ctx, nodeID)
		return err
	})
	if errors.Is(err, ErrNoSuchNode) {
		// Removed by a manager while the engine still thinks it is in the swarm.
		r.rep.NodeID = nodeID
		r.record(StepRemove, OutcomeSkipped, "node "+nodeID+" already removed from the swarm", t)
		return r.leave(r.startHook(ctx), false)
	}
	if err != nil {
		return err
	}
	if id := node.InstanceID(); id != "" && id != r.instanceID {
		return fmt.Errorf("node %s is labelled instance %s, not %s: %w", nodeID, id, r.instanceID, ErrNotAllowed)
	}
	r.rep.NodeID, r.rep.Role = node.ID, node.Role
	r.log = r.log.With().Str("node_id", node.ID).Str("role", string(node.Role)).Logger()
	wasManager := node.Role == swarm.RoleManager || engineManager || node.Labels[swarm.LabelLeavingRole] == string(swarm.RoleManager)

	// Mark first, then keep the mark's progress fresh for as long as the drain runs here.
	since, fresh, err := r.mark(ctx, node, wasManager)
	if err != nil {
		return err
	}
	r.startProgress(ctx, node.ID, !fresh)
	ctx = r.startHook(ctx)

	// Refuse before changing more when a manager may not go; a mark this run made is taken
	// back, so that a refused drain leaves no mark behind. Managers leave one at a time: the
	// check waits for this manager's turn.
	last := false
	if node.Role == swarm.RoleManager {
		t := time.Now()
		waited, err := r.waitTurn(ctx, node, since)
		if err == nil {
			err = r.checkDemotion(ctx, nodeID)
		}
		switch {
		case errors.Is(err, ErrLastManager) && r.opts.Force:
			last = true
			r.record(StepQuorum, OutcomeDone, "the last manager, forced: it leaves with force and nothing removes its node", t)
		case err != nil:
			r.record(StepQuorum, OutcomeFailed, err.Error(), t)
			if fresh && (errors.Is(err, ErrNoQuorum) || errors.Is(err, ErrLastManager)) {
				r.unmark(ctx, node.ID)
			}
			return err
		default:
			r.record(StepQuorum, OutcomeDone, "the other managers keep quorum"+waited, t)
		}
	}

	if err := r.drainTasks(ctx, node, since); err != nil {
		return err
	}
	r.waitRelease(ctx, node.ID)
	if node.Role == swarm.RoleManager && !last {
		r.waitReplacement(ctx, node.ID, since)
	}
	demoting := node.Role == swarm.RoleWorker && (engineManager || node.Reachability != "")
	if (node.Role == swarm.RoleManager && !last) || demoting {
		if err := r.demote(ctx, node); err != nil {
			return err
		}
	}
	if wasManager {
		r.deregister(ctx, node)
	}
	if r.opts.Remote {
		now := time.Now()
		r.record(StepLeave, OutcomeSkipped, "drained on the node's behalf: its engine ends with the instance", now)
		r.record(StepRemove, OutcomeSkipped, "left to the reaper: the node is labelled leaving and goes once it shows down", now)
		return r.timeoutErr(nodeID)
	}
	r.stopProgress() // a node that left cannot label itself any more
	if err := r.leave(ctx, last); err != nil {
		return err
	}
	if last {
		r.record(StepRemove, OutcomeSkipped, "the last manager left: no manager is left to remove its node", time.Now())
	} else {
		r.remove(ctx, []string{nodeID})
	}
	return r.timeoutErr(nodeID)
}

// timeoutErr is ErrDrainTimeout when the tasks did not move in time and the operator chose
// to abandon.
func (r *drainRun) timeoutErr(nodeID string) error {
	if r.timedOut && r.opts.OnTimeout == OnTimeoutAbandon {
		return fmt.Errorf("tasks of node %s had not moved within %s: %w", nodeID, r.opts.Deadline, ErrDrainTimeout)
	}
	return nil
}

// waitTurn waits until this manager has the turn to leave the managers (turnOf: one at a
// time) and the others keep quorum without it, at most until the task deadline counted from
// since, and says what it waited for. Still waiting at that bound is ErrNoQuorum: two
// managers leaving at once must not count on each other to stay, and a manager does not go
// while too few others are reachable. The last manager is ErrLastManager at once.
func (r *drainRun) waitTurn(ctx context.Context, node swarm.Node, since time.Time) (string, error) {
	start := time.Now()
	until := since.Add(r.opts.Deadline)
	watch := progressWatch{legacy: r.opts.Deadline + finishMargin}
	mine := node.Labels[swarm.LabelTurn] != "" // a resumed drain had it
	waited := ""
	for {
		var nodes []swarm.Node
		err := r.retry(ctx, "list nodes", func(ctx context.Context) (err error) {
			nodes, err = r.d.Swarm.Nodes(ctx)
			return err
		})
		if err != nil {
			return "", err
		}
		now := time.Now()
		next, holders := turnOf(nodes, node.ID, since, mine, func(n swarm.Node) bool {
			stale, _ := watch.stale(n, now)
			return !stale
		})
		var detail string
		switch next {
		case turnGo:
			// Its turn: it goes when the others keep quorum without it; while a manager is
			// down (it may come back, or the reaper removes it once its instance is gone) it
			// waits rather than refuses at once. Being the last manager is no wait.
			err := CheckDemotion(nodes, node.ID)
			switch {
			case err == nil && waited == "":
				return "", nil
			case err == nil:
				return fmt.Sprintf(" (%s for %s)", waited, time.Since(start).Round(time.Second)), nil
			case !errors.Is(err, ErrNoQuorum):
				return "", err
			}
			detail = "waiting for quorum without this manager: " + err.Error()
		case turnClaim, turnYield:
			value := progressValue(now)
			if next == turnYield {
				value = ""
			}
			err := r.retry(ctx, "label node "+node.ID+" with its turn to leave the managers", func(ctx context.Context) error {
				return r.d.Swarm.SetNodeLabels(ctx, node.ID, map[string]string{swarm.LabelTurn: value})
			})
			if err != nil {
				return "", err
			}
			mine = next == turnClaim
			if mine {
				continue // look again: another may have claimed it at the same time
			}
		}
		if detail == "" {
			ids := make([]string, len(holders))
			for i, n := range holders {
				ids[i] = n.ID
			}
			detail = "waiting for manager " + strings.Join(ids, ", ") + " to leave the managers first"
		}
		if !now.Before(until) {
			return "", fmt.Errorf("node %s: %s after %s: %w", node.ID, detail, time.Since(start).Round(time.Second), ErrNoQuorum)
		}
		if detail != waited {
			r.log.Info().Str("action", StepQuorum).Msg(detail)
			waited = detail
		}
		if !retry.Sleep(ctx, min(r.opts.Poll, time.Until(until))) {
			return "", fmt.Errorf("node %s: %s: %w", node.ID, detail, context.Cause(ctx))
		}
	}
}

func (r *drainRun) checkDemotion(ctx context.Context, nodeID string) error {
	var nodes []swarm.Node
	err := r.retry(ctx, "list nodes", func(ctx context.Context) (err error) {
		nodes, err = r.d.Swarm.Nodes(ctx)
		return err
	})
	if err != nil {
		return err
	}
	return CheckDemotion(nodes, nodeID)
}

// demote demotes the node (unless an earlier run did) and waits until it shows as a worker
// and another manager leads.
func (r *drainRun) demote(ctx context.Context, node swarm.Node) error {
	t := time.Now()
	if node.Role == swarm.RoleManager {
		// The drain took a while: look at quorum again right before the demotion.
		if err := r.checkDemotion(ctx, node.ID); err != nil {
			r.record(StepDemote, OutcomeFailed, err.Error(), t)
			return err
		}
		err := r.retry(ctx, "demote node "+node.ID, func(ctx context.Context) error {
			return r.d.Swarm.SetRole(ctx, node.ID, swarm.RoleWorker)
		})
		if err != nil {
			r.record(StepDemote, OutcomeFailed, err.Error(), t)
			return err
		}
	}
	until := time.Now().Add(demoteWait)
	if end, ok := ctx.Deadline(); ok {
		until = earliest(until, end.Add(-completeReserve))
	}
	ok, detail, err := r.waitFor(ctx, "demotion", until, func(ctx context.Context) (bool, string, error) {
		return r.demoted(ctx, node.ID)
	})
	if !ok {
		err = fmt.Errorf("node %s demoted but not yet a worker after %s (%s): %w", node.ID, time.Since(t).Round(time.Second), detail,
			cmp.Or(err, context.Cause(ctx), error(errors.New("gave up"))))
		r.record(StepDemote, OutcomeFailed, err.Error(), t)
		return err
	}
	r.record(StepDemote, OutcomeDone, detail, t)
	return nil
}

// demoted reports whether the node shows as a worker to the swarm and to its own engine,
// and another manager leads.
func (r *drainRun) demoted(ctx context.Context, nodeID string) (bool, string, error) {
	nodes, err := r.d.Swarm.Nodes(ctx)
	if err != nil {
		return false, "", err
	}
	leader := ""
	for _, n := range nodes {
		switch {
		case n.ID == nodeID && (n.Role != swarm.RoleWorker || n.Leader || n.Reachability != ""):
			return false, "still a raft member", nil
		case n.ID != nodeID && n.Leader:
			leader = n.ID
		}
	}
	if leader == "" {
		return false, "waiting for another manager to lead", nil
	}
	_, manager, err := r.d.Local.Self(ctx)
	if err != nil {
		return false, "", err
	}
	if manager {
		return false, "the engine still acts as a manager", nil
	}
	return true, "a worker; node " + leader + " leads", nil
}

// deregister withdraws a manager from discovery. A failure is reported, not fatal: the
// leader keeps the managers' records true and drops this one once the node is gone.
func (r *drainRun) deregister(ctx context.Context, node swarm.Node) {
	t := time.Now()
	if r.d.Registrar == nil {
		r.record(StepDeregister, OutcomeSkipped, "no discovery to deregister from", t)
		return
	}
	addr := cmp.Or(r.opts.Addr, node.Addr)
	err := r.retry(ctx, "deregister "+r.instanceID+" at "+addr, func(ctx context.Context) error {
		return r.d.Registrar.Deregister(ctx, swarm.Member{InstanceID: r.instanceID, Addr: addr})
	})
	if err != nil {
		r.record(StepDeregister, OutcomeFailed, err.Error(), t)
		return
	}
	r.record(StepDeregister, OutcomeDone, "deregistered "+addr, t)
}

func (r *drainRun) leave(ctx context.Context, force bool) error {
	t := time.Now()
	err := r.retry(ctx, "leave the swarm", func(ctx context.Context) error {
		return r.d.Local.Leave(ctx, force)
	})
	if err != nil {
		// A Leave that failed may still have happened (or an earlier one did).
		if id, _, serr := r.d.Local.Self(ctx); serr != nil || id != "" {
			r.record(StepLeave, OutcomeFailed, err.Error(), t)
			return err
		}
	}
	r.record(StepLeave, OutcomeDone, fmt.Sprintf("left the swarm (force %t)", force), t)
	return nil
}

// removeLeft is the resumed sequence of a node that left the swarm already: remove the
// node objects labelled with this instance's id. Failures are reported, not fatal: all
// that is left to do is completing the action, and a worker that left may not reach the
// managers any more (its node certificate went with it); the reaper removes the node.
func (r *drainRun) removeLeft(ctx context.Context) {
	t := time.Now()
	var nodes []swarm.Node
	err := r.retry(ctx, "list nodes", func(ctx context.Context) (err error) {
		nodes, err = r.d.Swarm.Nodes(ctx)
		return err
	})
	if err != nil {
		r.record(StepRemove, OutcomeFailed, err.Error()+": the reaper removes the node once it is down", t)
		return
	}
	var ids []string
	for _, n := range nodes {
		if n.InstanceID() == r.instanceID {
			ids = append(ids, n.ID)
		}
	}
	if len(ids) == 0 {
		r.record(StepRemove, OutcomeSkipped, "no node is labelled with this instance: removed already", t)
		return
	}
	r.rep.NodeID = ids[0]
	r.log = r.log.With().Str("node_id", ids[0]).Logger()
	r.remove(ctx, ids)
}

// remove has a manager remove the nodes of this node, which has left the swarm. It asks
// for a forced removal first: the managers allow it for a node that drained and is marked
// leaving, so the node goes at once instead of when the managers see it down (its heartbeat
// timeout, about 15 s). When that is refused (a manager from before forced removals, or a
// node not marked) it falls back to the unforced removal, retried until the node shows down;
// when the managers cannot be reached it keeps asking for both. A node still there at the
// bound is reported, not fatal: it is labelled leaving, and the leader's reaper removes such
// nodes as soon as they are down.
func (r *drainRun) remove(ctx context.Context, ids []string) {
	t := time.Now()
	until := time.Now().Add(removeWait)
	if end, ok := ctx.Deadline(); ok {
		until = earliest(until, end.Add(-completeReserve))
	}
	for _, id := range ids {
		forced := true
		ok, detail, err := r.waitFor(ctx, "removal of node "+id, until, func(ctx context.Context) (bool, string, error) {
			if forced {
				err := r.d.Swarm.RemoveNode(ctx, id, true)
				if ok, detail := removed(err, id, "at once (forced: it had left)"); ok {
					return true, detail, nil
				}
				if permanent(err) {
					forced = false
					r.log.Info().Err(err).Msg("forced removal refused: removing the node once the managers see it down")
				} else {
					r.log.Debug().Err(err).Msg("forced removal failed: trying the unforced removal too")
				}
			}
			err := r.d.Swarm.RemoveNode(ctx, id, false)
			if ok, detail := removed(err, id, "once it showed down"); ok {
				return true, detail, nil
			}
			return false, "node " + id + " not removed yet", err
		})
		if !ok {
			msg := detail + ": the reaper removes it once it is down"
			if err != nil {
				msg = fmt.Sprintf("%s: %v", msg, err)
			}
			r.record(StepRemove, OutcomeFailed, msg, t)
			continue
		}
		r.record(StepRemove, OutcomeDone, detail, t)
	}
}

// removed reports whether a removal's outcome leaves the node gone, and says how.
func removed(err error, id, how string) (bool, string) {
	switch {
	case err == nil:
		return true, "removed node " + id + " " + how
	case errors.Is(err, ErrNoSuchNode):
		return true, "node " + id + " removed already"
	}
	return false, ""
}
