package asg

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/smithy-go"
)

// fakeASG is a stateful, in-memory Auto Scaling with lifecycle actions that expire like
// AWS's: an action waits HeartbeatTimeout from its start or last heartbeat, and never
// longer than its global timeout. It embeds API so that an unexpected call panics.
type fakeASG struct {
	API

	mu        sync.Mutex
	hooks     map[string][]types.LifecycleHook // by group
	instances map[string]*fakeInstance
	calls     map[string]int
	// failNext makes the next N calls of an operation fail with a 500.
	failNext map[string]int
}

type fakeInstance struct {
	group     string
	state     string
	protected bool
	// active lifecycle action, when state is Terminating:Wait
	hook           string
	deadline       time.Time
	globalDeadline time.Time
	heartbeats     int
	completed      []string
}

func newFakeASG() *fakeASG {
	return &fakeASG{
		hooks:     map[string][]types.LifecycleHook{},
		instances: map[string]*fakeInstance{},
		calls:     map[string]int{},
		failNext:  map[string]int{},
	}
}

func (f *fakeASG) addHook(group, name, transition string, heartbeat time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks[group] = append(f.hooks[group], types.LifecycleHook{
		AutoScalingGroupName: aws.String(group),
		LifecycleHookName:    aws.String(name),
		LifecycleTransition:  aws.String(transition),
		HeartbeatTimeout:     aws.Int32(int32(heartbeat / time.Second)),
		GlobalTimeout:        aws.Int32(int32(min(48*time.Hour, 100*heartbeat) / time.Second)),
		DefaultResult:        aws.String("ABANDON"),
	})
}

func (f *fakeASG) addInstance(id, group string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances[id] = &fakeInstance{group: group, state: "InService"}
}

// scaleIn puts the instance into Terminating:Wait on its group's termination hook.
func (f *fakeASG) scaleIn(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.instances[id]
	for _, h := range f.hooks[in.group] {
		if aws.ToString(h.LifecycleTransition) != TransitionTerminating {
			continue
		}
		in.state = "Terminating:Wait"
		in.hook = aws.ToString(h.LifecycleHookName)
		now := time.Now()
		in.deadline = now.Add(time.Duration(aws.ToInt32(h.HeartbeatTimeout)) * time.Second)
		in.globalDeadline = now.Add(time.Duration(aws.ToInt32(h.GlobalTimeout)) * time.Second)
		return
	}
	in.state = "Terminating:Proceed"
}

func (f *fakeASG) instance(id string) fakeInstance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.instances[id]
}

// expire applies the hook's default result to an action whose time ran out.
func (f *fakeASG) expireLocked(in *fakeInstance) {
	now := time.Now()
	if in.state == "Terminating:Wait" && (!now.Before(in.deadline) || !now.Before(in.globalDeadline)) {
		in.state = "Terminating:Proceed"
	}
}

func (f *fakeASG) call(op string) error {
	f.calls[op]++
	if f.failNext[op] > 0 {
		f.failNext[op]--
		return &smithy.GenericAPIError{Code: "InternalFailure", Message: "injected failure", Fault: smithy.FaultServer}
	}
	return nil
}

func noAction(id string) error {
	return &smithy.GenericAPIError{Code: "ValidationError", Message: "No active Lifecycle Action found with instance ID " + id, Fault: smithy.FaultClient}
}

func (f *fakeASG) activeLocked(group, hook, id string) (*fakeInstance, error) {
	in := f.instances[id]
	if in == nil || in.group != group {
		return nil, noAction(id)
	}
	f.expireLocked(in)
	if in.state != "Terminating:Wait" || in.hook != hook {
		return nil, noAction(id)
	}
	return in, nil
}

func (f *fakeASG) CompleteLifecycleAction(_ context.Context, in *autoscaling.CompleteLifecycleActionInput, _ ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CompleteLifecycleAction"); err != nil {
		return nil, err
	}
	inst, err := f.activeLocked(aws.ToString(in.AutoScalingGroupName), aws.ToString(in.LifecycleHookName), aws.ToString(in.InstanceId))
	if err != nil {
		return nil, err
	}
	inst.completed = append(inst.completed, aws.ToString(in.LifecycleActionResult))
	inst.state = "Terminating:Proceed"
	return &autoscaling.CompleteLifecycleActionOutput{}, nil
}

func (f *fakeASG) RecordLifecycleActionHeartbeat(_ context.Context, in *autoscaling.RecordLifecycleActionHeartbeatInput, _ ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("RecordLifecycleActionHeartbeat"); err != nil {
		return nil, err
	}
	inst, err := f.activeLocked(aws.ToString(in.AutoScalingGroupName), aws.ToString(in.LifecycleHookName), aws.ToString(in.InstanceId))
	if err != nil {
		return nil, err
	}
	for _, h := range f.hooks[inst.group] {
		if aws.ToString(h.LifecycleHookName) == inst.hook {
			inst.deadline = time.Now().Add(time.Duration(aws.ToInt32(h.HeartbeatTimeout)) * time.Second)
		}
	}
	inst.heartbeats++
	return &autoscaling.RecordLifecycleActionHeartbeatOutput{}, nil
}

func (f *fakeASG) DescribeLifecycleHooks(_ context.Context, in *autoscaling.DescribeLifecycleHooksInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeLifecycleHooksOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribeLifecycleHooks"); err != nil {
		return nil, err
	}
	group := aws.ToString(in.AutoScalingGroupName)
	if _, ok := f.hooks[group]; !ok {
		found := false
		for _, i := range f.instances {
			found = found || i.group == group
		}
		if !found {
			return nil, &smithy.GenericAPIError{Code: "ValidationError", Message: fmt.Sprintf("Group %s not found", group)}
		}
	}
	return &autoscaling.DescribeLifecycleHooksOutput{LifecycleHooks: append([]types.LifecycleHook(nil), f.hooks[group]...)}, nil
}

func (f *fakeASG) DescribeAutoScalingInstances(_ context.Context, in *autoscaling.DescribeAutoScalingInstancesInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingInstancesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribeAutoScalingInstances"); err != nil {
		return nil, err
	}
	out := &autoscaling.DescribeAutoScalingInstancesOutput{}
	for _, id := range in.InstanceIds {
		inst := f.instances[id]
		if inst == nil {
			continue
		}
		f.expireLocked(inst)
		out.AutoScalingInstances = append(out.AutoScalingInstances, types.AutoScalingInstanceDetails{
			InstanceId:           aws.String(id),
			AutoScalingGroupName: aws.String(inst.group),
			LifecycleState:       aws.String(inst.state),
			ProtectedFromScaleIn: aws.Bool(inst.protected),
		})
	}
	return out, nil
}

func (f *fakeASG) SetInstanceProtection(_ context.Context, in *autoscaling.SetInstanceProtectionInput, _ ...func(*autoscaling.Options)) (*autoscaling.SetInstanceProtectionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("SetInstanceProtection"); err != nil {
		return nil, err
	}
	for _, id := range in.InstanceIds {
		inst := f.instances[id]
		if inst == nil || inst.group != aws.ToString(in.AutoScalingGroupName) {
			return nil, &smithy.GenericAPIError{Code: "ValidationError", Message: "The instance " + id + " is not part of Auto Scaling group " + aws.ToString(in.AutoScalingGroupName) + "."}
		}
	}
	for _, id := range in.InstanceIds {
		f.instances[id].protected = aws.ToBool(in.ProtectedFromScaleIn)
	}
	return &autoscaling.SetInstanceProtectionOutput{}, nil
}
