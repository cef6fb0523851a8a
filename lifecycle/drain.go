package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// What a drain does when tasks have not moved away by its deadline (DrainOptions.OnTimeout).
const (
	// OnTimeoutContinue goes on with the sequence and completes the action with CONTINUE.
	OnTimeoutContinue = "continue"
	// OnTimeoutAbandon goes on with the sequence (the instance terminates either way, and a
	// manager must still leave cleanly), completes the action with ABANDON, which also skips
	// the group's other termination hooks, and returns ErrDrainTimeout.
	OnTimeoutAbandon = "abandon"
)

// Defaults of DrainOptions.
const (
	DefaultDrainDeadline = 10 * time.Minute
	DefaultDrainPoll     = 2 * time.Second
)

// Bounds of the steps after the task wait.
const (
	// finishMargin is the time allowed after the task wait for demotion, deregistration,
	// leaving, removal and completion; the drain's own deadline is Deadline + finishMargin.
	finishMargin = 5 * time.Minute
	// demoteWait bounds the wait for a demoted manager to show as a worker under a new leader.
	demoteWait = 2 * time.Minute
	// removeWait bounds the retries of the node's removal when the managers refuse to force
	// it and wait until they see the node down; the reaper removes a leaving node that is
	// still there later.
	removeWait = 2 * time.Minute
	// spotReserve is what a spot interruption's two minutes keep for the steps after the
	// task wait.
	spotReserve = 30 * time.Second
	// completeReserve is kept from the drain's deadline for completing the action.
	completeReserve = 15 * time.Second
	// releaseWait bounds the wait, after the tasks moved, for the leader to shrink the
	// replicas-per-node services that counted the node (it then clears LabelCounted). A
	// leader that does not (an older agent, none elected) costs a drain this much at most.
	releaseWait = 2 * time.Minute

	retryAttempts = 5
	retryBase     = 500 * time.Millisecond
	retryMax      = 8 * time.Second

	// lookAgainBase and lookAgainMax bound the backoff of the background hook lookup after
	// the first one failed.
	lookAgainBase = 5 * time.Second
	lookAgainMax  = time.Minute
)

// Steps of a drain, as DrainStep.Name.
const (
	StepHook       = "hook"       // find the lifecycle action, start heartbeats
	StepSelf       = "self"       // find this node
	StepQuorum     = "quorum"     // managers: wait for this node's turn; may it be demoted?
	StepMark       = "mark"       // label the node leaving
	StepDrain      = "drain"      // set availability drain
	StepTasks      = "tasks"      // wait for the tasks to stop here and run elsewhere
	StepRelease    = "release"    // wait for the leader to shrink the services that counted the node
	StepReplace    = "replace"    // managers replaced, not scaled in: wait for the replacement
	StepDemote     = "demote"     // managers: demote, wait for a worker under another leader
	StepDeregister = "deregister" // managers: withdraw from discovery
	StepLeave      = "leave"      // leave the swarm
	StepRemove     = "remove"     // a manager removes the node object
	StepComplete   = "complete"   // complete the lifecycle action
)

// Outcomes of a DrainStep.
const (
	OutcomeDone    = "done"
	OutcomeSkipped = "skipped" // nothing to do, e.g. done by an earlier, interrupted run
	OutcomeFailed  = "failed"
	OutcomeTimeout = "timeout"
)

// DrainOptions configure a Drainer. Zero values take the defaults.
type DrainOptions struct {
	// Deadline is how long tasks may take to move away, counted from when the node was
	// first marked leaving (so a resumed drain does not start the clock again).
	// 0 means DefaultDrainDeadline.
	Deadline time.Duration
	// OnTimeout is OnTimeoutContinue (the default) or OnTimeoutAbandon.
	OnTimeout string
	// Poll is how often the drain looks at the swarm while it waits. 0 means DefaultDrainPoll.
	Poll time.Duration
	// HeartbeatOverride, when set, replaces the heartbeat interval derived from the hook.
	HeartbeatOverride time.Duration
	// Force allows draining the last manager: it leaves the swarm with force and nothing
	// removes its node object (no manager is left to do it).
	Force bool
	// Addr is this node's private IP, which discovery registered; "" uses the node's address
	// as the swarm reports it.
	Addr string
	// InstanceID is this instance's id, used when a notice carries none.
	InstanceID string
	// Remote means a manager drains the node on its behalf (queue mode: the node's own agent
	// is not running). The node does not leave: its engine ends with the instance, which Auto
	// Scaling terminates once the action is completed; the reaper then removes the node object
	// (labelled leaving) as soon as it shows down.
	Remote bool
}

