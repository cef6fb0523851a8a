package lifecycle

// The drain's lifecycle hook: finding the action, heartbeating it while the drain runs, and
// completing it once.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/swarm-agent/swarm-agent/retry"
)

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
		for attempt := 1; ; attempt++ {
			if !retry.Sleep(ctx, retry.Backoff(attempt, lookAgainBase, lookAgainMax)) {
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
				log.Warn().Int("attempt", attempt).Dur("retry_in", retry.Exp(attempt+1, lookAgainBase, lookAgainMax)).Err(err).Msg("lifecycle hook still not found: heartbeats wait for it")
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
