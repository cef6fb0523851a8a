package awsfront

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
)

// lifetimeLoop looks, every refreshTick, at each group with a maximum instance lifetime and
// replaces the instances that reached it (lifetimeStep), until the front closes.
func (f *Front) lifetimeLoop() {
	defer f.wg.Done()
	t := time.NewTicker(refreshTick)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		f.mu.Lock()
		groups := maps.Clone(f.life.max)
		f.mu.Unlock()
		for _, g := range slices.Sorted(maps.Keys(groups)) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := f.lifetimeStep(ctx, g, groups[g]); err != nil {
				f.log.Warn().Err(err).Str("asg_name", g).Msg("maximum instance lifetime step")
			}
			cancel()
		}
	}
}

// lifetimeStep replaces the group's instances that reached limit as AWS does by default (no
// instance maintenance policy): gradually, one at a time (up to 10 % of the desired capacity
// at once when several are due), each through the normal termination, in which the group's
// terminating hooks hold it in Terminating:Wait, with its replacement launched at the same time
// (the launching hooks hold that one in Pending:Wait) and the desired capacity kept: that is
// TerminateInstanceInAutoScalingGroup without decrement (startTermination). Only instances in
// service are replaced, the oldest first; those protected from scale-in are not (AWS: "use
// instance protection" to hold one back). The next replacement starts once the last one is
// over: its instances gone, the group back at its desired capacity with every instance in
// service (AWS pauses between replacements for a time it does not publish; the front waits
// for nothing more). Nothing is replaced while an instance refresh runs on the group.
func (f *Front) lifetimeStep(ctx context.Context, group string, limit time.Duration) error {
	f.launchMu.RLock() // no launch half done: its instance would look in service, unheld
	out, err := f.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	f.launchMu.RUnlock()
	if err != nil {
		return fmt.Errorf("describe group %s: %w", group, err)
	}
	if len(out.AutoScalingGroups) != 1 {
		f.mu.Lock() // the group was deleted: its maximum with it
		delete(f.life.max, group)
		delete(f.life.moving, group)
		f.mu.Unlock()
		return nil
	}
	g := out.AutoScalingGroups[0]
	f.mu.Lock()
	holds := f.overlayStatesLocked()
	desired := int(aws.ToInt32(g.DesiredCapacity)) - f.pendingDecrementsLocked(group)
	busy := false
	for _, r := range f.refreshes[group] {
		busy = busy || r.active()
	}
	moving := f.life.moving[group]
	inService := 0
	var candidates []string
	for _, in := range g.Instances {
		id := aws.ToString(in.InstanceId)
		_, held := holds[id]
		if moving[id] || held || in.LifecycleState != asgtypes.LifecycleStateInService {
			busy = true
			continue
		}
		inService++
		if !aws.ToBool(in.ProtectedFromScaleIn) {
			candidates = append(candidates, id)
		}
	}
	busy = busy || inService < desired
	if !busy && len(moving) > 0 {
		delete(f.life.moving, group) // the last replacement is over
	}
	f.mu.Unlock()
	if busy || len(candidates) == 0 {
		return nil
	}
	now := time.Now()
	ages, err := f.instanceAges(ctx, candidates, now)
	if err != nil {
		return err
	}
	var due []string
	for _, id := range candidates {
		if age, ok := ages[id]; ok && age >= limit {
			due = append(due, id)
		}
	}
	slices.SortFunc(due, func(a, b string) int { return cmp.Or(cmp.Compare(ages[b], ages[a]), cmp.Compare(a, b)) })
	due = due[:min(len(due), max(1, desired/10))]
	if len(due) == 0 {
		return nil
	}
	f.mu.Lock()
	if cur, ok := f.life.max[group]; !ok || cur != limit {
		f.mu.Unlock() // the maximum changed meanwhile (cleared by 0): the next step looks again
		return nil
	}
	if f.life.moving == nil {
		f.life.moving = map[string]map[string]bool{}
	}
	f.life.moving[group] = map[string]bool{}
	if f.life.replaced == nil {
		f.life.replaced = map[string][]LifetimeReplacement{}
	}
	for _, id := range due {
		f.life.moving[group][id] = true
		f.life.replaced[group] = append(f.life.replaced[group], LifetimeReplacement{InstanceID: id, Age: ages[id], Start: now})
	}
	f.mu.Unlock()
	var errs []error
	for _, id := range due {
		f.log.Info().Str("asg_name", group).Str("instance_id", id).Dur("age", ages[id]).Dur("max_instance_lifetime", limit).
			Msg("maximum instance lifetime reached: replacing the instance")
		if started, err := f.startTermination(ctx, id, false); err != nil {
			if started == "" { // no termination began: the next step looks at it again
				f.mu.Lock()
				delete(f.life.moving[group], id)
				f.mu.Unlock()
			}
			errs = append(errs, fmt.Errorf("replace %s of %s at its maximum lifetime: %w", id, group, err))
		}
	}
	return errors.Join(errs...)
}