func (o DrainOptions) withDefaults() (DrainOptions, error) {
	o.Deadline = cmp.Or(max(o.Deadline, 0), DefaultDrainDeadline)
	o.Poll = cmp.Or(max(o.Poll, 0), DefaultDrainPoll)
	o.OnTimeout = cmp.Or(o.OnTimeout, OnTimeoutContinue)
	if o.OnTimeout != OnTimeoutContinue && o.OnTimeout != OnTimeoutAbandon {
		return o, fmt.Errorf("drain on-timeout %q: must be %s or %s", o.OnTimeout, OnTimeoutContinue, OnTimeoutAbandon)
	}
	return o, nil
}

// Drainer takes this node out of the swarm and completes its termination lifecycle action.
type Drainer struct {
	Swarm Swarm
	Local Local
	// Hook is Auto Scaling; nil means there is no lifecycle hook (as ErrNoHook).
	Hook Hook
	// Registrar withdraws a manager from discovery; nil when discovery needs no withdrawal.
	Registrar Registrar
	// Capacity tells a replaced manager from a scale-in (ReplacementWait); nil: a manager
	// leaves as soon as the others keep quorum.
	Capacity Capacity
	Log      zerolog.Logger
	Options  DrainOptions
}

// DrainStep is one step of a drain as it happened.
type DrainStep struct {
	Name    string // Step...
	Outcome string // Outcome...
	Detail  string
	Took    time.Duration
}

// DrainReport says what a drain did.
type DrainReport struct {
	InstanceID string
	NodeID     string
	// Role is the node's role when this run found it ("" when it had left already).
	Role swarm.Role
	// Action is the lifecycle action's hook; zero when there is none.
	Action HookAction
	Steps  []DrainStep
	// Heartbeats is the number of heartbeats this run recorded.
	Heartbeats int
	// TasksMoved is the number of tasks that were running here when this run set the node
	// to drain (0 when an earlier run had done it).
	TasksMoved int
	// TaskWait is how long this run waited for the tasks.
	TaskWait time.Duration
	// TimedOut: tasks had not all moved by the deadline.
	TimedOut bool
	// Result is what this run completed the action with (CONTINUE or ABANDON), "" if it
	// did not complete it.
	Result string
	// AlreadyCompleted: the action was no longer active when this run came to complete it:
	// an earlier run completed it, or it expired.
	AlreadyCompleted bool
	// NoHook: the instance has no termination lifecycle hook; nothing was completed.
	NoHook bool
	Took   time.Duration
}

// Step returns the named step's last record, if any.
func (r DrainReport) Step(name string) (DrainStep, bool) {
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if r.Steps[i].Name == name {
			return r.Steps[i], true
		}
	}
	return DrainStep{}, false
}

