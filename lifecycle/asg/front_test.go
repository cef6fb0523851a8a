package asg

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// frontGroup creates a group of n instances in moto behind the front, with a terminating
// hook of heartbeat timeout hb when hb > 0, and returns the instance ids.
func frontGroup(t *testing.T, e *fronttest.Env, name string, n int32, hb int32) []string {
	t.Helper()
	ctx := t.Context()
	if _, err := e.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("lt-" + name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Medium},
	}); err != nil {
		t.Fatalf("create launch template: %v", err)
	}
	if _, err := e.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt-" + name), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(10), DesiredCapacity: aws.Int32(n),
		AvailabilityZones: []string{"us-east-1a"},
	}); err != nil {
		t.Fatalf("create group %s: %v", name, err)
	}
	if hb > 0 {
		if _, err := e.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
			AutoScalingGroupName: aws.String(name), LifecycleHookName: aws.String("drain"),
			LifecycleTransition: aws.String(TransitionTerminating), HeartbeatTimeout: aws.Int32(hb),
			DefaultResult: aws.String("ABANDON"),
		}); err != nil {
			t.Fatalf("put hook: %v", err)
		}
	}
	out, err := e.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		t.Fatalf("describe group %s: %v", name, err)
	}
	var ids []string
	for _, in := range out.AutoScalingGroups[0].Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	if len(ids) != int(n) {
		t.Fatalf("group %s has %d instances, want %d", name, len(ids), n)
	}
	return ids
}

func desired(t *testing.T, e *fronttest.Env, name string) int32 {
	t.Helper()
	out, err := e.ASG.DescribeAutoScalingGroups(t.Context(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		t.Fatalf("describe group %s: %v", name, err)
	}
	return aws.ToInt32(out.AutoScalingGroups[0].DesiredCapacity)
}

func validation(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationError" {
		return apiErr.ErrorMessage()
	}
	return ""
}

// TestClientAgainstFront drives the Client through the real SDK against moto and the AWS
// front: TerminateInstanceInAutoScalingGroup holds the instance in Terminating:Wait as AWS
// does when the group has a terminating hook, and the action takes heartbeats and exactly one
// completion.
func TestClientAgainstFront(t *testing.T) {
	e := fronttest.Start(t, nil)
	ctx := t.Context()
	c := New(e.ASG)
	ids := frontGroup(t, e, "workers", 2, 30)
	id := ids[0]

	a, err := c.Action(ctx, id)
	if err != nil {
		t.Fatalf("Action before scale-in: %v", err)
	}
	if a.ASG != "workers" || a.Hook != "drain" || a.State != "InService" || a.HeartbeatTimeout != 30*time.Second || a.DefaultResult != "ABANDON" {
		t.Fatalf("Action before scale-in = %+v", a)
	}
	if err := c.Heartbeat(ctx, "workers", "drain", id); !errors.Is(err, lifecycle.ErrNoAction) {
		t.Fatalf("heartbeat with no action waiting: %v, want ErrNoAction", err)
	}

	out, err := terminate(t, e, id, true)
	if err != nil {
		t.Fatalf("TerminateInstanceInAutoScalingGroup: %v", err)
	}
	if out.Activity == nil || aws.ToString(out.Activity.AutoScalingGroupName) != "workers" || out.Activity.StatusCode != asgtypes.ScalingActivityStatusCodeInProgress {
		t.Fatalf("activity = %+v, want workers InProgress", out.Activity)
	}
	if a, err = c.Action(ctx, id); err != nil || a.State != lifecycle.StateTerminatingWait {
		t.Fatalf("after TerminateInstanceInAutoScalingGroup: %+v, %v; want Terminating:Wait", a, err)
	}
	if gone, err := c.InstanceGone(ctx, id); err != nil || gone {
		t.Fatalf("InstanceGone while the hook holds it = %v, %v; want false", gone, err)
	}
	if _, err := terminate(t, e, id, true); validation(err) == "" {
		t.Fatalf("terminating again while it waits: %v, want a ValidationError", err)
	}
	if err := c.Heartbeat(ctx, "workers", "drain", id); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if err := c.Heartbeat(ctx, "workers", "other-hook", id); !errors.Is(err, lifecycle.ErrNoAction) {
		t.Fatalf("heartbeat naming another hook: %v, want ErrNoAction", err)
	}
	act, ok := e.Front.LifecycleAction(id)
	if !ok || act.Heartbeats != 1 {
		t.Fatalf("front action = %+v, %v; want one heartbeat", act, ok)
	}
	if err := c.Complete(ctx, "workers", "drain", id, lifecycle.ResultContinue); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if err := c.Complete(ctx, "workers", "drain", id, lifecycle.ResultContinue); !errors.Is(err, lifecycle.ErrNoAction) {
		t.Fatalf("second completion: %v, want ErrNoAction", err)
	}
	if gone, err := c.InstanceGone(ctx, id); err != nil || !gone {
		t.Fatalf("InstanceGone after completion = %v, %v; want true", gone, err)
	}
	if d := desired(t, e, "workers"); d != 1 {
		t.Fatalf("desired capacity %d after a decrementing termination, want 1", d)
	}
	if act, _ := e.Front.LifecycleAction(id); act.Result != lifecycle.ResultContinue || act.TimedOut || act.Completions != 2 {
		t.Fatalf("front action = %+v, want CONTINUE, not timed out, two completion calls", act)
	}

	// Bad requests: unknown instance.
	_, err = terminate(t, e, "i-00000000000000000", false)
	if validation(err) == "" {
		t.Fatalf("terminating an instance in no group: %v, want a ValidationError", err)
	}
}

