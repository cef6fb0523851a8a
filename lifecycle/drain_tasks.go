package lifecycle

// The drain's task steps: marking the node, draining its tasks and waiting until they run
// elsewhere, and the leader's release of replicas-per-node services.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// mark labels the node leaving (with its first progress), keeping the time of an earlier
// run, and returns when the drain started and whether this run made the mark.
func (r *drainRun) mark(ctx context.Context, node swarm.Node, manager bool) (since time.Time, fresh bool, err error) {
	t := time.Now()
	since = r.start
	labels := map[string]string{}
	if v := node.Labels[swarm.LabelLeaving]; v != "" {
		if at, err := time.Parse(time.RFC3339, v); err == nil && !at.After(r.start) {
			since = at
		} else {
			r.log.Warn().Str("label", swarm.LabelLeaving).Str("value", v).Msg("leaving label is no RFC3339 time in the past: the drain deadline counts from now")
		}
	} else {
		labels[swarm.LabelLeaving] = r.start.UTC().Format(time.RFC3339)
		fresh = true
	}
	if manager && node.Labels[swarm.LabelLeavingRole] != string(swarm.RoleManager) {
		labels[swarm.LabelLeavingRole] = string(swarm.RoleManager)
	}
	// The instance id lets a resumed drain (after the node left) and the reaper find it.
	if node.Labels[swarm.LabelInstanceID] == "" && r.instanceID != "" {
		labels[swarm.LabelInstanceID] = r.instanceID
	}
	if len(labels) == 0 {
		r.record(StepMark, OutcomeSkipped, "marked leaving since "+node.Labels[swarm.LabelLeaving], t)
		return since, false, nil
	}
	if fresh {
		labels[swarm.LabelProgress] = progressValue(time.Now())
	}
	err = r.retry(ctx, "label node "+node.ID+" leaving", func(ctx context.Context) error {
		return r.d.Swarm.SetNodeLabels(ctx, node.ID, labels)
	})
	if err != nil {
		r.record(StepMark, OutcomeFailed, err.Error(), t)
		return since, false, err
	}
	r.record(StepMark, OutcomeDone, "marked leaving since "+since.UTC().Format(time.RFC3339), t)
	return since, fresh, nil
}

// unmark takes back the mark this run made (labels cannot be deleted here: they are set
// empty, which reads as not leaving). A failure is reported: the node then stays marked,
// and the leader, seeing its progress stop, may try to drain it and meet the same refusal.
func (r *drainRun) unmark(ctx context.Context, nodeID string) {
	r.stopProgress()
	err := r.retry(ctx, "take back the leaving mark of node "+nodeID, func(ctx context.Context) error {
		return r.d.Swarm.SetNodeLabels(ctx, nodeID, map[string]string{swarm.LabelLeaving: "", swarm.LabelLeavingRole: "", swarm.LabelProgress: "", swarm.LabelTurn: ""})
	})
	if err != nil {
		r.log.Warn().Err(err).Msg("refused drain: the leaving mark stays")
		return
	}
	r.log.Info().Msg("refused drain: leaving mark taken back")
}

// drainTasks sets the node to drain and waits until its tasks stopped and their
// replacements run elsewhere, or the deadline.
func (r *drainRun) drainTasks(ctx context.Context, node swarm.Node, since time.Time) error {
	t := time.Now()
	var baseline map[string]int
	if node.Availability == availabilityDrain {
		r.record(StepDrain, OutcomeSkipped, "already set to drain", t)
	} else {
		var moving int
		err := r.retry(ctx, "count the tasks of node "+node.ID, func(ctx context.Context) (err error) {
			baseline, moving, err = r.baseline(ctx, node.ID)
			return err
		})
		if err == nil {
			err = r.retry(ctx, "set node "+node.ID+" to drain", func(ctx context.Context) error {
				return r.d.Swarm.SetAvailability(ctx, node.ID, availabilityDrain)
			})
		}
		if err != nil {
			r.record(StepDrain, OutcomeFailed, err.Error(), t)
			return err
		}
		r.rep.TasksMoved = moving
		r.record(StepDrain, OutcomeDone, fmt.Sprintf("set to drain with %d tasks running", moving), t)
	}

	t = time.Now()
	deadline := since.Add(r.opts.Deadline)
	if !r.notice.Deadline.IsZero() {
		deadline = earliest(deadline, r.notice.Deadline.Add(-spotReserve))
	}
	if end, ok := ctx.Deadline(); ok {
		deadline = earliest(deadline, end.Add(-min(finishMargin, time.Until(end)/5)))
	}
	ok, detail, err := r.waitFor(ctx, "tasks to move", deadline, func(ctx context.Context) (bool, string, error) {
		return r.tasksMoved(ctx, node.ID, baseline)
	})
	r.rep.TaskWait = time.Since(t)
	switch {
	case ok:
		r.record(StepTasks, OutcomeDone, detail, t)
	case ctx.Err() != nil:
		r.record(StepTasks, OutcomeFailed, detail, t)
		return fmt.Errorf("wait for the tasks of node %s to move: %w", node.ID, cmp.Or(err, context.Cause(ctx)))
	default:
		r.timedOut = true
		r.rep.TimedOut = true
		detail = fmt.Sprintf("deadline %s passed (%s): going on (%s)", deadline.UTC().Format(time.RFC3339), detail, r.opts.OnTimeout)
		if err != nil {
			detail += ": last error: " + err.Error()
		}
		r.record(StepTasks, OutcomeTimeout, detail, t)
	}
	return nil
}

