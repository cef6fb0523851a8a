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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

const asgNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

// Lifecycle states the front reports for an instance held by a terminating hook.
const (
	StateTerminatingWait    = "Terminating:Wait"
	StateTerminatingProceed = "Terminating:Proceed"
	StateTerminated         = "Terminated"
)

// Action is a lifecycle action as the tests see it.
type Action struct {
	InstanceID, ASG, Hook, Token string
	State                        string // Terminating:Wait, Terminating:Proceed, Terminated
	Deadline                     time.Time
	GlobalDeadline               time.Time
	HeartbeatTimeout             time.Duration
	DefaultResult                string
	Heartbeats                   int
	Result                       string // CONTINUE, ABANDON, "" while waiting
	TimedOut                     bool   // the result came from the hook's DefaultResult
	Completions                  int    // CompleteLifecycleAction calls naming this action, accepted or not
}

type action struct {
	Action
	decrement bool // the group's desired capacity goes down when the instance terminates
}

var (
	errNotInGroup         = errors.New("instance is in no auto scaling group")
	errAlreadyTerminating = errors.New("instance is already terminating")
)

// LifecycleAction returns the instance's lifecycle action, if a scale-in started one.
func (f *Front) LifecycleAction(instanceID string) (Action, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.actions[instanceID]
	if !ok {
		return Action{}, false
	}
	return a.Action, true
}

// AdvanceHook moves the action's clock forward by d: its deadlines come d closer.
func (f *Front) AdvanceHook(instanceID string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.actions[instanceID]; ok {
		a.Deadline = a.Deadline.Add(-d)
		a.GlobalDeadline = a.GlobalDeadline.Add(-d)
	}
}

// StartScaleIn starts terminating an instance the way a scale-in does: the instance goes to
// Terminating:Wait, IMDS says Terminated, a lifecycle action waits on the group's terminating
// hook and a notice goes to the notice queue. Without a terminating hook the instance is
// terminated at once. The group's desired capacity goes down by one, as in a scale-in.
func (f *Front) StartScaleIn(ctx context.Context, instanceID string) error {
	_, err := f.startTermination(ctx, instanceID, true)
	return err
}

