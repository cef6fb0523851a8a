package awsfront_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
)

// launchEnv is a front with a launch template, a group and helpers to look at it.
type launchEnv struct {
	*fronttest.Env
	t *testing.T
}

func newLaunchEnv(t *testing.T) launchEnv {
	t.Helper()
	e := fronttest.Start(t, nil)
	if _, err := e.EC2.CreateLaunchTemplate(t.Context(), &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("lt"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Medium},
	}); err != nil {
		t.Fatal(err)
	}
	return launchEnv{e, t}
}

func (e launchEnv) group(name string, desired int32, hooks ...asgtypes.LifecycleHookSpecification) {
	e.t.Helper()
	if _, err := e.ASG.CreateAutoScalingGroup(e.t.Context(), &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt"), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(20), DesiredCapacity: aws.Int32(desired),
		AvailabilityZones:              []string{"us-east-1a"},
		LifecycleHookSpecificationList: hooks,
	}); err != nil {
		e.t.Fatalf("create group %s: %v", name, err)
	}
}

func (e launchEnv) hook(group, name, transition string, hb int32, def string) {
	e.t.Helper()
	if _, err := e.ASG.PutLifecycleHook(e.t.Context(), &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(name),
		LifecycleTransition: aws.String(transition), HeartbeatTimeout: aws.Int32(hb), DefaultResult: aws.String(def),
	}); err != nil {
		e.t.Fatalf("put hook %s on %s: %v", name, group, err)
	}
}

