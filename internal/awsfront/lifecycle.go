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
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

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

// StartScaleIn starts terminating an instance the way a scale-in does (or, with a warm pool
// reusing instances, returning it to the pool; see startScaleIn): the instance goes to
// Terminating:Wait, IMDS says Terminated, a lifecycle action waits on each of the group's
// terminating hooks and a notice per hook goes to the notice queue. Without a terminating
// hook the instance is terminated at once. The group's desired capacity goes down by one, as
// in a scale-in.
func (f *Front) StartScaleIn(ctx context.Context, instanceID string) error {
	return f.startScaleIn(ctx, instanceID)
}

// startTermination is StartScaleIn and TerminateInstanceInAutoScalingGroup: it returns the
// instance's group. decrement says whether the group's desired capacity goes down with it.
func (f *Front) startTermination(ctx context.Context, instanceID string, decrement bool) (string, error) {
	return f.startTerminationTo(ctx, instanceID, decrement, "")
}

// startTerminationTo is startTermination; with pool (a warm pool state such as
// Warmed:Stopped) the scale-in returns the instance to its group's warm pool instead of
// terminating it (ReuseOnScaleIn): IMDS says pool, the notices' Destination is WarmPool.
func (f *Front) startTerminationTo(ctx context.Context, instanceID string, decrement bool, pool string) (string, error) {
	out, err := f.asg.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{
		InstanceIds: []string{instanceID},
	})
	if err != nil {
		return "", fmt.Errorf("scale-in %s: describe instance: %w", instanceID, err)
	}
	if len(out.AutoScalingInstances) == 0 {
		return "", fmt.Errorf("scale-in %s: %w", instanceID, errNotInGroup)
	}
	group := aws.ToString(out.AutoScalingInstances[0].AutoScalingGroupName)
	hooks, err := f.groupHooks(ctx, group, TransitionTerminating)
	if err != nil {
		return "", fmt.Errorf("scale-in %s: %w", instanceID, err)
	}
	f.mu.Lock()
	w := f.waitingLocked(instanceID)
	f.mu.Unlock()
	if w != nil && w.transition == TransitionTerminating {
		return "", fmt.Errorf("scale-in %s: %w", instanceID, errAlreadyTerminating)
	}
	target, extra := StateTerminated, map[string]string(nil)
	if pool != "" {
		target, extra = pool, map[string]string{"Destination": "WarmPool"}
	}
	_ = f.imds.Update(instanceID, func(in *imdsfake.Instance) { in.TargetLifecycleState = target })
	log := f.log.With().Str("instance_id", instanceID).Str("asg_name", group).Logger()
	if len(hooks) == 0 && pool != "" {
		h := &hold{instanceID: instanceID, group: group, transition: TransitionTerminating, decrement: decrement, toPool: true}
		if w != nil {
			f.mu.Lock()
			w.settled = true
			w.setState(StateTerminated)
			f.mu.Unlock()
		}
		log.Info().Msg("scale-in without terminating hook: back to the warm pool at once")
		return group, f.returnToPool(ctx, h, f.warmConfigOr(ctx, group))
	}
	if len(hooks) == 0 {
		if w != nil {
			f.mu.Lock()
			w.settled = true
			w.setState(StateTerminated)
			f.mu.Unlock()
		}
		log.Info().Msg("scale-in without terminating hook: terminating at once")
		return group, f.terminate(ctx, group, instanceID, decrement)
	}
	h := &hold{instanceID: instanceID, group: group, transition: TransitionTerminating,
		wait: StateTerminatingWait, proceed: StateTerminatingProceed, decrement: decrement, toPool: pool != ""}
	if err := f.startHold(ctx, h, hooks, extra); err != nil {
		if errors.Is(err, errAlreadyTerminating) {
			return "", fmt.Errorf("scale-in %s: %w", instanceID, err)
		}
		return group, fmt.Errorf("scale-in %s: %w", instanceID, err)
	}
	log.Info().Msg("scale-in started: Terminating:Wait")
	if !decrement {
		if err := f.launchReplacement(ctx, h); err != nil {
			return group, fmt.Errorf("scale-in %s: %w", instanceID, err)
		}
	}
	return group, nil
}

// groupInstances lists the instance ids moto has in the group.
func (f *Front) groupInstances(ctx context.Context, group string) (map[string]bool, error) {
	out, err := f.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	ids := map[string]bool{}
	for _, g := range out.AutoScalingGroups {
		for _, in := range g.Instances {
			ids[aws.ToString(in.InstanceId)] = true
		}
	}
	return ids, nil
}