// startTermination is StartScaleIn and TerminateInstanceInAutoScalingGroup: it returns the
// instance's group. decrement says whether the group's desired capacity goes down with it.
func (f *Front) startTermination(ctx context.Context, instanceID string, decrement bool) (string, error) {
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
	hooks, err := f.asg.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
	if err != nil {
		return "", fmt.Errorf("scale-in %s: describe lifecycle hooks of %s: %w", instanceID, group, err)
	}
	_ = f.imds.Update(instanceID, func(in *imdsfake.Instance) { in.TargetLifecycleState = StateTerminated })

	var hook *struct {
		name, def, meta string
		hb, global      time.Duration
	}
	for _, h := range hooks.LifecycleHooks {
		if aws.ToString(h.LifecycleTransition) != "autoscaling:EC2_INSTANCE_TERMINATING" {
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
		hook = &struct {
			name, def, meta string
			hb, global      time.Duration
		}{aws.ToString(h.LifecycleHookName), def, aws.ToString(h.NotificationMetadata), hb, global}
		break
	}
	log := f.log.With().Str("instance_id", instanceID).Str("asg_name", group).Logger()
	if hook == nil {
		log.Info().Msg("scale-in without terminating hook: terminating at once")
		return group, f.terminate(ctx, instanceID, decrement)
	}
	now := time.Now()
	a := &action{Action{
		InstanceID: instanceID, ASG: group, Hook: hook.name, Token: newToken(),
		State: StateTerminatingWait, Deadline: now.Add(hook.hb), GlobalDeadline: now.Add(hook.global),
		HeartbeatTimeout: hook.hb, DefaultResult: hook.def,
	}, decrement}
	f.mu.Lock()
	if old, ok := f.actions[instanceID]; ok && old.State == StateTerminatingWait {
		f.mu.Unlock()
		return "", fmt.Errorf("scale-in %s: %w", instanceID, errAlreadyTerminating)
	}
	f.actions[instanceID] = a
	queue := f.noticeQueue
	f.mu.Unlock()
	log.Info().Str("hook_name", hook.name).Dur("heartbeat_timeout", hook.hb).Msg("scale-in started: Terminating:Wait")
	if queue == "" {
		return group, nil
	}
	notice := map[string]string{
		"Origin":               "AutoScalingGroup",
		"LifecycleHookName":    hook.name,
		"Destination":          "EC2",
		"AccountId":            "123456789012",
		"RequestId":            newToken(),
		"LifecycleTransition":  "autoscaling:EC2_INSTANCE_TERMINATING",
		"AutoScalingGroupName": group,
		"Service":              "AWS Auto Scaling",
		"Time":                 now.UTC().Format("2006-01-02T15:04:05.000Z"),
		"EC2InstanceId":        instanceID,
		"LifecycleActionToken": a.Token,
	}
	if hook.meta != "" {
		notice["NotificationMetadata"] = hook.meta
	}
	if err := f.sendNotice(ctx, queue, notice); err != nil {
		return group, fmt.Errorf("scale-in %s: %w", instanceID, err)
	}
	return group, nil
}

// sendNotice puts a message on a moto SQS queue (JSON protocol, as the SDK speaks it).
func (f *Front) sendNotice(ctx context.Context, queueURL string, notice map[string]string) error {
	msg, err := json.Marshal(notice)
	if err != nil {
		return err
	}
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
// decrement) and terminated in EC2.
func (f *Front) terminate(ctx context.Context, instanceID string, decrement bool) error {
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
}

// finish ends a waiting action with result and terminates the instance in moto.
func (f *Front) finish(a *action, result string, timedOut bool) {
	f.mu.Lock()
	if a.State != StateTerminatingWait {
		f.mu.Unlock()
		return
	}
	a.State = StateTerminatingProceed
	a.Result = result
	a.TimedOut = timedOut
	f.mu.Unlock()
	log := f.log.With().Str("instance_id", a.InstanceID).Str("asg_name", a.ASG).Str("hook_name", a.Hook).Logger()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.terminate(ctx, a.InstanceID, a.decrement); err != nil {
		log.Error().Err(err).Msg("terminate after lifecycle action")
	}
	f.mu.Lock()
	a.State = StateTerminated
	f.mu.Unlock()
	log.Info().Str("result", result).Bool("timed_out", timedOut).Msg("lifecycle action finished")
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
			var due []*action
			f.mu.Lock()
			for _, a := range f.actions {
				if a.State == StateTerminatingWait && (now.After(a.Deadline) || now.After(a.GlobalDeadline)) {
					due = append(due, a)
				}
			}
			f.mu.Unlock()
			for _, a := range due {
				f.finish(a, a.DefaultResult, true)
			}
		}
	}
}

// findAction returns the waiting action the request names, or a ValidationError message.
func (f *Front) findAction(p map[string]string) (*action, string) {
	id, token := p["InstanceId"], p["LifecycleActionToken"]
	notFound := "No active Lifecycle Action found with instance ID " + id
	if id == "" {
		notFound = "No active Lifecycle Action found with token " + token
	}
	var a *action
	if id != "" {
		a = f.actions[id]
	} else {
		for _, x := range f.actions {
			if x.Token == token {
				a = x
			}
		}
	}
	if a == nil {
		return nil, notFound
	}
	if token != "" && a.Token != token {
		return a, notFound
	}
	if (p["AutoScalingGroupName"] != "" && p["AutoScalingGroupName"] != a.ASG) ||
		(p["LifecycleHookName"] != "" && p["LifecycleHookName"] != a.Hook) {
		return a, notFound
	}
	if a.State != StateTerminatingWait {
		return a, notFound
	}
	return a, ""
}

func (f *Front) completeLifecycleAction(c *call) {
	p := c.req.Params
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
	f.mu.Unlock()
	if msg != "" {
		c.writeError(http.StatusBadRequest, "ValidationError", msg)
		return
	}
	f.finish(a, result, false)
	writeASGEmpty(c, "CompleteLifecycleAction")
}

func (f *Front) recordHeartbeat(c *call) {
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

// describeWithOverlay forwards to moto and shows the front's lifecycle states for instances
// held by an action (moto knows nothing of Terminating:Wait).
func (f *Front) describeWithOverlay(c *call) {
	resp, err := f.motoDo(c.r.Context(), c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if resp.status == http.StatusOK {
		f.mu.Lock()
		states := map[string]string{}
		for id, a := range f.actions {
			if a.State != StateTerminated {
				states[id] = a.State
			}
		}
		f.mu.Unlock()
		if len(states) > 0 {
			resp.body = overlayStates(resp.body, states)
		}
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
