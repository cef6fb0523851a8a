package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Reaper removes nodes that are down for good. The leader calls Reap periodically.
//
// A down node is removed only when it carries an instance-id label and Auto Scaling or EC2
// says its instance is going: held by the termination hook (Terminating:Wait), proceeding or
// terminated, or (in no hooked group) EC2 says it is shutting down, terminated or unknown. A
// stopped instance is not gone (a detached instance stopped for maintenance comes back with
// its swarm state). A node labelled LabelLeaving goes as soon as that is so (its drain got
// as far as marking it); any other node only once it has been seen down for Grace: an engine
// restart or a network partition must not cost a node its identity. A leaving node whose
// instance lives (an aborted drain, a mark a node set on itself) is kept like any other. A
// manager is demoted before it is removed. The leader's own node is never removed.
//
// One instance may have several node objects: a node that left and joined again keeps its
// old, down object with the same instance-id label. Such a ghost is removed at once (demoted
// first if it was a manager) when exactly one other node object of the instance is live, and
// nothing is completed on its account: the live node's own drain does that. When several
// node objects of one instance are live, none of them is acted on (ReasonAmbiguous).
//
// With Hook set, a node down for Grace whose instance Auto Scaling holds in Terminating:Wait
// (its agent died before it could drain, and no queue consumer took it over) is removed too,
// and its lifecycle action completed with CONTINUE, so that the instance does not wait out
// the hook's timeout. Its tasks were rescheduled when the node went down. The same goes for
// a leaving node removed at once: if Grace after its removal its instance still waits, its
// agent died before completing, and the Reaper completes the action for it. An action is
// never completed while another node object of its instance is not down.
//
// A node's instance-id label is a hint (a node may label itself): before completing an
// action on a node's account, or removing a ghost because a live node claims its instance,
// the Reaper has EC2 confirm that the node's address is one of the instance's (VerifyNode;
// for a ghost, both the live node's and the ghost's); when EC2 does not, nothing is done
// (ReasonIdentity).
type Reaper struct {
	Swarm Swarm
	// Grace is how long a node must have been seen down before it is reaped (leaving
	// nodes excepted); 0 reaps as soon as its instance is going. The clock starts when this
	// Reaper first sees the node down, so a new leader waits a full Grace again.
	Grace time.Duration
	Log   zerolog.Logger
	// Registrar withdraws reaped managers from discovery; nil for none.
	Registrar Registrar
	// Hook, when set, finds and completes the termination lifecycle actions of dead nodes'
	// instances (an *asg.Client).
	Hook Hook
	// Instances is EC2: whether an instance in no hooked group is gone, and, before the
	// Reaper completes an instance's lifecycle action or removes a ghost because of a live
	// node, whether the node's address is the instance's (VerifyNode): labels are hints.
	// nil verifies nothing, so nothing is done that needs it.
	Instances Instances
	// Observe is told of ghost removals, takeovers and refusals; nil for none.
	Observe Observer
	// TakeOver, when set, drains a node on its instance's behalf (without waiting for it;
	// queue mode's DrainOnBehalf, at most one per instance): the Reaper calls it for a live
	// node labelled leaving whose drain progress (LabelProgress) has not moved for
	// ProgressStale while Auto Scaling holds its instance in Terminating:Wait: its agent
	// died mid-drain, and without it the instance would wait out the hook's timeout and go
	// with its tasks. EC2 must confirm the node's instance first.
	TakeOver func(ctx context.Context, n Notice)

	mu        sync.Mutex
	downSince map[string]time.Time // node id -> when first seen down
	// leftBehind: instance id -> its removed leaving node, while its lifecycle action may
	// still need completing (Hook set only).
	leftBehind map[string]removedNode
	// refused: node id -> the reason its last decision was refused, so that a refusal is
	// reported once, not on every pass.
	refused map[string]string
	// progress times leaving nodes' drain progress.
	progress progressWatch
}

// removedNode is a leaving node the Reaper removed, and when.
type removedNode struct {
	node swarm.Node
	at   time.Time
}

// reapDecision is what to do with one down node.
type reapDecision struct {
	reap bool
	// held is the lifecycle action that still holds the node's instance, to complete once
	// the node is removed.
	held *HookAction
	// ghost: the node is an old object of an instance that has a live one.
	ghost bool
	why   string
	// refused is the Reason... of a refused decision; the node is kept.
	refused string
}

