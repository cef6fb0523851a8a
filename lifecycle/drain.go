package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