// TestFrontHookTimesOut: an action nobody completes ends with the hook's DefaultResult after
// its heartbeat timeout, and the instance is then gone; without decrement the desired capacity
// stays.
func TestFrontHookTimesOut(t *testing.T) {
	e := fronttest.Start(t, nil)
	c := New(e.ASG)
	id := frontGroup(t, e, "managers", 2, 30)[1]
	if _, err := terminate(t, e, id, false); err != nil {
		t.Fatal(err)
	}
	e.Front.AdvanceHook(id, 31*time.Second)
	waitGone(t, c, id)
	act, _ := e.Front.LifecycleAction(id)
	if act.Result != lifecycle.ResultAbandon || !act.TimedOut {
		t.Fatalf("front action = %+v, want ABANDON by time-out", act)
	}
	if d := desired(t, e, "managers"); d != 2 {
		t.Fatalf("desired capacity %d after a non-decrementing termination, want 2", d)
	}
}

// TestFrontNoHook: a group without a terminating hook lets the instance go at once.
func TestFrontNoHook(t *testing.T) {
	e := fronttest.Start(t, nil)
	ctx := t.Context()
	c := New(e.ASG)
	id := frontGroup(t, e, "plain", 1, 0)[0]
	if _, err := c.Action(ctx, id); !errors.Is(err, ErrNoHook) {
		t.Fatalf("Action in a group without hook: %v, want ErrNoHook", err)
	}
	if _, err := terminate(t, e, id, true); err != nil {
		t.Fatal(err)
	}
	if gone, err := c.InstanceGone(ctx, id); err != nil || !gone {
		t.Fatalf("InstanceGone = %v, %v; want true at once", gone, err)
	}
	if _, ok := e.Front.LifecycleAction(id); ok {
		t.Fatal("a lifecycle action was started for a group without terminating hook")
	}
}

