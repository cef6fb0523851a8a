package awsfront

// The warm pool's moves: filling it, an instance entering it (Warmed:Pending:Wait, then the
// pool state), leaving it on a scale-out and returning to it on a scale-in (ReuseOnScaleIn).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

// poolTarget is the number of instances the group's warm pool keeps: the prepared capacity
// (MaxGroupPreparedCapacity, or the group's MaxSize) less the desired capacity, at least the
// pool's MinSize.
func poolTarget(cfg warmConfig, g asgtypes.AutoScalingGroup) int {
	prepared := cfg.maxPrepared
	if prepared < 0 {
		prepared = aws.ToInt32(g.MaxSize)
	}
	return int(max(prepared-aws.ToInt32(g.DesiredCapacity), cfg.minSize, 0))
}

// fillPool launches instances into the group's warm pool until it holds its target; each
// goes through Warmed:Pending (and Warmed:Pending:Wait on the launching hooks) to the pool
// state. A pool above its target is left as it is (the front does not shrink it).
func (f *Front) fillPool(ctx context.Context, group string) error {
	cfg, ok, err := f.warmConfigOf(ctx, group)
	if err != nil || !ok {
		return err
	}
	out, err := f.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		return fmt.Errorf("describe group %s: %v", group, err)
	}
	g := out.AutoScalingGroups[0]
	f.mu.Lock()
	have := 0
	for _, w := range f.pool {
		if w.group == group {
			have++
		}
	}
	f.mu.Unlock()
	var errs []error
	for range poolTarget(cfg, g) - have {
		if err := f.launchIntoPool(ctx, g, cfg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// launchIntoPool launches one instance from the group's launch template into its warm pool.
func (f *Front) launchIntoPool(ctx context.Context, g asgtypes.AutoScalingGroup, cfg warmConfig) error {
	group := aws.ToString(g.AutoScalingGroupName)
	in := &ec2.RunInstancesInput{MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}
	if lt := g.LaunchTemplate; lt != nil {
		in.LaunchTemplate = &ec2types.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplateId,
			LaunchTemplateName: lt.LaunchTemplateName, Version: lt.Version}
	}
	az := ""
	if len(g.AvailabilityZones) > 0 {
		az = g.AvailabilityZones[0]
		in.Placement = &ec2types.Placement{AvailabilityZone: aws.String(az)}
	}
	out, err := f.ec2.RunInstances(ctx, in)
	if err != nil {
		return fmt.Errorf("launch into the warm pool of %s: %w", group, err)
	}
	if len(out.Instances) != 1 {
		return fmt.Errorf("launch into the warm pool of %s: %d instances", group, len(out.Instances))
	}
	i := out.Instances[0]
	w := &warmInstance{id: aws.ToString(i.InstanceId), group: group, az: az, itype: string(i.InstanceType), state: StateWarmedPending, target: cfg.target()}
	f.mu.Lock()
	if f.pool == nil {
		f.pool = map[string]*warmInstance{}
	}
	f.pool[w.id] = w
	f.mu.Unlock()
	_ = f.imds.Update(w.id, func(in *imdsfake.Instance) { in.TargetLifecycleState = cfg.target() })
	f.log.Info().Str("instance_id", w.id).Str("asg_name", group).Msg("launched into the warm pool: Warmed:Pending")
	return f.enterPool(ctx, w, cfg, "EC2")
}

// enterPool takes a warm instance in Warmed:Pending to the pool state: held on the group's
// launching hooks in Warmed:Pending:Wait first (the notice's Origin is where it came from,
// its Destination WarmPool), as Auto Scaling does.
func (f *Front) enterPool(ctx context.Context, w *warmInstance, cfg warmConfig, origin string) error {
	hooks, err := f.groupHooks(ctx, w.group, TransitionLaunching)
	if err != nil {
		return err
	}
	if len(hooks) == 0 {
		return f.warmReady(ctx, w, cfg, nil)
	}
	h := &hold{instanceID: w.id, group: w.group, transition: TransitionLaunching,
		wait: StateWarmedPendingWait, proceed: StateWarmedPendingProceed, toPool: true}
	return f.startHold(ctx, h, hooks, map[string]string{"Origin": origin, "Destination": "WarmPool"})
}

// warmReady puts the warm instance in the pool state, stopping it first unless the pool keeps
// instances running. The instance and the launch action that held it (h; nil for none) enter
// the pool state together, once the instance is stopped: no reader sees one in the pool and
// the other still Warmed:Pending:Proceed.
func (f *Front) warmReady(ctx context.Context, w *warmInstance, cfg warmConfig, h *hold) error {
	var err error
	if cfg.poolState != "Running" {
		if _, serr := f.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{w.id}}); serr != nil {
			err = fmt.Errorf("stop warm pool instance %s: %w", w.id, serr)
		}
	}
	f.mu.Lock()
	w.state = cfg.target()
	if h != nil {
		h.setState(w.state)
	}
	f.mu.Unlock()
	f.log.Info().Str("instance_id", w.id).Str("asg_name", w.group).Str("state", w.state).Msg("warm pool instance ready")
	return err
}

