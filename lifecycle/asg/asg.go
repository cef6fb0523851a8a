// Package asg is the Auto Scaling and EC2 side of a node's end: which lifecycle hook holds the
// instance, heartbeats, completion, instance state, scale-in protection, and what EC2 says of
// an instance (its state and addresses, to check a node's claim to it).
package asg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// API is the part of *autoscaling.Client this package uses, with the SDK's exact
// signatures so that the real client satisfies it; exposed for testing.
type API interface {
	CompleteLifecycleAction(ctx context.Context, params *autoscaling.CompleteLifecycleActionInput, optFns ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
	RecordLifecycleActionHeartbeat(ctx context.Context, params *autoscaling.RecordLifecycleActionHeartbeatInput, optFns ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error)
	DescribeLifecycleHooks(ctx context.Context, params *autoscaling.DescribeLifecycleHooksInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeLifecycleHooksOutput, error)
	DescribeAutoScalingInstances(ctx context.Context, params *autoscaling.DescribeAutoScalingInstancesInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingInstancesOutput, error)
	SetInstanceProtection(ctx context.Context, params *autoscaling.SetInstanceProtectionInput, optFns ...func(*autoscaling.Options)) (*autoscaling.SetInstanceProtectionOutput, error)
	DescribeAutoScalingGroups(ctx context.Context, params *autoscaling.DescribeAutoScalingGroupsInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
}

var _ API = (*autoscaling.Client)(nil)

// Action is the lifecycle hook (termination or launch) that holds an instance.
type Action = lifecycle.HookAction

// Errors.
var (
	// ErrNoHook: the instance is in no group, or its group has no hook of the transition.
	ErrNoHook = lifecycle.ErrNoHook
	// ErrAmbiguousHook: the group has several hooks of the transition and none was named.
	ErrAmbiguousHook = lifecycle.ErrAmbiguousHook
)

// Lifecycle transitions of the hooks this package drives.
const (
	TransitionTerminating = lifecycle.TransitionTerminating
	TransitionLaunching   = lifecycle.TransitionLaunching
)

// Client drives Auto Scaling lifecycle actions. It satisfies lifecycle.Hook,
// lifecycle.LaunchHook and the reaper's instance check.
type Client struct {
	api API
	// HookName, when set, picks this termination hook if a group has several.
	HookName string
	// LaunchHookName, when set, picks this launch hook if a group has several.
	LaunchHookName string
}

var (
	_ lifecycle.Hook       = (*Client)(nil)
	_ lifecycle.LaunchHook = (*Client)(nil)
)

// New returns a Client over api (an *autoscaling.Client or a fake).
func New(api API) *Client { return &Client{api: api} }

// Action finds the Auto Scaling group that holds instanceID and its
// EC2_INSTANCE_TERMINATING hook.
func (c *Client) Action(ctx context.Context, instanceID string) (Action, error) {
	return c.hookAction(ctx, instanceID, TransitionTerminating, c.HookName)
}

// LaunchAction finds the Auto Scaling group of instanceID, the instance's lifecycle state
// (Pending:Wait while a launch hook holds it) and the group's EC2_INSTANCE_LAUNCHING hook.
func (c *Client) LaunchAction(ctx context.Context, instanceID string) (Action, error) {
	return c.hookAction(ctx, instanceID, TransitionLaunching, c.LaunchHookName)
}

// hookAction finds the instance's group, its lifecycle state and the group's hook of
// transition: the one named name, or the only one.
func (c *Client) hookAction(ctx context.Context, instanceID, transition, name string) (Action, error) {
	kind := "termination"
	if transition == TransitionLaunching {
		kind = "launch"
	}
	state, group, found, err := c.describe(ctx, instanceID)
	if err != nil {
		return Action{}, err
	}
	if !found {
		return Action{}, fmt.Errorf("instance %s is in no auto scaling group: %w", instanceID, ErrNoHook)
	}
	out, err := c.api.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
	if err != nil {
		return Action{}, fmt.Errorf("describe lifecycle hooks of %s: %w", group, err)
	}
	var names []string
	var picked *Action
	for _, h := range out.LifecycleHooks {
		if aws.ToString(h.LifecycleTransition) != transition {
			continue
		}
		a := Action{
			ASG:              group,
			Hook:             aws.ToString(h.LifecycleHookName),
			State:            state,
			HeartbeatTimeout: time.Duration(aws.ToInt32(h.HeartbeatTimeout)) * time.Second,
			GlobalTimeout:    time.Duration(aws.ToInt32(h.GlobalTimeout)) * time.Second,
			DefaultResult:    aws.ToString(h.DefaultResult),
		}
		if a.DefaultResult == "" {
			a.DefaultResult = lifecycle.ResultAbandon
		}
		names = append(names, a.Hook)
		if name == "" || a.Hook == name {
			picked = &a
		}
	}
	switch {
	case len(names) == 0:
		return Action{}, fmt.Errorf("group %s has no %s hook: %w", group, transition, ErrNoHook)
	case picked == nil:
		return Action{}, fmt.Errorf("group %s has no %s hook named %q (it has %s): %w", group, kind, name, strings.Join(names, ", "), ErrNoHook)
	case name == "" && len(names) > 1:
		slices.Sort(names)
		return Action{}, fmt.Errorf("group %s has %s hooks %s: name the one to complete: %w", group, kind, strings.Join(names, ", "), ErrAmbiguousHook)
	}
	return *picked, nil
}

// Heartbeat records a heartbeat for the instance's lifecycle action, which resets its wait
// to the hook's full HeartbeatTimeout. A finished or unknown action gives ErrNoAction.
func (c *Client) Heartbeat(ctx context.Context, asg, hook, instanceID string) error {
	_, err := c.api.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(asg),
		LifecycleHookName:    aws.String(hook),
		InstanceId:           aws.String(instanceID),
	})
	if err != nil {
		return fmt.Errorf("heartbeat %s on hook %s of %s: %w", instanceID, hook, asg, mapNoAction(err))
	}
	return nil
}

