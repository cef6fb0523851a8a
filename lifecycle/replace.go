package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Capacity is what a leaving manager asks Auto Scaling to tell a replacement from a
// scale-in; *asg.Client satisfies it.
type Capacity interface {
	// DesiredCapacity is the desired capacity of Auto Scaling group name.
	DesiredCapacity(ctx context.Context, name string) (int, error)
}

// ReplacementWait decides whether leaving manager selfID waits for a replacement before it
// leaves the managers, from a manager's node list and the desired capacity of its Auto
// Scaling group. An instance refresh, a health replacement or the end of an instance's
// maximum lifetime terminate a manager without lowering the group's desired capacity, and
// Auto Scaling launches its replacement at the same time (terminate and launch) or before
// (launch before terminating); a scale-in lowers it. The manager waits while fewer managers
// than the group wants stay without it: managers other than itself, reachable and not
// leaving. The group may hold more instances than managers (workers beside them), so what
// it wants is at most the managers there are now, self and other leaving ones included.
// With 3 managers a refresh's terminated manager waits until its replacement is a
// reachable Raft member (3 stay), and a second terminated at once waits for its own
// replacement; a scale-in from 3 to 2 does not wait. It returns how many managers stay
// and how many are wanted.
func ReplacementWait(nodes []swarm.Node, selfID string, desired int) (stay, want int, wait bool) {
	managers := 0
	for _, n := range nodes {
		if n.Role != swarm.RoleManager {
			continue
		}
		managers++
		if n.ID != selfID && n.Reachability == reachable && n.Labels[swarm.LabelLeaving] == "" {
			stay++
		}
	}
	want = min(desired, managers)
	return stay, want, stay < want
}

// waitReplacement holds a manager that is replaced rather than scaled in (ReplacementWait)
// until its replacement is a reachable Raft member, its lifecycle action heartbeated
// meanwhile; the tasks have moved already, so the wait costs them nothing. It waits at most
// until the task deadline counted from since; then the quorum rule alone (checked again
// before the demotion) lets it go. Without a Capacity, a known group or a readable desired
// capacity it does not wait.
func (r *drainRun) waitReplacement(ctx context.Context, nodeID string, since time.Time) {
	t := time.Now()
	group := r.notice.ASG
	if r.hasHook {
		group = r.act.ASG
	}
	if r.d.Capacity == nil || group == "" {
		return
	}
	waited := false
	var capErr error
	ok, detail, err := r.waitFor(ctx, StepReplace, since.Add(r.opts.Deadline), func(ctx context.Context) (bool, string, error) {
		nodes, err := r.d.Swarm.Nodes(ctx)
		if err != nil {
			return false, "list nodes", err
		}
		desired, err := r.d.Capacity.DesiredCapacity(ctx, group)
		if err != nil {
			// Not known (no permission, Auto Scaling unreachable): no wait on a guess.
			capErr = err
			return true, "read the desired capacity of " + group, nil
		}
		stay, want, wait := ReplacementWait(nodes, nodeID, desired)
		if wait {
			waited = true
			return false, fmt.Sprintf("waiting for a replacement manager: %d reachable managers stay without this one, group %s wants %d", stay, group, want), nil
		}
		return true, fmt.Sprintf("%d reachable managers stay without this one, group %s wants %d", stay, group, want), nil
	})
	switch {
	case capErr != nil:
		r.record(StepReplace, OutcomeSkipped, detail+" failed: not waiting for a replacement: "+capErr.Error(), t)
	case ok && waited:
		r.record(StepReplace, OutcomeDone, "replacement in: "+detail, t)
	case ok:
		// A scale-in, or the replacement came first: nothing waited, nothing to report.
	case err != nil && !waited:
		r.record(StepReplace, OutcomeSkipped, detail+" failed: "+err.Error(), t)
	default:
		r.record(StepReplace, OutcomeTimeout, detail+": none came by the drain deadline; the quorum rule alone decides", t)
	}
}