// settleWarm ends a hold of an instance on its way into the warm pool (h.toPool): entering
// it (launching hooks), where CONTINUE makes it ready and ABANDON terminates it (the pool is
// filled again); or returning to it on a scale-in (terminating hooks), where either result
// takes it out of the group and into Warmed:Pending. The hold's final state is set here.
func (f *Front) settleWarm(h *hold, result string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := f.log.With().Str("instance_id", h.instanceID).Str("asg_name", h.group).Logger()
	cfg := f.warmConfigOr(ctx, h.group)
	f.mu.Lock()
	w := f.pool[h.instanceID]
	f.mu.Unlock()
	switch {
	case h.transition == TransitionLaunching && result == "CONTINUE" && w != nil:
		if err := f.warmReady(ctx, w, cfg, h); err != nil {
			log.Error().Err(err).Msg("warm pool instance ready")
		}
	case h.transition == TransitionLaunching:
		f.mu.Lock()
		delete(f.pool, h.instanceID)
		f.mu.Unlock()
		_ = f.imds.Update(h.instanceID, func(in *imdsfake.Instance) { in.TargetLifecycleState = StateTerminated })
		if _, err := f.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{h.instanceID}}); err != nil {
			log.Error().Err(err).Msg("terminate an abandoned warm pool instance")
		}
		f.setHoldState(h, StateTerminated)
		if err := f.fillPool(ctx, h.group); err != nil {
			log.Error().Err(err).Msg("fill the warm pool")
		}
	default:
		if err := f.returnToPool(ctx, h, cfg); err != nil {
			log.Error().Err(err).Msg("return to the warm pool")
		}
	}
	log.Info().Str("result", result).Str("transition", h.transition).Msg("warm pool hold finished")
}

func (f *Front) setHoldState(h *hold, s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h.setState(s)
}

// returnToPool takes a scaled-in instance out of its group (moto) into the warm pool.
func (f *Front) returnToPool(ctx context.Context, h *hold, cfg warmConfig) error {
	az := ""
	if out, err := f.asg.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{h.instanceID}}); err == nil && len(out.AutoScalingInstances) == 1 {
		az = aws.ToString(out.AutoScalingInstances[0].AvailabilityZone)
	}
	if _, err := f.asg.DetachInstances(ctx, &autoscaling.DetachInstancesInput{AutoScalingGroupName: aws.String(h.group),
		InstanceIds: []string{h.instanceID}, ShouldDecrementDesiredCapacity: aws.Bool(h.decrement)}); err != nil {
		return fmt.Errorf("take %s out of %s: %w", h.instanceID, h.group, err)
	}
	w := &warmInstance{id: h.instanceID, group: h.group, az: az, itype: "t3.medium", state: StateWarmedPending, target: cfg.target()}
	if out, err := f.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{h.instanceID}}); err == nil &&
		len(out.Reservations) == 1 && len(out.Reservations[0].Instances) == 1 {
		w.itype = string(out.Reservations[0].Instances[0].InstanceType)
	}
	f.mu.Lock()
	if f.pool == nil {
		f.pool = map[string]*warmInstance{}
	}
	f.pool[w.id] = w
	h.setState(StateWarmedPending)
	f.mu.Unlock()
	f.log.Info().Str("instance_id", w.id).Str("asg_name", w.group).Msg("returned to the warm pool: Warmed:Pending")
	return f.enterPool(ctx, w, cfg, "AutoScalingGroup")
}