// Reap does one pass at time now and returns the ids of the nodes it removed. Errors about
// single nodes do not stop the pass; they are returned joined, with the nodes removed.
// Concurrent calls are serialized.
func (r *Reaper) Reap(ctx context.Context, now time.Time) ([]string, error) {
	nodes, err := r.Swarm.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("reap: list nodes: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.downSince == nil {
		r.downSince = map[string]time.Time{}
		r.leftBehind = map[string]removedNode{}
		r.refused = map[string]string{}
	}
	seen := make(map[string]bool, len(nodes))
	var removed []string
	var errs []error
	for _, n := range nodes {
		seen[n.ID] = true
		if n.State != stateDown {
			delete(r.downSince, n.ID) // back up: its grace starts again next time
			d, err := r.takeOver(ctx, nodes, n, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("take over the drain of node %s: %w", n.ID, err))
				continue
			}
			r.refuse(n.ID, d, r.Log.With().Str("node_id", n.ID).Str("instance_id", n.InstanceID()).Logger())
			continue
		}
		first, ok := r.downSince[n.ID]
		if !ok {
			first = now
			r.downSince[n.ID] = now
		}
		log := r.Log.With().Str("node_id", n.ID).Str("instance_id", n.InstanceID()).Str("role", string(n.Role)).Logger()
		d, err := r.due(ctx, nodes, n, now.Sub(first))
		if err != nil {
			errs = append(errs, fmt.Errorf("reap node %s: %w", n.ID, err))
			continue
		}
		r.refuse(n.ID, d, log)
		if !d.reap {
			log.Debug().Str("reason", d.why).Dur("elapsed", now.Sub(first)).Msg("down node kept")
			continue
		}
		done, err := r.reap(ctx, n, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("reap node %s (%s): %w", n.ID, d.why, err))
			continue
		}
		if !done {
			continue
		}
		delete(r.downSince, n.ID)
		removed = append(removed, n.ID)
		log.Info().Str("reason", d.why).Dur("elapsed", now.Sub(first)).Msg("reaped down node")
		switch {
		case d.ghost:
			r.Observe.observe(EventGhostRemoved, "")
		case d.held != nil:
			if err := r.complete(ctx, n.InstanceID(), *d.held, log); err != nil {
				errs = append(errs, fmt.Errorf("reap node %s: %w", n.ID, err))
			}
		case r.Hook != nil && n.Labels[swarm.LabelLeaving] != "" && n.InstanceID() != "":
			r.leftBehind[n.InstanceID()] = removedNode{node: n, at: now}
		}
	}
	errs = append(errs, r.completeLeftBehind(ctx, nodes, now)...)
	for id := range r.downSince {
		if !seen[id] {
			delete(r.downSince, id) // removed by someone else
		}
	}
	for id := range r.refused {
		if !seen[id] {
			delete(r.refused, id)
		}
	}
	r.progress.keep(func(id string) bool { return seen[id] })
	return removed, errors.Join(errs...)
}

// takeOver has a live node drained on its instance's behalf when it is labelled leaving,
// its drain progress is stale and Auto Scaling holds its instance in Terminating:Wait. The
// decision says what was refused, if anything.
func (r *Reaper) takeOver(ctx context.Context, nodes []swarm.Node, n swarm.Node, now time.Time) (reapDecision, error) {
	if r.TakeOver == nil || r.Hook == nil || n.Labels[swarm.LabelLeaving] == "" || n.Leader {
		return reapDecision{}, nil
	}
	if r.progress.legacy == 0 {
		r.progress.legacy = DefaultDrainDeadline + finishMargin
	}
	stale, why := r.progress.stale(n, now)
	id := n.InstanceID()
	if !stale || id == "" {
		return reapDecision{}, nil
	}
	a, err := r.Hook.Action(ctx, id)
	switch {
	case errors.Is(err, ErrNoHook):
		return reapDecision{}, nil // nothing holds the instance: nothing to finish for it
	case err != nil:
		return reapDecision{}, fmt.Errorf("lifecycle action of instance %s: %w", id, err)
	case a.State != StateTerminatingWait:
		return reapDecision{}, nil
	}
	if _, _, err := NodeOfInstance(nodes, id); err != nil {
		return reapDecision{why: err.Error(), refused: ReasonAmbiguous}, nil
	}
	if d, err := r.verify(ctx, n); d != nil || err != nil {
		return *d, err
	}
	r.Log.Warn().Str("node_id", n.ID).Str("instance_id", id).Str("asg_name", a.ASG).Str("hook_name", a.Hook).
		Str("reason", ReasonStale).Msg(why + ": its agent stopped; the leader takes its drain over")
	r.Observe.observe(EventTakeover, ReasonStale)
	r.progress.restart(n, now) // a takeover that fails is tried again ProgressStale later, not every pass
	r.TakeOver(ctx, Notice{Kind: "takeover", InstanceID: id, ASG: a.ASG, Hook: a.Hook, Source: "reaper"})
	return reapDecision{}, nil
}

// refuse reports a refused decision about node id once, until the reason changes.
func (r *Reaper) refuse(id string, d reapDecision, log zerolog.Logger) {
	if d.refused == "" {
		delete(r.refused, id)
		return
	}
	if r.refused[id] == d.refused {
		return
	}
	r.refused[id] = d.refused
	log.Warn().Str("reason", d.why).Msg("down node kept: refused to act on its instance's behalf")
	r.Observe.observe(EventRefused, d.refused)
}