// waitRelease waits, when some replicas-per-node service counts the node (LabelCounted), for
// the leader to shrink those services without it and clear the label, so that the replicas
// shrink before the lifecycle action completes. It gives up after releaseWait (or before the
// drain's own deadline), saying so; a node that was removed meanwhile is released.
func (r *drainRun) waitRelease(ctx context.Context, nodeID string) {
	t := time.Now()
	released := func(ctx context.Context) (bool, string, error) {
		n, err := r.d.Swarm.Node(ctx, nodeID)
		switch {
		case errors.Is(err, ErrNoSuchNode):
			return true, "node removed", nil
		case err != nil:
			return false, "", err
		case n.Labels[swarm.LabelCounted] == "":
			return true, "the leader resized the services that counted this node", nil
		}
		return false, "waiting for the leader to shrink the replicas-per-node services that count this node", nil
	}
	ok, _, err := released(ctx)
	switch {
	case ok:
		return
	case err != nil:
		r.log.Debug().Err(err).Msg("read the node's replicas-counted label: not waiting for the leader's resize")
		return
	case r.timedOut:
		r.record(StepRelease, OutcomeSkipped, "the drain deadline passed: not waiting for the leader's resize", t)
		return
	}
	until := t.Add(releaseWait)
	if end, ok := ctx.Deadline(); ok {
		until = earliest(until, end.Add(-min(finishMargin, time.Until(end)/5)))
	}
	ok, detail, err := r.waitFor(ctx, "release", until, released)
	if ok {
		r.record(StepRelease, OutcomeDone, detail, t)
		return
	}
	if err != nil {
		detail += ": " + err.Error()
	}
	r.record(StepRelease, OutcomeTimeout, detail+": going on", t)
}

const (
	taskRunning = "running"
	taskReady   = "ready"
)

// baseline counts, for each replicated service with a task running here, its running
// tasks on all nodes: the number to be back to once the drain moved them.
func (r *drainRun) baseline(ctx context.Context, nodeID string) (map[string]int, int, error) {
	here, err := r.d.Swarm.Tasks(ctx, nodeID, "")
	if err != nil {
		return nil, 0, err
	}
	base, moving := map[string]int{}, 0
	for _, t := range here {
		if t.DesiredState != taskRunning {
			continue
		}
		moving++
		if t.Slot > 0 { // global services (slot 0) are not replaced elsewhere
			base[t.ServiceID] = 0
		}
	}
	for svc := range base {
		all, err := r.d.Swarm.Tasks(ctx, "", svc)
		if err != nil {
			return nil, 0, err
		}
		for _, t := range all {
			if t.DesiredState == taskRunning && t.State == taskRunning {
				base[svc]++
			}
		}
	}
	return base, moving, nil
}

// tasksMoved reports whether every task here has stopped and no task is meant to run here,
// and, for every replicated service that had tasks here, whether as many tasks run
// elsewhere as ran before (baseline) or, when fewer are wanted now or baseline is unknown
// (an earlier run set the drain), as many as the swarm wants to run elsewhere. Tasks the
// swarm holds back for a restart delay have desired state ready; they count as wanted.
func (r *drainRun) tasksMoved(ctx context.Context, nodeID string, baseline map[string]int) (bool, string, error) {
	here, err := r.d.Swarm.Tasks(ctx, nodeID, "")
	if err != nil {
		return false, "", err
	}
	stay := 0
	services := map[string]bool{}
	for svc := range baseline {
		services[svc] = true
	}
	for _, t := range here {
		if t.DesiredState == taskRunning || t.State == taskRunning {
			stay++
		}
		if baseline == nil && t.Slot > 0 {
			services[t.ServiceID] = true
		}
	}
	if stay > 0 {
		return false, fmt.Sprintf("%d tasks still running or meant to run here", stay), nil
	}
	var waiting []string
	for svc := range services {
		all, err := r.d.Swarm.Tasks(ctx, "", svc)
		if err != nil {
			return false, "", err
		}
		running, wanted := 0, 0
		for _, t := range all {
			if t.NodeID == nodeID {
				continue
			}
			if t.DesiredState == taskRunning || t.DesiredState == taskReady {
				wanted++
			}
			if t.DesiredState == taskRunning && t.State == taskRunning {
				running++
			}
		}
		target := wanted
		if b, ok := baseline[svc]; ok {
			target = min(b, wanted)
		}
		if running < target {
			waiting = append(waiting, fmt.Sprintf("service %s: %d of %d running elsewhere", svc, running, target))
		}
	}
	if len(waiting) > 0 {
		sort.Strings(waiting)
		return false, strings.Join(waiting, ", "), nil
	}
	return true, fmt.Sprintf("tasks stopped here and running elsewhere (%d services)", len(services)), nil
}