// startScaleIn starts a scale-in of the instance: back to the warm pool when the group's
// pool has ReuseOnScaleIn, terminated otherwise.
func (f *Front) startScaleIn(ctx context.Context, instanceID string) error {
	_, err := f.startTerminationTo(ctx, instanceID, true, f.reuseTarget(ctx, instanceID))
	return err
}

// reuseTarget is the warm pool's target state when a scale-in returns the instance to its
// group's pool (ReuseOnScaleIn), "" when it terminates it.
func (f *Front) reuseTarget(ctx context.Context, instanceID string) string {
	out, err := f.asg.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil || len(out.AutoScalingInstances) != 1 {
		return ""
	}
	cfg, ok, err := f.warmConfigOf(ctx, aws.ToString(out.AutoScalingInstances[0].AutoScalingGroupName))
	if err != nil || !ok || !cfg.reuse {
		return ""
	}
	return cfg.target()
}

// scaleOutFromPool answers SetDesiredCapacity when the group's warm pool has ready instances
// and the capacity grows: they leave the pool first (into the group, Pending, held in
// Pending:Wait on the launching hooks with Origin WarmPool, started again when stopped, IMDS
// InService), the rest is launched as usual, and the pool is filled again. It reports
// whether it answered.
func (f *Front) scaleOutFromPool(c *call) bool {
	p := c.req.Params
	group := p["AutoScalingGroupName"]
	desired, err := strconv.Atoi(p["DesiredCapacity"])
	if group == "" || err != nil {
		return false
	}
	ctx := c.r.Context()
	out, err := f.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		return false
	}
	g := out.AutoScalingGroups[0]
	// moto's desired capacity is AWS's plus the scale-ins held by a hook (see
	// addPendingDecrements).
	f.mu.Lock()
	pending := f.pendingDecrementsLocked(group)
	f.mu.Unlock()
	current := int(aws.ToInt32(g.DesiredCapacity)) - pending
	grow := desired - current
	if grow <= 0 || int32(desired) > aws.ToInt32(g.MaxSize) {
		return false
	}
	f.mu.Lock()
	var ready []*warmInstance
	for _, w := range f.pool {
		if w.group == group && strings.HasPrefix(w.state, "Warmed:") && w.state != StateWarmedPending && f.waitingLocked(w.id) == nil {
			ready = append(ready, w)
		}
	}
	slices.SortFunc(ready, func(a, b *warmInstance) int { return strings.Compare(a.id, b.id) })
	ready = ready[:min(grow, len(ready))]
	for _, w := range ready {
		delete(f.pool, w.id)
	}
	f.mu.Unlock()
	if len(ready) == 0 {
		return false
	}
	hooks, err := f.groupHooks(ctx, group, TransitionLaunching)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return true
	}
	var errs []error
	f.launchMu.Lock()
	for _, w := range ready {
		stopped := w.state != StateWarmedRunning
		if _, err := f.asg.AttachInstances(ctx, &autoscaling.AttachInstancesInput{AutoScalingGroupName: aws.String(group), InstanceIds: []string{w.id}}); err != nil {
			errs = append(errs, fmt.Errorf("move %s from the warm pool into %s: %w", w.id, group, err))
			continue
		}
		if stopped {
			if _, err := f.ec2.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{w.id}}); err != nil {
				errs = append(errs, fmt.Errorf("start %s: %w", w.id, err))
			}
		}
		_ = f.imds.Update(w.id, func(in *imdsfake.Instance) { in.TargetLifecycleState = StateInService })
		f.log.Info().Str("instance_id", w.id).Str("asg_name", group).Msg("leaving the warm pool for the group")
		if len(hooks) > 0 {
			h := &hold{instanceID: w.id, group: group, transition: TransitionLaunching, wait: StatePendingWait, proceed: StatePendingProceed}
			if err := f.startHold(ctx, h, hooks, map[string]string{"Origin": "WarmPool", "Destination": "AutoScalingGroup"}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	f.launchMu.Unlock()
	if left := desired - len(ready); left > current {
		if err := f.withLaunches(ctx, group, func() error {
			_, err := f.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(int32(desired + pending))})
			return err
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := f.fillPool(ctx, group); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return true
	}
	writeASGEmpty(c, "SetDesiredCapacity")
	return true
}