// Drain takes this node out of the swarm: it marks the node leaving (and keeps the mark's
// progress label fresh while it runs, so that the leader can tell it from a dead drain),
// keeps the lifecycle action alive with heartbeats (looking for the hook again in the
// background when the first lookup fails), lets a manager wait for its turn (managers leave
// one at a time) and checks that it may go, drains the node and waits for its tasks to run
// elsewhere, demotes a manager, deregisters it from discovery, leaves the swarm, has a
// manager remove the node object and completes the lifecycle action with CONTINUE.
//
// Drain is idempotent and resumes from what the swarm and Auto Scaling show: after a crash
// at any step a new Drain skips what is done (a drained node is not drained again, a
// demoted one not demoted, a node that left is found by its instance-id label and removed,
// a removed one goes straight to completion) and an action that is no longer active
// (ErrNoAction) is reported as already completed, never completed twice.
//
// Cancelling ctx does not stop it (see below); it returns ErrLastManager or ErrNoQuorum
// when a manager may not go, having changed nothing but the mark it takes back (a resumed
// drain's mark stays), ErrDrainTimeout after completing with
// ABANDON when OnTimeout says so, and other errors wrapped with the step that failed.
func (d *Drainer) Drain(ctx context.Context, n Notice) (rep DrainReport, err error) {
	opts, err := d.Options.withDefaults()
	if err != nil {
		return rep, err
	}
	if d.Swarm == nil || d.Local == nil {
		return rep, errors.New("drain: Drainer needs a Swarm and a Local")
	}
	instanceID := cmp.Or(n.InstanceID, opts.InstanceID)
	if instanceID == "" {
		return rep, errors.New("drain: no instance id: the notice has none and DrainOptions.InstanceID is empty")
	}
	start := time.Now()
	rep.InstanceID = instanceID
	log := d.Log.With().Str("instance_id", instanceID).Logger()

	// The termination path must outlive the agent: a SIGTERM (ctx cancelled) halfway would
	// leave a half-drained node and an uncompleted action. So the steps run on
	// context.WithoutCancel(ctx), bounded by the drain's own deadline: Options.Deadline for
	// the tasks plus finishMargin for the rest, no later than a spot notice's interruption
	// time, and (once the hook is known) no later than the hook's global timeout, after
	// which Auto Scaling proceeds without us anyway.
	budget := opts.Deadline + finishMargin
	if !n.Deadline.IsZero() {
		if until := time.Until(n.Deadline); until > 0 {
			budget = min(budget, until)
		}
	}
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	stopNote := context.AfterFunc(ctx, func() {
		log.Info().Msg("agent stopping: the drain goes on until it is done or reaches its own deadline")
	})
	defer stopNote()

	r := &drainRun{d: d, opts: opts, notice: n, instanceID: instanceID, start: start, log: log, rep: &rep,
		budget: budget, stopHeartbeats: func() {}, stopProgress: func() {}, cancelLimit: func() {}}
	defer func() {
		r.stopProgress()
		r.stopHeartbeats()
		r.cancelLimit()
		rep.Took = time.Since(start)
		ev := r.log.Info()
		if err != nil {
			ev = r.log.Error().Err(err)
		}
		ev.Dur("elapsed", rep.Took).Int("heartbeats", rep.Heartbeats).Int("tasks_moved", rep.TasksMoved).
			Str("result", rep.Result).Bool("already_completed", rep.AlreadyCompleted).Msg("drain finished")
	}()

	// The node is marked leaving first (inSwarm), before the hook lookup and the quorum
	// check, which can take a while with AWS retries: the leader must see at once that this
	// node's own agent drains it.
	t := time.Now()
	nodeID, isManager, err := r.self(work)
	if err != nil {
		r.record(StepSelf, OutcomeFailed, err.Error(), t)
		return rep, err
	}
	var timeout error
	if nodeID == "" {
		r.record(StepSelf, OutcomeDone, "not in a swarm: looking for the node by its instance id", t)
		r.removeLeft(r.startHook(work))
	} else {
		r.record(StepSelf, OutcomeDone, "node "+nodeID, t)
		err = r.inSwarm(work, nodeID, isManager)
	}
	if errors.Is(err, ErrDrainTimeout) {
		timeout, err = err, nil
	}
	if err != nil {
		return rep, err
	}
	if err := r.complete(work); err != nil {
		return rep, err
	}
	return rep, timeout
}

// drainRun is the state of one Drain call.
type drainRun struct {
	d          *Drainer
	opts       DrainOptions
	notice     Notice
	instanceID string
	start      time.Time
	log        zerolog.Logger
	rep        *DrainReport

	hookKnown bool // the hook lookup gave an answer (hasHook or ErrNoHook)
	hasHook   bool
	hookErr   error
	act       HookAction

	budget time.Duration // the drain's own deadline, from its start

	stopHeartbeats func()
	stopProgress   func()
	cancelLimit    func() // ends the bound startHook put on the steps
	timedOut       bool
}

func (r *drainRun) record(step, outcome, detail string, since time.Time) {
	took := time.Since(since)
	r.rep.Steps = append(r.rep.Steps, DrainStep{Name: step, Outcome: outcome, Detail: detail, Took: took})
	ev := r.log.Info()
	if outcome == OutcomeFailed || outcome == OutcomeTimeout {
		ev = r.log.Warn()
	}
	ev.Str("action", step).Str("state", outcome).Dur("elapsed", took).Msg(detail)
}

