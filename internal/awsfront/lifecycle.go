package awsfront

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

const asgNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

// Lifecycle states the front reports for an instance that a lifecycle hook holds, or that it
// moves on from a hold.
const (
	StatePendingWait        = "Pending:Wait"
	StatePendingProceed     = "Pending:Proceed"
	StateInService          = "InService"
	StateTerminatingWait    = "Terminating:Wait"
	StateTerminatingProceed = "Terminating:Proceed"
	StateTerminated         = "Terminated"
)

// Lifecycle transitions of hooks.
const (
	TransitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
)

// Action is one hook's lifecycle action as the tests see it.
type Action struct {
	InstanceID, ASG, Hook, Token string
	Transition                   string // TransitionLaunching or TransitionTerminating
	// State is the instance's lifecycle state along this hold: Pending:Wait, Pending:Proceed,
	// InService (launch, continued), Terminated (launch abandoned, or terminated);
	// Terminating:Wait, Terminating:Proceed, Terminated.
	State            string
	Deadline         time.Time
	GlobalDeadline   time.Time
	HeartbeatTimeout time.Duration
	DefaultResult    string
	Heartbeats       int
	Result           string    // CONTINUE, ABANDON, "" while waiting
	Ended            time.Time // when Result came
	TimedOut         bool      // the result came from the hook's DefaultResult
	Completions      int       // CompleteLifecycleAction calls naming this action, accepted or not
}

// action is one hook's action of a hold.
type action struct {
	Action
	h    *hold
	done bool // this hook's action has its result
}

// hold is one instance's passage through a wait state: an action per lifecycle hook of the
// transition, all waiting at once. The instance moves on once every action is completed or
// timed out, or at once when one ends with ABANDON (which cancels the others), as on AWS.
type hold struct {
	instanceID, group string
	transition        string
	wait, proceed     string // the wait state and the one after it
	actions           []*action
	settled           bool
	// decrement: a terminating instance's group goes down by one (a scale-in).
	decrement bool
	// toPool: the instance is on its way into its group's warm pool (launched into it, or
	// returning to it on a scale-in with ReuseOnScaleIn): settleWarm ends the hold.
	toPool bool
}

func (h *hold) setState(s string) {
	for _, a := range h.actions {
		a.State = s
	}
}

// holdKey names an instance's hold of one transition: an instance has at most one of each
// (a newer one replaces an older one), and at most one of all waits at a time.
type holdKey struct{ instanceID, transition string }

var (
	errNotInGroup         = errors.New("instance is in no auto scaling group")
	errAlreadyTerminating = errors.New("instance is already terminating")
)

// LifecycleAction returns the instance's termination lifecycle action (of its group's first
// terminating hook), if a scale-in started one.
func (f *Front) LifecycleAction(instanceID string) (Action, bool) {
	return f.firstAction(instanceID, TransitionTerminating)
}

// LaunchAction returns the instance's launch lifecycle action (of its group's first
// launching hook), if its launch was held.
func (f *Front) LaunchAction(instanceID string) (Action, bool) {
	return f.firstAction(instanceID, TransitionLaunching)
}

// HookActions returns every hook's action of the instance's last hold of transition.
func (f *Front) HookActions(instanceID, transition string) []Action {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.holds[holdKey{instanceID, transition}]
	if h == nil {
		return nil
	}
	out := make([]Action, len(h.actions))
	for i, a := range h.actions {
		out[i] = a.Action
	}
	return out
}

func (f *Front) firstAction(instanceID, transition string) (Action, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.holds[holdKey{instanceID, transition}]
	if h == nil || len(h.actions) == 0 {
		return Action{}, false
	}
	return h.actions[0].Action, true
}

// AdvanceHook moves the instance's waiting actions' clock forward by d: their deadlines come
// d closer.
func (f *Front) AdvanceHook(instanceID string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tr := range []string{TransitionTerminating, TransitionLaunching} {
		if h := f.holds[holdKey{instanceID, tr}]; h != nil {
			for _, a := range h.actions {
				a.Deadline = a.Deadline.Add(-d)
				a.GlobalDeadline = a.GlobalDeadline.Add(-d)
			}
		}
	}
}