// Complete completes the instance's lifecycle action with result (CONTINUE or ABANDON).
// An action that is not active (already completed, expired, unknown) gives ErrNoAction
// wrapped, so that a resumed drain can tell "done before" from a failure.
func (c *Client) Complete(ctx context.Context, asg, hook, instanceID, result string) error {
	if result != lifecycle.ResultContinue && result != lifecycle.ResultAbandon {
		return fmt.Errorf("lifecycle action result %q: must be %s or %s", result, lifecycle.ResultContinue, lifecycle.ResultAbandon)
	}
	_, err := c.api.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName:  aws.String(asg),
		LifecycleHookName:     aws.String(hook),
		LifecycleActionResult: aws.String(result),
		InstanceId:            aws.String(instanceID),
	})
	if err != nil {
		return fmt.Errorf("complete lifecycle action of %s on hook %s of %s with %s: %w", instanceID, hook, asg, result, mapNoAction(err))
	}
	return nil
}

// InstanceState returns the instance's Auto Scaling LifecycleState; found is false when
// the instance is in no group (never was, detached, or terminated and forgotten).
func (c *Client) InstanceState(ctx context.Context, instanceID string) (state string, found bool, err error) {
	state, _, found, err = c.describe(ctx, instanceID)
	return state, found, err
}

// InstanceGone reports whether Auto Scaling is done with the instance: in no group,
// Terminated, or Terminating:Proceed. It is Auto Scaling's view only: a detached instance is
// in no group too, and may be stopped for maintenance and come back; whether an instance is
// gone for good is EC2's to say (Instances), which is what the reaper asks.
func (c *Client) InstanceGone(ctx context.Context, instanceID string) (bool, error) {
	state, found, err := c.InstanceState(ctx, instanceID)
	if err != nil {
		return false, err
	}
	return !found || state == lifecycle.StateTerminated || state == lifecycle.StateTerminatingProceed, nil
}

