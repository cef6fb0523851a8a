package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"
)

// Lifecycle action results.
const (
	ResultContinue = "CONTINUE"
	ResultAbandon  = "ABANDON"
)

// Auto Scaling lifecycle states the drain and the launch look at.
const (
	StateTerminatingWait    = "Terminating:Wait"
	StateTerminatingProceed = "Terminating:Proceed"
	StateTerminated         = "Terminated"
	StatePending            = "Pending"
	StatePendingWait        = "Pending:Wait"
	StatePendingProceed     = "Pending:Proceed"
	StateInService          = "InService"
	StateWarmedPending      = "Warmed:Pending"
	StateWarmedPendingWait  = "Warmed:Pending:Wait"
)

// Lifecycle transitions of Auto Scaling hooks.
const (
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	TransitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
)

// HookAction is the lifecycle hook (termination or launch) that holds an instance, as Auto
// Scaling describes it. lifecycle/asg returns it (as asg.Action).
type HookAction struct {
	ASG              string
	Hook             string
	State            string // the instance's LifecycleState: InService, Terminating:Wait, ...
	HeartbeatTimeout time.Duration
	GlobalTimeout    time.Duration
	DefaultResult    string // CONTINUE | ABANDON
}

// Hook is what draining needs from Auto Scaling; *asg.Client satisfies it.
type Hook interface {
	// Action finds the instance's group and termination hook; ErrNoHook (wrapped) if none.
	Action(ctx context.Context, instanceID string) (HookAction, error)
	// Heartbeat extends the action; ErrNoAction (wrapped) once it is no longer active.
	Heartbeat(ctx context.Context, asg, hook, instanceID string) error
	// Complete ends the action with result; ErrNoAction (wrapped) if it is not active.
	Complete(ctx context.Context, asg, hook, instanceID, result string) error
}

// Heartbeat limits from the Auto Scaling documentation.
const (
	maxGlobalTimeout      = 48 * time.Hour
	globalTimeoutFactor   = 100
	defaultHookTimeout    = time.Hour // Auto Scaling's default HeartbeatTimeout
	minHeartbeatInterval  = time.Second
	heartbeatTimeoutShare = 3 // beat about three times per HeartbeatTimeout
)

// HeartbeatPlan derives the heartbeat interval and the total cap from a hook's timeouts:
// the interval is a third of HeartbeatTimeout unless override is set (a warning is logged
// when the override is not shorter than the timeout, since the action would then expire
// between beats); the cap is the hook's GlobalTimeout, or min(48 h, 100 x HeartbeatTimeout).
func HeartbeatPlan(a HookAction, override time.Duration, log zerolog.Logger) (interval, limit time.Duration) {
	timeout := a.HeartbeatTimeout
	if timeout <= 0 {
		timeout = defaultHookTimeout
	}
	interval = max(timeout/heartbeatTimeoutShare, minHeartbeatInterval)
	if override > 0 {
		interval = override
		if override >= timeout {
			log.Warn().Str("asg_name", a.ASG).Str("hook_name", a.Hook).
				Dur("heartbeat_interval", override).Dur("heartbeat_timeout", timeout).
				Msg("heartbeat interval is not shorter than the hook's heartbeat timeout: the lifecycle action may expire between heartbeats")
		}
	}
	limit = a.GlobalTimeout
	if limit <= 0 {
		limit = min(maxGlobalTimeout, globalTimeoutFactor*timeout)
	}
	return interval, limit
}

// HeartbeatLoop calls beat at once and then every interval, until ctx is done, limit has
// passed since the start (the hook's global timeout: more beats would be refused), or beat
// reports that the action is gone: ErrNoAction, or an AWS ValidationError (any error whose
// ErrorCode() is "ValidationError"). Other errors are logged and the next beat comes on
// schedule. It returns the number of successful beats and the error that stopped it (nil
// for ctx done or the cap).
func HeartbeatLoop(ctx context.Context, interval, limit time.Duration, beat func(context.Context) error, log zerolog.Logger) (int, error) {
	if interval <= 0 {
		interval = minHeartbeatInterval
	}
	start := time.Now()
	var capC <-chan time.Time
	if limit > 0 {
		capTimer := time.NewTimer(limit)
		defer capTimer.Stop()
		capC = capTimer.C
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	beats := 0
	for attempt := 1; ; attempt++ {
		err := beat(ctx)
		switch {
		case err == nil:
			beats++
			log.Debug().Int("attempt", attempt).Dur("elapsed", time.Since(start)).Msg("lifecycle heartbeat sent")
		case ctx.Err() != nil:
			return beats, nil
		case actionGone(err):
			log.Info().Int("attempt", attempt).Err(err).Msg("lifecycle action no longer active: heartbeats stop")
			return beats, err
		default:
			log.Warn().Int("attempt", attempt).Dur("retry_in", interval).Err(err).Msg("lifecycle heartbeat failed")
		}
		select {
		case <-ctx.Done():
			return beats, nil
		case <-capC:
			log.Warn().Dur("elapsed", time.Since(start)).Int("heartbeats", beats).Msg("lifecycle hook global timeout reached: heartbeats stop")
			return beats, nil
		case <-ticker.C:
		}
	}
}

// actionGone reports whether err says the lifecycle action can no longer be extended.
func actionGone(err error) bool {
	if errors.Is(err, ErrNoAction) {
		return true
	}
	var coded interface{ ErrorCode() string }
	return errors.As(err, &coded) && coded.ErrorCode() == "ValidationError"
}
