package awsfront

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

// refreshBounds turns the healthy percentages into instance counts for desired capacity n:
// at least minKeep instances stay in service and healthy, at most maxLive are in service or
// pending. Without room above the desired capacity (max 100 %) at least one instance is
// replaced at a time (terminate and launch); with a max above 100 % at least one is
// launched ahead (launch before terminating).
func refreshBounds(n, minPct, maxPct int) (minKeep, maxLive int) {
	minKeep = n * minPct / 100
	maxLive = n * maxPct / 100
	if maxPct > 100 && maxLive <= n {
		maxLive = n + 1
	}
	if maxLive <= n && minKeep >= n {
		minKeep = n - 1
	}
	return max(minKeep, 0), maxLive
}

// runRefresh drives r until it ends or the front closes.
func (f *Front) runRefresh(r *instanceRefresh) {
	defer f.wg.Done()
	t := time.NewTicker(refreshTick)
	defer t.Stop()
	log := f.log.With().Str("asg_name", r.Group).Str("refresh_id", r.ID).Logger()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		done, err := f.refreshStep(ctx, r)
		cancel()
		if err != nil {
			log.Warn().Err(err).Msg("instance refresh step")
		}
		if done {
			f.mu.Lock()
			st := r.Status
			f.mu.Unlock()
			log.Info().Str("status", st).Msg("instance refresh ended")
			return
		}
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

// refreshStep looks at the group once and starts what the percentages allow: terminations
// of old instances while enough stay healthy, launches while the group stays within its
// maximum. It reports whether the refresh has ended.
func (f *Front) refreshStep(ctx context.Context, r *instanceRefresh) (bool, error) {
	present, err := f.groupInstances(ctx, r.Group)
	if err != nil {
		return false, err
	}
	now := time.Now()
	f.mu.Lock()
	holds := f.overlayStatesLocked()
	if r.Status == RefreshPending {
		r.Status = RefreshInProgress
	}
	// What the group holds now.
	healthy, live, newPresent, oldGone, warm, inFlight := 0, 0, 0, 0, 0, 0
	for _, id := range r.Old {
		switch {
		case !present[id]:
			oldGone++
		case r.terminating[id]:
			inFlight++
		default:
			healthy++
			live++
		}
	}
	for id := range present {
		if r.old[id] {
			continue
		}
		st, held := holds[id]
		if held && strings.HasPrefix(st, "Terminating") {
			inFlight++
			continue
		}
		newPresent++
		live++
		if !slices.Contains(r.Launched, id) {
			r.Launched = append(r.Launched, id) // launched by the refresh, or in place of one abandoned
		}
		if held {
			inFlight++
			continue // Pending:Wait: not yet in service
		}
		if r.healthyAt[id].IsZero() {
			if r.healthyAt == nil {
				r.healthyAt = map[string]time.Time{}
			}
			r.healthyAt[id] = now
		}
		if now.Sub(r.healthyAt[id]) >= r.Warmup {
			healthy++
			warm++
		}
	}
	r.MinHealthySeen, r.MaxLiveSeen = min(r.MinHealthySeen, healthy), max(r.MaxLiveSeen, live)
	done := min(oldGone, warm)
	if len(r.Old) > 0 {
		r.Percent = done * 100 / len(r.Old)
	} else {
		r.Percent = 100
	}
	r.ToUpdate = len(r.Old) - done
	switch {
	case r.cancel && inFlight == 0:
		r.Status, r.End, r.Reason = RefreshCancelled, now, "Instance refresh cancelled by user request."
	case r.cancel:
	case done == len(r.Old):
		r.Status, r.End, r.Reason = RefreshSuccessful, now, ""
	}
	if r.Status != RefreshInProgress {
		ended := !r.active()
		f.mu.Unlock()
		return ended, nil
	}
	if r.nextCheck < len(r.Checkpoints) && r.Percent >= r.Checkpoints[r.nextCheck] && r.pauseUntil.IsZero() {
		r.pauseUntil = now.Add(r.CheckpointDelay)
		r.Reason = fmt.Sprintf("Waiting for the checkpoint at %d%% (%s).", r.Checkpoints[r.nextCheck], r.CheckpointDelay)
	}
	if !r.pauseUntil.IsZero() {
		if now.Before(r.pauseUntil) {
			f.mu.Unlock()
			return false, nil
		}
		r.pauseUntil, r.Reason = time.Time{}, ""
		r.nextCheck++
	}
	// Terminations: old instances, in order, while enough stay healthy without them.
	minKeep, maxLive := refreshBounds(r.Desired, r.MinHealthy, r.MaxHealthy)
	var terminate []string
	for _, id := range r.Old {
		if !present[id] || r.terminating[id] || healthy-1 < minKeep {
			continue
		}
		if r.terminating == nil {
			r.terminating = map[string]bool{}
		}
		r.terminating[id] = true
		terminate = append(terminate, id)
		healthy--
		live--
	}
	// Launches: one replacement per old instance, while the group stays within maxLive.
	launches := 0
	for newPresent+launches < len(r.Old) && live+launches < maxLive {
		launches++
	}
	r.TerminationsIssued += len(terminate)
	f.mu.Unlock()
	var errs []error
	for _, id := range terminate {
		// The hold decrements the group when the instance goes: the refresh's launch put
		// one more in moto's desired capacity for it.
		if _, err := f.startTermination(ctx, id, true); err != nil {
			errs = append(errs, fmt.Errorf("refresh %s: terminate %s: %w", r.Group, id, err))
		}
	}
	for range launches {
		if err := f.launchOne(ctx, r.Group, func() {}); err != nil {
			errs = append(errs, fmt.Errorf("refresh %s: launch: %w", r.Group, err))
		}
	}
	return false, errors.Join(errs...)
}

// launchReplacement launches the replacement of an instance terminated without a lower
// desired capacity (TerminateInstanceInAutoScalingGroup without decrement) at once, as AWS
// does, not once the instance is gone as moto would: moto's capacity goes one up now and
// down again when the instance goes (the hold decrements), so the capacity shown stays.
func (f *Front) launchReplacement(ctx context.Context, h *hold) error {
	return f.launchOne(ctx, h.group, func() {
		f.mu.Lock()
		h.decrement = true
		f.mu.Unlock()
	})
}

// launchOne makes moto launch one instance into group (its desired capacity one up), held
// by the group's launching hooks like any launch; launched runs once moto took the new
// capacity, before anyone can describe the group.
func (f *Front) launchOne(ctx context.Context, group string, launched func()) error {
	return f.withLaunches(ctx, group, func() error {
		out, err := f.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
		if err != nil || len(out.AutoScalingGroups) != 1 {
			return fmt.Errorf("describe group %s: %v", group, err)
		}
		// Above the maximum size when the group is at it (min = max = desired, as the
		// managers' group): AWS exceeds it while it replaces instances, and shows it unchanged;
		// moto launches above it and keeps it too.
		in := &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String(group),
			DesiredCapacity: aws.Int32(aws.ToInt32(out.AutoScalingGroups[0].DesiredCapacity) + 1)}
		if _, err = f.asg.UpdateAutoScalingGroup(ctx, in); err != nil {
			return err
		}
		launched()
		return nil
	})
}
