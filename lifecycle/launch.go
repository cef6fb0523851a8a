package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/swarm-agent/swarm-agent/retry"
)

// LaunchHook is what a launch needs from Auto Scaling; *asg.Client satisfies it.
type LaunchHook interface {
	// LaunchAction finds the instance's group, its lifecycle state and the group's
	// EC2_INSTANCE_LAUNCHING hook; ErrNoHook (wrapped) when the instance is in no group or
	// its group has no launch hook, ErrAmbiguousHook (wrapped) when it has several and none
	// is named.
	LaunchAction(ctx context.Context, instanceID string) (HookAction, error)
	// Heartbeat extends the action; ErrNoAction (wrapped) once it is no longer active.
	Heartbeat(ctx context.Context, asg, hook, instanceID string) error
	// Complete ends the action with result; ErrNoAction (wrapped) if it is not active.
	Complete(ctx context.Context, asg, hook, instanceID, result string) error
}

// ErrAmbiguousHook means the group has several lifecycle hooks of the transition and none
// was named: the agent cannot tell which one is its to complete.
var ErrAmbiguousHook = errors.New("several lifecycle hooks of the transition")

// LaunchWaiting reports whether state is where a launch hook holds an instance: Pending:Wait
// (launching into the group, or leaving the warm pool for it) or Warmed:Pending:Wait
// (launching into the warm pool).
func LaunchWaiting(state string) bool {
	return state == StatePendingWait || state == StateWarmedPendingWait
}

// launchComing reports whether a launch hook may still come to hold an instance in state:
// Auto Scaling shows it Pending before the hook puts it in Pending:Wait.
func launchComing(state string) bool {
	return state == StatePending || state == StateWarmedPending
}

// DefaultLaunchPoll is Launch.Poll's default.
const DefaultLaunchPoll = 5 * time.Second

// Launch keeps this instance's launch lifecycle action while the node boots: it finds the
// action (the instance in Pending:Wait, or Warmed:Pending:Wait, on its group's launch hook),
// heartbeats it until the boot is over, and completes it: CONTINUE once the node is really
// in the swarm, ABANDON when the boot failed for good, so that Auto Scaling replaces the
// instance instead of keeping one that never joined.
type Launch struct {
	Hook       LaunchHook
	InstanceID string
	// HeartbeatOverride replaces the heartbeat interval HeartbeatPlan derives from the hook.
	HeartbeatOverride time.Duration
	// Poll is how often Auto Scaling is asked again while the instance is Pending (the hook
	// has not held it yet) or the lookup fails; 0 means DefaultLaunchPoll.
	Poll time.Duration
	Log  zerolog.Logger
}

// LaunchReport says what a launch hold did.
type LaunchReport struct {
	// Held: a launch hook held this instance when it was looked up.
	Held bool
	// Action is the hook that held it.
	Action HookAction
	// State is the instance's lifecycle state at the last lookup ("" when none answered).
	State string
	// Heartbeats is the number of heartbeats recorded.
	Heartbeats int
	// Result is what this run completed the action with (CONTINUE or ABANDON), "" if none.
	Result string
	// AlreadyCompleted: the action was no longer active when this run came to complete it
	// (completed by someone else, or timed out).
	AlreadyCompleted bool
}

// LaunchHold is a started Launch: the lookup and the heartbeats run in the background until
// Complete or Release.
type LaunchHold struct {
	l      *Launch
	log    zerolog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	// known is closed once the lookup has its answer: held, or not held.
	known chan struct{}
	once  sync.Once
	ended LaunchReport

	// Written by the background goroutine before done closes.
	found   *HookAction
	state   string
	settled bool // the lookup gave its final answer: held, or not held
	beats   int
	lastErr error
}

// Start looks for the instance's launch lifecycle action in the background (again every
// Poll while the instance is Pending or Auto Scaling fails to answer) and heartbeats it once
// found, every third of the hook's HeartbeatTimeout (HeartbeatPlan), until Complete or Release.
func (l *Launch) Start(ctx context.Context) *LaunchHold {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &LaunchHold{l: l, log: l.Log.With().Str("instance_id", l.InstanceID).Logger(), cancel: cancel,
		done: make(chan struct{}), known: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.run(ctx)
	}()
	return h
}

func (h *LaunchHold) run(ctx context.Context) {
	poll := cmp.Or(h.l.Poll, DefaultLaunchPoll)
	delay := poll
	for attempt := 1; ; attempt++ {
		a, err := h.l.Hook.LaunchAction(ctx, h.l.InstanceID)
		switch {
		case err == nil:
			h.state = a.State
		case errors.Is(err, ErrNoHook):
			h.settle()
			h.log.Debug().Err(err).Msg("no launch lifecycle hook holds this instance")
			return
		case errors.Is(err, ErrAmbiguousHook):
			h.lastErr = err
			h.settle()
			h.log.Error().Err(err).Msg("the group has several launch lifecycle hooks and none is this agent's: completing none (they time out to their default result)")
			return
		case ctx.Err() != nil:
			return
		default:
			h.lastErr = err
			delay = min(2*delay, 8*poll)
			h.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("look up the launch lifecycle hook (will retry)")
			if !retry.Sleep(ctx, retry.Jitter(delay)) {
				return
			}
			continue
		}
		delay = poll
		switch {
		case launchComing(a.State):
			h.log.Debug().Str("state", a.State).Msg("instance pending: looking again for a launch lifecycle hook")
			if !retry.Sleep(ctx, poll) {
				return
			}
			continue
		case !LaunchWaiting(a.State):
			h.settle()
			h.log.Debug().Str("state", a.State).Msg("no launch lifecycle action waits for this instance")
			return
		}
		h.found = &a
		h.settle()
		log := h.log.With().Str("asg_name", a.ASG).Str("hook_name", a.Hook).Logger()
		interval, limit := HeartbeatPlan(a, h.l.HeartbeatOverride, log)
		log.Info().Str("state", a.State).Dur("heartbeat_interval", interval).Msg("launch lifecycle hook holds this instance: heartbeats while the node boots")
		h.beats, _ = HeartbeatLoop(ctx, interval, limit, func(ctx context.Context) error {
			return h.l.Hook.Heartbeat(ctx, a.ASG, a.Hook, h.l.InstanceID)
		}, log)
		return
	}
}