// waitingLocked returns the instance's hold that waits, if any. f.mu is held.
func (f *Front) waitingLocked(instanceID string) *hold {
	for _, tr := range []string{TransitionTerminating, TransitionLaunching} {
		if h := f.holds[holdKey{instanceID, tr}]; h != nil && !h.settled {
			return h
		}
	}
	return nil
}

// hookSpec is a group's lifecycle hook as the front applies it.
type hookSpec struct {
	name, transition, def, meta string
	hb, global                  time.Duration
}

// groupHooks returns the group's lifecycle hooks of transition, in the order moto lists
// them, with AWS's defaults: HeartbeatTimeout one hour, GlobalTimeout the smaller of 48 h
// and 100 heartbeat timeouts, DefaultResult ABANDON.
func (f *Front) groupHooks(ctx context.Context, group, transition string) ([]hookSpec, error) {
	out, err := f.asg.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
	if err != nil {
		return nil, fmt.Errorf("describe lifecycle hooks of %s: %w", group, err)
	}
	var hooks []hookSpec
	for _, h := range out.LifecycleHooks {
		if aws.ToString(h.LifecycleTransition) != transition {
			continue
		}
		hb := time.Duration(aws.ToInt32(h.HeartbeatTimeout)) * time.Second
		if hb <= 0 {
			hb = time.Hour
		}
		global := min(48*time.Hour, 100*hb)
		if g := aws.ToInt32(h.GlobalTimeout); g > 0 {
			global = time.Duration(g) * time.Second
		}
		def := aws.ToString(h.DefaultResult)
		if def == "" {
			def = "ABANDON"
		}
		hooks = append(hooks, hookSpec{name: aws.ToString(h.LifecycleHookName), transition: transition, def: def,
			meta: aws.ToString(h.NotificationMetadata), hb: hb, global: global})
	}
	return hooks, nil
}

// startHold holds the instance in h.wait with one action per hook and sends a notice per
// hook to the notice queue, as Auto Scaling does; the caller has checked that hooks is not
// empty. It fails with errAlreadyTerminating when the instance waits in a termination
// already; a waiting launch is cancelled by a termination (the instance goes away).
func (f *Front) startHold(ctx context.Context, h *hold, hooks []hookSpec, extra map[string]string) error {
	now := time.Now()
	for _, hk := range hooks {
		h.actions = append(h.actions, &action{Action: Action{
			InstanceID: h.instanceID, ASG: h.group, Hook: hk.name, Token: newToken(), Transition: h.transition,
			State: h.wait, Deadline: now.Add(hk.hb), GlobalDeadline: now.Add(hk.global),
			HeartbeatTimeout: hk.hb, DefaultResult: hk.def,
		}, h: h})
	}
	f.mu.Lock()
	if w := f.waitingLocked(h.instanceID); w != nil {
		if w.transition == TransitionTerminating {
			f.mu.Unlock()
			return errAlreadyTerminating
		}
		w.settled = true // a launch cut short by a termination
		w.setState(StateTerminated)
	}
	f.holds[holdKey{h.instanceID, h.transition}] = h
	queue := f.noticeQueue
	f.mu.Unlock()
	log := f.log.With().Str("instance_id", h.instanceID).Str("asg_name", h.group).Logger()
	for _, a := range h.actions {
		log.Info().Str("hook_name", a.Hook).Dur("heartbeat_timeout", a.HeartbeatTimeout).Str("state", h.wait).Msg("lifecycle hook holds the instance")
	}
	if queue == "" {
		return nil
	}
	var errs []error
	for i, a := range h.actions {
		notice := map[string]string{
			"Origin":               "AutoScalingGroup",
			"LifecycleHookName":    a.Hook,
			"Destination":          "EC2",
			"AccountId":            "123456789012",
			"RequestId":            newToken(),
			"LifecycleTransition":  h.transition,
			"AutoScalingGroupName": h.group,
			"Service":              "AWS Auto Scaling",
			"Time":                 now.UTC().Format("2006-01-02T15:04:05.000Z"),
			"EC2InstanceId":        h.instanceID,
			"LifecycleActionToken": a.Token,
		}
		if h.transition == TransitionLaunching {
			notice["Origin"], notice["Destination"] = "EC2", "AutoScalingGroup"
		}
		for k, v := range extra {
			notice[k] = v
		}
		if hooks[i].meta != "" {
			notice["NotificationMetadata"] = hooks[i].meta
		}
		if err := f.sendNotice(ctx, queue, notice); err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", h.instanceID, err))
		}
	}
	return errors.Join(errs...)
}