// lookupHook finds the instance's lifecycle action. A failure other than ErrNoHook does not
// stop the drain (a node that leaves cleanly is better than one killed while still in the
// swarm); complete looks again.
func (r *drainRun) lookupHook(ctx context.Context) {
	t := time.Now()
	if r.d.Hook == nil {
		r.hookKnown = true
		r.record(StepHook, OutcomeSkipped, "no lifecycle hook configured", t)
		return
	}
	var act HookAction
	err := r.retry(ctx, "find the lifecycle hook of "+r.instanceID, func(ctx context.Context) error {
		var err error
		act, err = r.d.Hook.Action(ctx, r.instanceID)
		return err
	})
	switch {
	case errors.Is(err, ErrNoHook):
		r.hookKnown = true
		r.rep.NoHook = true
		r.record(StepHook, OutcomeSkipped, "no termination lifecycle hook: draining without one", t)
	case err != nil:
		r.hookErr = err
		r.record(StepHook, OutcomeFailed, err.Error()+": draining anyway", t)
	default:
		r.hookKnown, r.hasHook, r.act = true, true, act
		r.rep.Action = act
		r.log = r.log.With().Str("asg_name", act.ASG).Str("hook_name", act.Hook).Logger()
		if (r.notice.ASG != "" && r.notice.ASG != act.ASG) || (r.notice.Hook != "" && r.notice.Hook != act.Hook) {
			r.log.Warn().Str("notice_asg_name", r.notice.ASG).Str("notice_hook_name", r.notice.Hook).
				Msg("the notice names another group or hook than the instance's termination hook: completing the instance's")
		}
		r.record(StepHook, OutcomeDone, fmt.Sprintf("lifecycle hook %s of %s, instance %s", act.Hook, act.ASG, cmp.Or(act.State, "in no known state")), t)
	}
}

// startHook finds the instance's lifecycle action and starts its heartbeats. It returns ctx
// bounded by the hook's global timeout (after which Auto Scaling proceeds without us) when
// that comes before the drain's own deadline.
func (r *drainRun) startHook(ctx context.Context) context.Context {
	r.lookupHook(ctx)
	if !r.hookKnown {
		r.keepLooking(ctx)
		return ctx
	}
	if !r.hasHook {
		return ctx
	}
	interval, limit := HeartbeatPlan(r.act, r.opts.HeartbeatOverride, r.log)
	if limit > 0 && limit < r.budget {
		ctx, r.cancelLimit = context.WithTimeout(ctx, limit)
	}
	if r.actionActive() {
		r.startHeartbeats(ctx, interval, limit)
	}
	return ctx
}

// keepLooking goes on looking for the lifecycle action in the background after the first
// lookup failed (Auto Scaling throttled or unreachable), and starts the heartbeats once it
// finds it: without them the action would expire while the node drains. stopHeartbeats ends
// it and hands what it found to the run (complete then looks once more if it found nothing).
func (r *drainRun) keepLooking(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var (
		found   *HookAction
		noHook  error
		beats   int
		foundAt time.Time
	)
	hook, id, log, override := r.d.Hook, r.instanceID, r.log, r.opts.HeartbeatOverride
	wg.Go(func() {
		delay := lookAgainBase
		for attempt := 1; ; attempt++ {
			wait := delay/2 + rand.N(delay/2+1)
			if !sleepCtx(ctx, wait) {
				return
			}
			a, err := hook.Action(ctx, id)
			switch {
			case errors.Is(err, ErrNoHook):
				noHook = err
				return
			case err != nil:
				if ctx.Err() != nil {
					return
				}
				delay = min(2*delay, lookAgainMax)
				log.Warn().Int("attempt", attempt).Dur("retry_in", delay).Err(err).Msg("lifecycle hook still not found: heartbeats wait for it")
				continue
			}
			found, foundAt = &a, time.Now()
			if a.State == StateTerminatingProceed || a.State == StateTerminated {
				return
			}
			alog := log.With().Str("asg_name", a.ASG).Str("hook_name", a.Hook).Logger()
			alog.Info().Int("attempt", attempt).Msg("lifecycle hook found: heartbeats start")
			interval, limit := HeartbeatPlan(a, override, alog)
			beats, _ = HeartbeatLoop(ctx, interval, limit, func(ctx context.Context) error {
				return hook.Heartbeat(ctx, a.ASG, a.Hook, id)
			}, alog)
			return
		}
	})
	r.stopHeartbeats = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		r.rep.Heartbeats = beats
		switch {
		case found != nil:
			r.hookKnown, r.hasHook, r.act, r.hookErr = true, true, *found, nil
			r.rep.Action = *found
			r.log = r.log.With().Str("asg_name", found.ASG).Str("hook_name", found.Hook).Logger()
			r.record(StepHook, OutcomeDone, fmt.Sprintf("lifecycle hook %s of %s found on a later look, instance %s",
				found.Hook, found.ASG, cmp.Or(found.State, "in no known state")), foundAt)
		case noHook != nil:
			r.hookKnown, r.hookErr = true, nil
			r.rep.NoHook = true
			r.record(StepHook, OutcomeSkipped, "no termination lifecycle hook (found on a later look)", time.Now())
		}
	})
}

// actionActive reports whether the action may still be waiting: not when Auto Scaling
// already shows the instance proceeding (completed before, or expired).
func (r *drainRun) actionActive() bool {
	return r.act.State != StateTerminatingProceed && r.act.State != StateTerminated
}