// due decides whether a down node, down for the given time, is to be reaped now. nodes is
// the pass's node list, where the node's instance may have other node objects.
func (r *Reaper) due(ctx context.Context, nodes []swarm.Node, n swarm.Node, down time.Duration) (reapDecision, error) {
	keep := func(why string) (reapDecision, error) { return reapDecision{why: why}, nil }
	if n.Leader {
		return keep("the leader's own node")
	}
	id := n.InstanceID()
	if live, _ := nodesOf(nodes, id); len(live) > 0 {
		if len(live) > 1 {
			_, _, err := NodeOfInstance(nodes, id)
			return reapDecision{why: err.Error(), refused: ReasonAmbiguous}, nil
		}
		if d, err := r.verify(ctx, live[0]); d != nil || err != nil {
			return *d, err
		}
		// The down node's claim too: one that labelled itself with another node's
		// instance is no ghost of it (a ghost kept its instance's address).
		if d, err := r.verify(ctx, n); d != nil || err != nil {
			return *d, err
		}
		return reapDecision{reap: true, ghost: true,
			why: fmt.Sprintf("an old node object of instance %s, which runs node %s (%s) now", id, live[0].ID, live[0].State)}, nil
	}
	// A leaving node goes at once (its drain got as far as marking it), but only once Auto
	// Scaling or EC2 says its instance is going: a drain that was aborted, or a mark a node
	// set on itself, leaves its node to the rule of any other down node.
	leaving := n.Labels[swarm.LabelLeaving] != ""
	switch {
	case id == "":
		return keep("no instance-id label: not ours to remove")
	case !leaving && down < r.Grace:
		return keep(fmt.Sprintf("down for %s of its %s grace", down, r.Grace))
	case r.Instances == nil && r.Hook == nil:
		return keep("no way to tell whether its instance is gone")
	}
	what := fmt.Sprintf("the node down for %s", down)
	if leaving {
		what = fmt.Sprintf("the node leaving since %s and down", n.Labels[swarm.LabelLeaving])
	}
	if r.Hook != nil {
		// One look at Auto Scaling answers both questions for an instance in a hooked group.
		a, err := r.Hook.Action(ctx, id)
		switch {
		case errors.Is(err, ErrNoHook):
			// In no group, or a group without a termination hook: EC2 tells.
		case err != nil:
			return reapDecision{}, fmt.Errorf("lifecycle action of instance %s: %w", id, err)
		case a.State == StateTerminatingWait && leaving:
			// Its agent may still be completing the action: that waits Grace (leftBehind).
			return reapDecision{reap: true, why: fmt.Sprintf("instance %s waits in %s on hook %s and %s", id, a.State, a.Hook, what)}, nil
		case a.State == StateTerminatingWait:
			if d, err := r.verify(ctx, n); d != nil || err != nil {
				return *d, err
			}
			return reapDecision{reap: true, held: &a,
				why: fmt.Sprintf("instance %s waits in %s on hook %s and %s", id, a.State, a.Hook, what)}, nil
		case a.State == StateTerminatingProceed || a.State == StateTerminated:
			return reapDecision{reap: true, why: fmt.Sprintf("instance %s is %s and %s", id, a.State, what)}, nil
		default:
			return keep(fmt.Sprintf("its instance is still alive (%s)%s", a.State, abortedDrain(leaving)))
		}
	}
	if r.Instances == nil {
		return keep("its instance is in no hooked group and there is no EC2 to ask whether it is gone")
	}
	// Only EC2 tells that an instance is gone: one in no Auto Scaling group may have been
	// detached, and stopped for maintenance.
	in, err := r.Instances.Instance(ctx, id)
	if err != nil {
		return reapDecision{}, fmt.Errorf("is instance %s gone: %w", id, err)
	}
	if !in.Gone() {
		return keep(fmt.Sprintf("EC2 says its instance is %s%s", in.State, abortedDrain(leaving)))
	}
	return reapDecision{reap: true, why: fmt.Sprintf("EC2 says instance %s is %s and %s", id, cmp.Or(in.State, "unknown"), what)}, nil
}

// abortedDrain explains why a leaving node whose instance lives is kept.
func abortedDrain(leaving bool) string {
	if leaving {
		return ": its drain was aborted; the node is kept like any other down node"
	}
	return ""
}

// verify checks node n's claim to its instance with EC2 (VerifyNode). It returns nil, nil
// when EC2 confirms it, a refused decision when EC2 disagrees, and EC2's error otherwise.
func (r *Reaper) verify(ctx context.Context, n swarm.Node) (*reapDecision, error) {
	err := VerifyNode(ctx, r.Instances, n)
	switch {
	case err == nil:
		return nil, nil
	case errors.Is(err, ErrIdentity):
		return &reapDecision{why: err.Error(), refused: ReasonIdentity}, nil
	}
	return &reapDecision{}, err
}