// sendNotice puts a message on a moto SQS queue (JSON protocol, as the SDK speaks it).
func (f *Front) sendNotice(ctx context.Context, queueURL string, notice map[string]string) error {
	msg, err := json.Marshal(notice)
	if err != nil {
		return err
	}
	return f.sendMessage(ctx, queueURL, msg)
}

// sendMessage puts msg on a moto SQS queue.
func (f *Front) sendMessage(ctx context.Context, queueURL string, msg []byte) error {
	body, err := json.Marshal(map[string]string{"QueueUrl": queueURL, "MessageBody": string(msg)})
	if err != nil {
		return err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("X-Amz-Target", "AmazonSQS.SendMessage")
	h.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20250101/"+f.cfg.Region+"/sqs/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := f.motoDo(ctx, http.MethodPost, "/", body, h)
	if err != nil {
		return fmt.Errorf("send notice to %s: %w", queueURL, err)
	}
	if resp.status != http.StatusOK {
		return fmt.Errorf("send notice to %s: moto answered %d: %s", queueURL, resp.status, bytes.TrimSpace(resp.body))
	}
	return nil
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// settle ends the hold once its actions say so: at once with ABANDON when one was abandoned
// (the others are cancelled), with CONTINUE once every one continued. It is called after an
// action got its result; timedOut says that this result came from the hook's default.
func (f *Front) settle(h *hold, timedOut bool) {
	f.mu.Lock()
	if h.settled {
		f.mu.Unlock()
		return
	}
	result := "CONTINUE"
	for _, a := range h.actions {
		switch {
		case a.done && a.Result == "ABANDON":
			result = "ABANDON"
		case !a.done && result != "ABANDON":
			result = ""
		}
	}
	if result == "" {
		f.mu.Unlock()
		return
	}
	h.settled = true
	h.setState(h.proceed)
	if h.transition == TransitionLaunching && result == "CONTINUE" && !h.toPool {
		h.setState(StateInService) // nothing to do on the way: moto has had it in service all along
	}
	f.mu.Unlock()
	if h.toPool {
		f.settleWarm(h, result)
		return
	}
	log := f.log.With().Str("instance_id", h.instanceID).Str("asg_name", h.group).Str("transition", h.transition).Logger()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	final := StateTerminated
	switch {
	case h.transition == TransitionLaunching && result == "CONTINUE":
		final = StateInService // moto has had it in service all along
	case h.transition == TransitionLaunching:
		// An abandoned launch: Auto Scaling terminates the instance and launches another in
		// its place (the group's desired capacity stays). The termination hooks are not run
		// for an instance that never was in service.
		_ = f.imds.Update(h.instanceID, func(in *imdsfake.Instance) { in.TargetLifecycleState = StateTerminated })
		if err := f.terminate(ctx, h.group, h.instanceID, false); err != nil {
			log.Error().Err(err).Msg("terminate after an abandoned launch")
		}
	default:
		if err := f.terminate(ctx, h.group, h.instanceID, h.decrement); err != nil {
			log.Error().Err(err).Msg("terminate after lifecycle action")
		}
	}
	f.mu.Lock()
	h.setState(final)
	f.mu.Unlock()
	log.Info().Str("result", result).Bool("timed_out", timedOut).Str("state", final).Msg("lifecycle hold finished")
}

// expireLoop applies the hook's DefaultResult to actions whose deadline passed.
func (f *Front) expireLoop() {
	defer f.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case now := <-t.C:
			var due []*hold
			f.mu.Lock()
			for _, h := range f.holds {
				if h.settled {
					continue
				}
				expired := false
				for _, a := range h.actions {
					if !a.done && (now.After(a.Deadline) || now.After(a.GlobalDeadline)) {
						a.done, a.Result, a.TimedOut, a.Ended = true, a.DefaultResult, true, time.Now()
						expired = true
					}
				}
				if expired {
					due = append(due, h)
				}
			}
			f.mu.Unlock()
			for _, h := range due {
				f.settle(h, true)
			}
		}
	}
}