func (r *drainRun) startHeartbeats(ctx context.Context, interval, limit time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	beats := 0
	hook, act, id, log := r.d.Hook, r.act, r.instanceID, r.log // the loop's own copies
	wg.Go(func() {
		beats, _ = HeartbeatLoop(ctx, interval, limit, func(ctx context.Context) error {
			return hook.Heartbeat(ctx, act.ASG, act.Hook, id)
		}, log)
	})
	r.stopHeartbeats = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		r.rep.Heartbeats = beats
	})
}

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
		if !sleepCtx(ctx, min(r.opts.Poll, time.Until(until))) {
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

// complete stops the heartbeats and completes the lifecycle action, once.
func (r *drainRun) complete(ctx context.Context) error {
	r.stopHeartbeats()
	t := time.Now()
	if !r.hookKnown {
		r.lookupHook(ctx)
		if !r.hookKnown {
			err := fmt.Errorf("node drained, but the lifecycle action cannot be completed: %w", r.hookErr)
			r.record(StepComplete, OutcomeFailed, err.Error(), t)
			return err
		}
	}
	if !r.hasHook {
		r.record(StepComplete, OutcomeSkipped, "no lifecycle hook to complete", t)
		return nil
	}
	if !r.actionActive() {
		r.rep.AlreadyCompleted = true
		r.record(StepComplete, OutcomeSkipped, "instance is "+r.act.State+": the action was completed before or expired", t)
		return nil
	}
	result := ResultContinue
	if r.timedOut && r.opts.OnTimeout == OnTimeoutAbandon {
		result = ResultAbandon
	}
	err := r.retry(ctx, "complete the lifecycle action with "+result, func(ctx context.Context) error {
		return r.d.Hook.Complete(ctx, r.act.ASG, r.act.Hook, r.instanceID, result)
	})
	switch {
	case errors.Is(err, ErrNoAction):
		r.rep.AlreadyCompleted = true
		r.record(StepComplete, OutcomeSkipped, "no active lifecycle action: completed before or expired", t)
		return nil
	case err != nil:
		r.record(StepComplete, OutcomeFailed, err.Error(), t)
		return err
	}
	r.rep.Result = result
	r.record(StepComplete, OutcomeDone, "completed the lifecycle action with "+result, t)
	return nil
}

// waitFor polls cond at once and then every Poll until it holds or until passes, and
// reports whether it held with cond's last detail. Errors from cond are logged and polled
// through (managers answer errors for a few seconds while they elect a leader); the last
// one is returned when the wait gives up.
func (r *drainRun) waitFor(ctx context.Context, what string, until time.Time, cond func(context.Context) (bool, string, error)) (bool, string, error) {
	last := ""
	for attempt := 1; ; attempt++ {
		ok, detail, err := cond(ctx)
		if ok {
			return true, detail, nil
		}
		if err != nil {
			r.log.Debug().Str("action", what).Int("attempt", attempt).Err(err).Msg("waiting")
		} else if detail != last {
			r.log.Info().Str("action", what).Int("attempt", attempt).Msg(detail)
			last = detail
		}
		wait := min(r.opts.Poll, time.Until(until))
		if wait <= 0 {
			return false, detail, err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false, detail, cmp.Or(err, context.Cause(ctx))
		case <-timer.C:
		}
	}
}

// retry calls op until it succeeds, fails with an error retrying cannot fix, or
// retryAttempts calls failed, waiting with capped exponential backoff and jitter (so that
// agents draining together do not hit the managers in step).
func (r *drainRun) retry(ctx context.Context, what string, op func(context.Context) error) error {
	start := time.Now()
	delay := retryBase
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		switch {
		case err == nil:
			return nil
		case permanent(err):
			return fmt.Errorf("%s: %w", what, err)
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w (and %w)", what, err, context.Cause(ctx))
		case attempt == retryAttempts:
			return fmt.Errorf("%s: gave up after %d attempts in %s: %w", what, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		wait := delay/2 + rand.N(delay/2+1)
		r.log.Warn().Str("action", what).Int("attempt", attempt).Dur("retry_in", wait).Err(err).Msg("drain step failed")
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s: %w (and %w)", what, err, context.Cause(ctx))
		case <-timer.C:
		}
		delay = min(2*delay, retryMax)
	}
}

// permanent reports errors that retrying does not change.
func permanent(err error) bool {
	for _, target := range []error{ErrNoSuchNode, ErrNoHook, ErrNoAction, ErrNotAllowed, ErrLastManager, ErrNoQuorum, ErrAmbiguous} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