// states is every instance of the group as DescribeAutoScalingGroups shows it; it checks
// that DescribeAutoScalingInstances shows the same instances in the same states (read again
// when an instance moved on between the two calls).
func (e launchEnv) states(group string) map[string]string {
	e.t.Helper()
	var diff []string
	for range 5 {
		out, err := e.ASG.DescribeAutoScalingGroups(e.t.Context(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
		if err != nil || len(out.AutoScalingGroups) != 1 {
			e.t.Fatalf("describe group %s: %v", group, err)
		}
		st := map[string]string{}
		var ids []string
		for _, in := range out.AutoScalingGroups[0].Instances {
			st[aws.ToString(in.InstanceId)] = string(in.LifecycleState)
			ids = append(ids, aws.ToString(in.InstanceId))
		}
		if len(ids) == 0 {
			return st
		}
		di, err := e.ASG.DescribeAutoScalingInstances(e.t.Context(), &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: ids})
		if err != nil {
			e.t.Fatal(err)
		}
		diff = nil
		for _, in := range di.AutoScalingInstances {
			if got, want := aws.ToString(in.LifecycleState), st[aws.ToString(in.InstanceId)]; got != want {
				diff = append(diff, fmt.Sprintf("%s: DescribeAutoScalingInstances says %s, DescribeAutoScalingGroups %s", aws.ToString(in.InstanceId), got, want))
			}
		}
		if len(diff) == 0 {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("the two describe calls disagree: %v", diff)
	return nil
}

func (e launchEnv) desired(group string) int32 {
	e.t.Helper()
	out, err := e.ASG.DescribeAutoScalingGroups(e.t.Context(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		e.t.Fatalf("describe group %s: %v", group, err)
	}
	return aws.ToInt32(out.AutoScalingGroups[0].DesiredCapacity)
}

// scaleOut sets the group's capacity to n and returns the instances that came with it.
func (e launchEnv) scaleOut(group string, n int32) []string {
	e.t.Helper()
	before := e.states(group)
	if _, err := e.ASG.SetDesiredCapacity(e.t.Context(), &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(n)}); err != nil {
		e.t.Fatalf("SetDesiredCapacity %s %d: %v", group, n, err)
	}
	return newIDs(before, e.states(group))
}

func newIDs(before, after map[string]string) []string {
	var out []string
	for id := range after {
		if _, ok := before[id]; !ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (e launchEnv) complete(group, hook, id, token, result string) error {
	in := &autoscaling.CompleteLifecycleActionInput{AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(hook),
		LifecycleActionResult: aws.String(result)}
	if id != "" {
		in.InstanceId = aws.String(id)
	}
	if token != "" {
		in.LifecycleActionToken = aws.String(token)
	}
	_, err := e.ASG.CompleteLifecycleAction(e.t.Context(), in)
	return err
}

func (e launchEnv) heartbeat(group, hook, id string) error {
	_, err := e.ASG.RecordLifecycleActionHeartbeat(e.t.Context(), &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(hook), InstanceId: aws.String(id)})
	return err
}

// ec2State is what EC2 says of the instance.
func (e launchEnv) ec2State(id string) string {
	e.t.Helper()
	out, err := e.EC2.DescribeInstances(e.t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			return string(in.State.Name)
		}
	}
	return ""
}

// noActive reports whether err is Auto Scaling's "No active Lifecycle Action found" for id.
func noActive(err error, id string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" &&
		ae.ErrorMessage() == "No active Lifecycle Action found with instance ID "+id
}

// waitState waits until the group shows the instance in state ("" for: no longer in the group).
func (e launchEnv) waitState(group, id, state string) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, ok := e.states(group)[id]
		if state == "" && !ok || ok && st == state {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s in %s: %q (listed %v), want %q", id, group, st, ok, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLaunchHooks: through the real SDK, a group's launching hook holds every instance the
// group launches after the hook was added in Pending:Wait, as AWS does (the instances that
// were in service before are left alone), and the action takes heartbeats and one completion:
// CONTINUE puts the instance in service, ABANDON (or the hook's default result after its
// heartbeat timeout) terminates it and launches another in its place, held the same way.
// Every refusal is the ValidationError AWS gives. Launch notices go to the notice queue.
func TestLaunchHooks(t *testing.T) {
	t.Parallel()
	e := newLaunchEnv(t)
	ctx := t.Context()
	q := sqs.NewFromConfig(e.AWS, func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.Front.APIURL()) })
	qo, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("notices")})
	if err != nil {
		t.Fatal(err)
	}
	e.Front.SetNoticeQueue(aws.ToString(qo.QueueUrl))
	const g = "workers"
	e.group(g, 1)
	var first string
	for id := range e.states(g) {
		first = id
	}
	e.hook(g, "boot", awsfront.TransitionLaunching, 60, "ABANDON")
	e.hook(g, "drain", awsfront.TransitionTerminating, 60, "ABANDON")

	// An instance in service before the hook existed is not held.
	if st := e.states(g)[first]; st != "InService" {
		t.Fatalf("the first instance %s is %s, want InService", first, st)
	}
	if err := e.complete(g, "boot", first, "", "CONTINUE"); !noActive(err, first) {
		t.Fatalf("CompleteLifecycleAction on an instance launched before the hook: %v, want No active Lifecycle Action", err)
	}

	// A scale-out: the new instance waits.
	ids := e.scaleOut(g, 2)
	if len(ids) != 1 {
		t.Fatalf("scale-out to 2 launched %v", ids)
	}
	a := ids[0]
	if st := e.states(g)[a]; st != awsfront.StatePendingWait {
		t.Fatalf("launched instance %s is %s, want Pending:Wait", a, st)
	}
	act, ok := e.Front.LaunchAction(a)
	if !ok || act.Hook != "boot" || act.Transition != awsfront.TransitionLaunching || act.State != awsfront.StatePendingWait || act.HeartbeatTimeout != time.Minute {
		t.Fatalf("launch action %+v, %v", act, ok)
	}
	msgs, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: qo.QueueUrl, MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs.Messages) != 1 {
		t.Fatalf("%d notices after one launch, want 1", len(msgs.Messages))
	}
	var notice map[string]string
	if err := json.Unmarshal([]byte(aws.ToString(msgs.Messages[0].Body)), &notice); err != nil {
		t.Fatal(err)
	}
	if notice["LifecycleTransition"] != awsfront.TransitionLaunching || notice["EC2InstanceId"] != a || notice["LifecycleHookName"] != "boot" ||
		notice["AutoScalingGroupName"] != g || notice["LifecycleActionToken"] != act.Token || notice["Destination"] != "AutoScalingGroup" {
		t.Fatalf("launch notice %v", notice)
	}

	// Heartbeats extend it; the wrong hook or group finds nothing.
	before := act.Deadline
	time.Sleep(20 * time.Millisecond)
	if err := e.heartbeat(g, "boot", a); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if act, _ = e.Front.LaunchAction(a); act.Heartbeats != 1 || !act.Deadline.After(before) {
		t.Fatalf("after a heartbeat: %+v (deadline before %s)", act, before)
	}
	if err := e.heartbeat(g, "drain", a); !noActive(err, a) {
		t.Fatalf("heartbeat naming the terminating hook: %v, want No active Lifecycle Action", err)
	}
	if err := e.complete("managers", "boot", a, "", "CONTINUE"); !noActive(err, a) {
		t.Fatalf("completion naming another group: %v, want No active Lifecycle Action", err)
	}
	if err := e.complete(g, "boot", a, "", "MAYBE"); err == nil {
		t.Fatal("completion with result MAYBE accepted")
	}
	if st := e.states(g)[a]; st != awsfront.StatePendingWait {
		t.Fatalf("after refused calls %s is %s, want Pending:Wait still", a, st)
	}

	// CONTINUE: in service; once only.
	if err := e.complete(g, "boot", a, "", "CONTINUE"); err != nil {
		t.Fatalf("CONTINUE: %v", err)
	}
	if st := e.states(g)[a]; st != "InService" {
		t.Fatalf("after CONTINUE %s is %s, want InService", a, st)
	}
	if err := e.complete(g, "boot", a, "", "CONTINUE"); !noActive(err, a) {
		t.Fatalf("second CONTINUE: %v, want No active Lifecycle Action", err)
	}
	if act, _ = e.Front.LaunchAction(a); act.Result != "CONTINUE" || act.TimedOut || act.State != awsfront.StateInService {
		t.Fatalf("launch action after CONTINUE: %+v", act)
	}

	// ABANDON (by token): terminated and replaced; the replacement is held.
	b := e.scaleOut(g, 3)[0]
	tok, _ := e.Front.LaunchAction(b)
	before3 := e.states(g)
	if err := e.complete(g, "boot", "", tok.Token, "ABANDON"); err != nil {
		t.Fatalf("ABANDON by token: %v", err)
	}
	after3 := e.states(g)
	if _, ok := after3[b]; ok {
		t.Fatalf("abandoned %s still in the group: %v", b, after3)
	}
	if s := e.ec2State(b); s != "terminated" && s != "shutting-down" {
		t.Fatalf("abandoned %s: EC2 says %q, want terminated", b, s)
	}
	repl := newIDs(before3, after3)
	if len(repl) != 1 || after3[repl[0]] != awsfront.StatePendingWait {
		t.Fatalf("after ABANDON the group is %v (was %v): want one replacement in Pending:Wait", after3, before3)
	}
	if d := e.desired(g); d != 3 {
		t.Fatalf("desired capacity after an abandoned launch: %d, want 3", d)
	}
	if act, _ = e.Front.LaunchAction(b); act.Result != "ABANDON" || act.State != awsfront.StateTerminated {
		t.Fatalf("abandoned launch action: %+v", act)
	}

	// The hook's default result after its heartbeat timeout (ABANDON): replaced again.
	c := repl[0]
	e.Front.AdvanceHook(c, 61*time.Second)
	e.waitState(g, c, "")
	if act, _ = e.Front.LaunchAction(c); act.Result != "ABANDON" || !act.TimedOut {
		t.Fatalf("timed-out launch action: %+v", act)
	}

	// Two launching hooks: the instance waits for both; ABANDON on one ends both.
	e.hook(g, "warm-cache", awsfront.TransitionLaunching, 60, "CONTINUE")
	var pending []string
	for id, st := range e.states(g) {
		if st == awsfront.StatePendingWait {
			pending = append(pending, id)
		}
	}
	if len(pending) != 1 {
		t.Fatalf("after the second timeout the group is %v, want one instance in Pending:Wait", e.states(g))
	}
	d := e.scaleOut(g, 4)[0] // held by both hooks
	if acts := e.Front.HookActions(d, awsfront.TransitionLaunching); len(acts) != 2 {
		t.Fatalf("%s has %d launch actions, want 2 (one per hook): %+v", d, len(acts), acts)
	}
	if err := e.complete(g, "boot", d, "", "CONTINUE"); err != nil {
		t.Fatal(err)
	}
	if st := e.states(g)[d]; st != awsfront.StatePendingWait {
		t.Fatalf("%s after one of two hooks continued: %s, want Pending:Wait", d, st)
	}
	if err := e.complete(g, "warm-cache", d, "", "CONTINUE"); err != nil {
		t.Fatal(err)
	}
	if st := e.states(g)[d]; st != "InService" {
		t.Fatalf("%s after both hooks continued: %s, want InService", d, st)
	}
	f := e.scaleOut(g, 5)[0]
	if err := e.complete(g, "warm-cache", f, "", "ABANDON"); err != nil {
		t.Fatal(err)
	}
	e.waitState(g, f, "")
	if err := e.complete(g, "boot", f, "", "CONTINUE"); !noActive(err, f) {
		t.Fatalf("completing the other hook of an abandoned launch: %v, want No active Lifecycle Action", err)
	}

	// Terminating an instance that waits to launch: the launch ends, the terminating hook holds it.
	pend := e.scaleOut(g, 6)[0]
	if _, err := e.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(pend), ShouldDecrementDesiredCapacity: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if st := e.states(g)[pend]; st != awsfront.StateTerminatingWait {
		t.Fatalf("a Pending:Wait instance terminated: %s, want Terminating:Wait", st)
	}
	if err := e.complete(g, "boot", pend, "", "CONTINUE"); !noActive(err, pend) {
		t.Fatalf("completing the launch of a terminating instance: %v, want No active Lifecycle Action", err)
	}
	if err := e.complete(g, "drain", pend, "", "CONTINUE"); err != nil {
		t.Fatalf("completing its termination: %v", err)
	}
}

