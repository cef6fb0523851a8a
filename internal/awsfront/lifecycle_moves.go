package awsfront

// What starts a hold or ends an instance: a scale-in, a termination (or a return to the warm
// pool), the launches a call makes and their launching hooks, and the termination in moto.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

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