// GroupTags returns the tags of Auto Scaling group name; found is false when the group does
// not exist (any more).
func (c *Client) GroupTags(ctx context.Context, name string) (tags map[string]string, found bool, err error) {
	out, err := c.api.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil {
		return nil, false, fmt.Errorf("describe auto scaling group %s: %w", name, err)
	}
	for _, g := range out.AutoScalingGroups {
		if aws.ToString(g.AutoScalingGroupName) != name {
			continue
		}
		tags = map[string]string{}
		for _, t := range g.Tags {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
		return tags, true, nil
	}
	return nil, false, nil
}

// describeBatch is the most instance ids one DescribeAutoScalingInstances takes.
const describeBatch = 50

// Members describes the instances as their Auto Scaling groups see them (group, lifecycle
// state, scale-in protection); instances in no group are absent from the map.
func (c *Client) Members(ctx context.Context, instanceIDs []string) (map[string]lifecycle.GroupMember, error) {
	out := make(map[string]lifecycle.GroupMember, len(instanceIDs))
	for batch := range slices.Chunk(instanceIDs, describeBatch) {
		res, err := c.api.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: batch})
		if err != nil {
			return nil, fmt.Errorf("describe auto scaling instances %s: %w", strings.Join(batch, ","), err)
		}
		for _, d := range res.AutoScalingInstances {
			out[aws.ToString(d.InstanceId)] = lifecycle.GroupMember{
				ASG:       aws.ToString(d.AutoScalingGroupName),
				State:     aws.ToString(d.LifecycleState),
				Protected: aws.ToBool(d.ProtectedFromScaleIn),
			}
		}
	}
	return out, nil
}

var _ lifecycle.ScaleIn = (*Client)(nil)

// Protect sets or clears scale-in protection on instances of group asg.
func (c *Client) Protect(ctx context.Context, asg string, instanceIDs []string, protect bool) error {
	if len(instanceIDs) == 0 {
		return nil
	}
	_, err := c.api.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
		AutoScalingGroupName: aws.String(asg),
		InstanceIds:          instanceIDs,
		ProtectedFromScaleIn: aws.Bool(protect),
	})
	if err != nil {
		return fmt.Errorf("set scale-in protection %t on %s in %s: %w", protect, strings.Join(instanceIDs, ","), asg, err)
	}
	return nil
}

// HeartbeatLoop beats every interval until ctx is done, the action is gone or limit has
// passed; see lifecycle.HeartbeatLoop, which it is. It returns the successful beats.
func HeartbeatLoop(ctx context.Context, interval, limit time.Duration, beat func(context.Context) error, log zerolog.Logger) (int, error) {
	return lifecycle.HeartbeatLoop(ctx, interval, limit, beat, log)
}

func (c *Client) describe(ctx context.Context, instanceID string) (state, group string, found bool, err error) {
	out, err := c.api.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{
		InstanceIds: []string{instanceID},
	})
	if err != nil {
		return "", "", false, fmt.Errorf("describe auto scaling instance %s: %w", instanceID, err)
	}
	for _, d := range out.AutoScalingInstances {
		if aws.ToString(d.InstanceId) == instanceID {
			return aws.ToString(d.LifecycleState), aws.ToString(d.AutoScalingGroupName), true, nil
		}
	}
	return "", "", false, nil
}

// mapNoAction adds lifecycle.ErrNoAction to Auto Scaling's "No active Lifecycle Action"
// ValidationError, keeping the original in the chain.
func mapNoAction(err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationError" &&
		strings.Contains(apiErr.ErrorMessage(), "No active Lifecycle Action") {
		return fmt.Errorf("%w: %w", lifecycle.ErrNoAction, err)
	}
	return err
}