// withLaunches runs launch, something that may make moto launch instances into group (a
// higher capacity, a replacement), and holds each instance it launched in Pending:Wait when
// the group has launching hooks, as Auto Scaling does; moto alone would put them in service at
// once. Instances that were in the group before are left alone: a hook applies to instances
// launched after it was added. Launches run one at a time, and the describe calls wait for
// them (launchMu), so that nobody sees a new instance in service before the front holds it,
// and the instances one launch made are told apart from another's.
func (f *Front) withLaunches(ctx context.Context, group string, launch func() error) error {
	f.launchMu.Lock()
	defer f.launchMu.Unlock()
	before, err := f.groupInstances(ctx, group)
	if err != nil {
		before = nil // the group does not exist (yet): every instance after is new
	}
	if err := launch(); err != nil {
		return err
	}
	after, err := f.groupInstances(ctx, group)
	if err != nil {
		return err
	}
	var launched []string
	for id := range after {
		if !before[id] {
			launched = append(launched, id)
		}
	}
	if len(launched) == 0 {
		return nil
	}
	hooks, err := f.groupHooks(ctx, group, TransitionLaunching)
	if err != nil || len(hooks) == 0 {
		return err
	}
	slices.Sort(launched)
	var errs []error
	for _, id := range launched {
		h := &hold{instanceID: id, group: group, transition: TransitionLaunching, wait: StatePendingWait, proceed: StatePendingProceed}
		if err := f.startHold(ctx, h, hooks, nil); err != nil {
			errs = append(errs, err)
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

// terminate ends the instance in moto: out of its group (desired capacity decremented when
// decrement) and terminated in EC2. Without decrement moto launches a replacement, which a
// launching hook holds like any launch.
func (f *Front) terminate(ctx context.Context, group, instanceID string, decrement bool) error {
	return f.withLaunches(ctx, group, func() error {
		_, err := f.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
			InstanceId:                     aws.String(instanceID),
			ShouldDecrementDesiredCapacity: aws.Bool(decrement),
		})
		if err != nil {
			return fmt.Errorf("terminate %s in its group: %w", instanceID, err)
		}
		if _, err := f.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{instanceID}}); err != nil {
			return fmt.Errorf("terminate instance %s: %w", instanceID, err)
		}
		return nil
	})
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

// findAction returns the waiting action the request names, or a ValidationError message. The
// request names the instance (InstanceId) or the action (LifecycleActionToken), and the hook
// and its group, which must match. f.mu is held.
func (f *Front) findAction(p map[string]string) (*action, string) {
	id, token := p["InstanceId"], p["LifecycleActionToken"]
	notFound := "No active Lifecycle Action found with instance ID " + id
	if id == "" {
		notFound = "No active Lifecycle Action found with token " + token
	}
	var candidates []*action
	for k, h := range f.holds {
		if id != "" && k.instanceID != id {
			continue
		}
		for _, a := range h.actions {
			if token == "" || a.Token == token {
				candidates = append(candidates, a)
			}
		}
	}
	var named *action
	for _, a := range candidates {
		if (p["AutoScalingGroupName"] == "" || p["AutoScalingGroupName"] == a.ASG) &&
			(p["LifecycleHookName"] == "" || p["LifecycleHookName"] == a.Hook) {
			if named == nil || !a.h.settled && !a.done {
				named = a
			}
		}
	}
	if named == nil {
		if len(candidates) > 0 {
			return candidates[0], notFound
		}
		return nil, notFound
	}
	if named.h.settled || named.done {
		return named, notFound
	}
	return named, ""
}