func waitGone(t *testing.T, c *Client, id string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // the front's tick and moto, on a loaded machine
	for {
		gone, err := c.InstanceGone(t.Context(), id)
		if err == nil && gone {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s not gone after its hook timed out: %v, %v", id, gone, fmt.Sprint(err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func terminate(t *testing.T, e *fronttest.Env, id string, decrement bool) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error) {
	return e.ASG.TerminateInstanceInAutoScalingGroup(t.Context(), &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(decrement)})
}

// TestLaunchActionAgainstFront: through the real SDK against moto and the front, an instance a
// scale-out launched into a group with a launching hook is found in Pending:Wait on that hook;
// heartbeats and one completion work, after which it is in service; a group with two launch
// hooks is ambiguous unless LaunchHookName picks one.
func TestLaunchActionAgainstFront(t *testing.T) {
	e := fronttest.Start(t, nil)
	ctx := t.Context()
	c := New(e.ASG)
	first := frontGroup(t, e, "workers", 1, 30)[0]
	if _, err := c.LaunchAction(ctx, first); !errors.Is(err, ErrNoHook) {
		t.Fatalf("LaunchAction without a launching hook: %v, want ErrNoHook", err)
	}
	if _, err := e.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String("workers"), LifecycleHookName: aws.String("boot"),
		LifecycleTransition: aws.String(TransitionLaunching), HeartbeatTimeout: aws.Int32(120), DefaultResult: aws.String("ABANDON"),
	}); err != nil {
		t.Fatal(err)
	}
	if a, err := c.LaunchAction(ctx, first); err != nil || a.State != "InService" || a.Hook != "boot" {
		t.Fatalf("LaunchAction of an instance launched before the hook: %+v, %v; want InService", a, err)
	}
	if _, err := e.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("workers"), DesiredCapacity: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	out, err := e.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"workers"}})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, in := range out.AutoScalingGroups[0].Instances {
		if aws.ToString(in.InstanceId) != first {
			id = aws.ToString(in.InstanceId)
		}
	}
	a, err := c.LaunchAction(ctx, id)
	if err != nil || a.State != lifecycle.StatePendingWait || a.Hook != "boot" || a.ASG != "workers" || a.HeartbeatTimeout != 2*time.Minute || a.DefaultResult != "ABANDON" {
		t.Fatalf("LaunchAction of the launched instance = %+v, %v; want Pending:Wait on boot", a, err)
	}
	if err := c.Heartbeat(ctx, "workers", "boot", id); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if err := c.Complete(ctx, "workers", "drain", id, lifecycle.ResultContinue); !errors.Is(err, lifecycle.ErrNoAction) {
		t.Fatalf("completing the terminating hook of a launching instance: %v, want ErrNoAction", err)
	}
	if err := c.Complete(ctx, "workers", "boot", id, lifecycle.ResultContinue); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if err := c.Complete(ctx, "workers", "boot", id, lifecycle.ResultContinue); !errors.Is(err, lifecycle.ErrNoAction) {
		t.Fatalf("second completion: %v, want ErrNoAction", err)
	}
	if a, err := c.LaunchAction(ctx, id); err != nil || a.State != "InService" {
		t.Fatalf("after CONTINUE: %+v, %v; want InService", a, err)
	}
	if _, err := e.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String("workers"), LifecycleHookName: aws.String("logs"),
		LifecycleTransition: aws.String(TransitionLaunching), HeartbeatTimeout: aws.Int32(60),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LaunchAction(ctx, id); !errors.Is(err, ErrAmbiguousHook) {
		t.Fatalf("LaunchAction with two launch hooks: %v, want ErrAmbiguousHook", err)
	}
	c.LaunchHookName = "logs"
	if a, err := c.LaunchAction(ctx, id); err != nil || a.Hook != "logs" || a.DefaultResult != "ABANDON" {
		t.Fatalf("LaunchAction naming the hook: %+v, %v", a, err)
	}
	c.LaunchHookName = "nope"
	if _, err := c.LaunchAction(ctx, id); !errors.Is(err, ErrNoHook) {
		t.Fatalf("LaunchAction naming a hook the group lacks: %v, want ErrNoHook", err)
	}
}