// settle records that the lookup has its final answer. Only the background goroutine calls it.
func (h *LaunchHold) settle() {
	h.settled = true
	close(h.known)
}

// Held waits up to wait for the background lookup's answer: whether a launch hook holds the
// instance (held), and whether the lookup has answered (known) rather than still looking
// (the instance Pending, or Auto Scaling not answering).
func (h *LaunchHold) Held(ctx context.Context, wait time.Duration) (held, known bool) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-h.known:
		return h.found != nil, true
	case <-h.done:
	case <-t.C:
	case <-ctx.Done():
	}
	select {
	case <-h.known:
		return h.found != nil, true
	default:
		return false, false
	}
}

// stop ends the background work and returns what it found.
func (h *LaunchHold) stop() LaunchReport {
	h.cancel()
	<-h.done
	rep := LaunchReport{State: h.state, Heartbeats: h.beats}
	if h.found != nil {
		rep.Held, rep.Action = true, *h.found
	}
	return rep
}

// Release stops the heartbeats without completing the action (the boot was interrupted: the
// next run, or the hook's timeout, decides). It returns what the hold did.
func (h *LaunchHold) Release() LaunchReport {
	h.once.Do(func() { h.ended = h.stop() })
	return h.ended
}

// Complete stops the heartbeats and completes the action with result (CONTINUE or ABANDON)
// when a launch hook holds the instance, looking once more when the background lookup had
// no final answer yet (the instance was still Pending, or Auto Scaling did not answer). An
// action no longer active counts as completed before (AlreadyCompleted). Complete acts once;
// a second call returns the first's report.
func (h *LaunchHold) Complete(ctx context.Context, result string) (LaunchReport, error) {
	var err error
	h.once.Do(func() {
		h.ended, err = h.complete(ctx, result)
	})
	return h.ended, err
}

func (h *LaunchHold) complete(ctx context.Context, result string) (LaunchReport, error) {
	rep := h.stop()
	if !h.settled {
		a, err := h.lookOnce(ctx)
		switch {
		case errors.Is(err, ErrNoHook), errors.Is(err, ErrAmbiguousHook):
			return rep, nil
		case err != nil:
			return rep, fmt.Errorf("look up the launch lifecycle hook to complete it with %s: %w", result, err)
		}
		rep.State = a.State
		if !LaunchWaiting(a.State) {
			return rep, nil
		}
		rep.Held, rep.Action = true, a
	}
	if !rep.Held {
		return rep, nil
	}
	a := rep.Action
	log := h.log.With().Str("asg_name", a.ASG).Str("hook_name", a.Hook).Logger()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		err = h.l.Hook.Complete(ctx, a.ASG, a.Hook, h.l.InstanceID, result)
		if err == nil || errors.Is(err, ErrNoAction) || ctx.Err() != nil {
			break
		}
		log.Warn().Err(err).Int("attempt", attempt).Msg("complete the launch lifecycle action (will retry)")
		if !retry.Sleep(ctx, time.Duration(attempt)*time.Second) {
			break
		}
	}
	switch {
	case errors.Is(err, ErrNoAction):
		rep.AlreadyCompleted = true
		log.Info().Str("result", result).Msg("the launch lifecycle action was no longer active (completed before, or timed out)")
		return rep, nil
	case err != nil:
		return rep, fmt.Errorf("complete the launch lifecycle action with %s: %w", result, err)
	}
	rep.Result = result
	log.Info().Str("result", result).Int("heartbeats", rep.Heartbeats).Msg("launch lifecycle action completed")
	return rep, nil
}

// lookOnce asks Auto Scaling for the instance's launch action, a few times while it fails or
// the instance is still Pending.
func (h *LaunchHold) lookOnce(ctx context.Context) (HookAction, error) {
	poll := min(cmp.Or(h.l.Poll, DefaultLaunchPoll), 2*time.Second)
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		a, err := h.l.Hook.LaunchAction(ctx, h.l.InstanceID)
		switch {
		case errors.Is(err, ErrNoHook), errors.Is(err, ErrAmbiguousHook):
			return HookAction{}, err
		case err == nil && !launchComing(a.State):
			return a, nil
		case err == nil:
			last = fmt.Errorf("instance %s is still %s", h.l.InstanceID, a.State)
		default:
			last = err
		}
		if attempt < 3 && !retry.Sleep(ctx, poll) {
			break
		}
	}
	return HookAction{}, last
}