// checkHookRequest refuses what AWS refuses before looking for an action: a missing hook or
// group name (both required), neither an instance id nor a token.
func checkHookRequest(c *call) bool {
	p := c.req.Params
	for _, k := range []struct{ param, member string }{{"LifecycleHookName", "lifecycleHookName"}, {"AutoScalingGroupName", "autoScalingGroupName"}} {
		if p[k.param] == "" {
			c.writeError(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value null at '"+k.member+"' failed to satisfy constraint: Member must not be null")
			return false
		}
	}
	return true
}

func (f *Front) completeLifecycleAction(c *call) {
	p := c.req.Params
	if !checkHookRequest(c) {
		return
	}
	result := p["LifecycleActionResult"]
	if result != "CONTINUE" && result != "ABANDON" {
		c.writeError(http.StatusBadRequest, "ValidationError", fmt.Sprintf("LifecycleActionResult %q: must be CONTINUE or ABANDON", result))
		return
	}
	f.mu.Lock()
	a, msg := f.findAction(p)
	if a != nil {
		a.Completions++
	}
	if msg == "" {
		a.done, a.Result, a.Ended = true, result, time.Now()
	}
	f.mu.Unlock()
	if msg != "" {
		c.writeError(http.StatusBadRequest, "ValidationError", msg)
		return
	}
	f.settle(a.h, false)
	writeASGEmpty(c, "CompleteLifecycleAction")
}

func (f *Front) recordHeartbeat(c *call) {
	if !checkHookRequest(c) {
		return
	}
	f.mu.Lock()
	a, msg := f.findAction(c.req.Params)
	if msg == "" {
		a.Heartbeats++
		a.Deadline = time.Now().Add(a.HeartbeatTimeout)
		if a.Deadline.After(a.GlobalDeadline) {
			a.Deadline = a.GlobalDeadline
		}
	}
	f.mu.Unlock()
	if msg != "" {
		c.writeError(http.StatusBadRequest, "ValidationError", msg)
		return
	}
	writeASGEmpty(c, "RecordLifecycleActionHeartbeat")
}

// terminateInGroup is TerminateInstanceInAutoScalingGroup as AWS does it: with a terminating
// hook the instance waits in Terminating:Wait (IMDS says Terminated, a notice goes out) until
// the action is completed or times out; moto alone would terminate it at once.
func (f *Front) terminateInGroup(c *call) {
	p := c.req.Params
	id, dec := p["InstanceId"], p["ShouldDecrementDesiredCapacity"]
	switch {
	case id == "":
		c.writeError(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value null at 'instanceId' failed to satisfy constraint: Member must not be null")
		return
	case dec != "true" && dec != "false":
		c.writeError(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value null at 'shouldDecrementDesiredCapacity' failed to satisfy constraint: Member must not be null")
		return
	}
	group, err := f.startTermination(c.r.Context(), id, dec == "true")
	switch {
	case errors.Is(err, errNotInGroup):
		c.writeError(http.StatusBadRequest, "ValidationError", "Instance Id not found - No managed instance found for instance ID: "+id)
		return
	case errors.Is(err, errAlreadyTerminating):
		c.writeError(http.StatusBadRequest, "ValidationError", "Instance "+id+" is already terminating")
		return
	case err != nil:
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	const op = "TerminateInstanceInAutoScalingGroup"
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	fmt.Fprintf(c.w, `<%sResponse xmlns="%s"><%sResult><Activity><ActivityId>%s</ActivityId>`+
		`<AutoScalingGroupName>%s</AutoScalingGroupName><Description>Terminating EC2 instance: %s</Description>`+
		`<Cause>At %s instance %s was taken out of service in response to a user request.</Cause>`+
		`<StartTime>%s</StartTime><StatusCode>InProgress</StatusCode><Progress>0</Progress><Details>{}</Details>`+
		`</Activity></%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		op, asgNS, op, newToken(), xmlEsc(group), xmlEsc(id), time.Now().UTC().Format(time.RFC3339), xmlEsc(id),
		time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), op, c.f.nextID("req-"), op)
}

func writeASGEmpty(c *call, op string) {
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	fmt.Fprintf(c.w, `<%sResponse xmlns="%s"><%sResult/><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		op, asgNS, op, c.f.nextID("req-"), op)
}

var instanceIDRe = regexp.MustCompile(`<InstanceId>([^<]+)</InstanceId>`)

// overlayStatesLocked is the lifecycle state the front shows for each instance it holds or
// moves on (moto knows nothing of Pending:Wait or Terminating:Wait). f.mu is held.
func (f *Front) overlayStatesLocked() map[string]string {
	states := map[string]string{}
	for k, h := range f.holds {
		if len(h.actions) == 0 {
			continue
		}
		st := h.actions[0].State
		if st == StateTerminated || st == StateInService || strings.HasPrefix(st, "Warmed:") {
			continue // warm pool instances are not the group's (withPoolInstances lists them)
		}
		if _, ok := states[k.instanceID]; ok && h.settled {
			continue // the instance's waiting hold speaks
		}
		states[k.instanceID] = st
	}
	return states
}

// describeWithOverlay forwards to moto and shows the front's lifecycle states for instances
// it holds or moves on.
func (f *Front) describeWithOverlay(c *call) {
	f.launchMu.RLock()
	defer f.launchMu.RUnlock()
	resp, err := f.motoDo(c.r.Context(), c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if resp.status == http.StatusOK {
		f.mu.Lock()
		states := f.overlayStatesLocked()
		desired := f.desiredOverlayLocked()
		f.mu.Unlock()
		if len(states) > 0 {
			resp.body = overlayStates(resp.body, states)
		}
		if len(desired) > 0 {
			resp.body = overlayDesired(resp.body, desired)
		}
		resp.body = f.describeExtras(c.req, resp.body)
	}
	copyResp(c.w, resp)
}

// overlayStates rewrites LifecycleState inside each innermost <member> whose InstanceId has a
// state (instance members hold no nested members).
func overlayStates(body []byte, states map[string]string) []byte {
	openTag, closeTag := []byte("<LifecycleState>"), []byte("</LifecycleState>")
	var out []byte
	pos := 0
	for _, m := range instanceIDRe.FindAllSubmatchIndex(body, -1) {
		st, ok := states[string(body[m[2]:m[3]])]
		if !ok || m[0] < pos {
			continue
		}
		endRel := bytes.Index(body[m[1]:], []byte("</member>"))
		if endRel < 0 {
			continue
		}
		end := m[1] + endRel
		start := max(bytes.LastIndex(body[:m[0]], []byte("<member>")), pos)
		seg := body[start:end]
		i, j := bytes.Index(seg, openTag), bytes.Index(seg, closeTag)
		if i < 0 || j < i {
			continue
		}
		out = append(out, body[pos:start+i+len(openTag)]...)
		out = append(out, st...)
		out = append(out, body[start+j:end]...)
		pos = end
	}
	return append(out, body[pos:]...)
}