// TestLaunchHookSpecifications: hooks given to CreateAutoScalingGroup
// (LifecycleHookSpecificationList) exist as the group is created, so they hold its first
// instances, as on AWS; a hook's default CONTINUE after its timeout puts the instance in
// service.
func TestLaunchHookSpecifications(t *testing.T) {
	t.Parallel()
	e := newLaunchEnv(t)
	const g = "managers"
	e.group(g, 2, asgtypes.LifecycleHookSpecification{LifecycleHookName: aws.String("boot"),
		LifecycleTransition: aws.String(awsfront.TransitionLaunching), HeartbeatTimeout: aws.Int32(30), DefaultResult: aws.String("CONTINUE")})
	st := e.states(g)
	if len(st) != 2 {
		t.Fatalf("group %v, want 2 instances", st)
	}
	hooks, err := e.ASG.DescribeLifecycleHooks(t.Context(), &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(g)})
	if err != nil || len(hooks.LifecycleHooks) != 1 || aws.ToString(hooks.LifecycleHooks[0].LifecycleHookName) != "boot" {
		t.Fatalf("hooks of the new group: %+v, %v", hooks, err)
	}
	for id, s := range st {
		if s != awsfront.StatePendingWait {
			t.Fatalf("first instance %s is %s, want Pending:Wait", id, s)
		}
	}
	for id := range st {
		e.Front.AdvanceHook(id, 31*time.Second)
		e.waitState(g, id, "InService")
		if act, _ := e.Front.LaunchAction(id); act.Result != "CONTINUE" || !act.TimedOut {
			t.Fatalf("launch action after its timeout: %+v", act)
		}
	}
	// UpdateAutoScalingGroup raising the capacity launches held instances too.
	if _, err := e.ASG.UpdateAutoScalingGroup(t.Context(), &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(g), DesiredCapacity: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	after := e.states(g)
	if n := newIDs(st, after); len(n) != 1 || after[n[0]] != awsfront.StatePendingWait {
		t.Fatalf("after UpdateAutoScalingGroup to 3: %v", after)
	}
}
