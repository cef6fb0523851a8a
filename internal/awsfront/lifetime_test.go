package awsfront_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

const day = 24 * time.Hour

// lifetimeRangeMsg is the message AWS gives for a MaxInstanceLifetime out of its range (as
// terraform-provider-aws#20844 quotes the API).
const lifetimeRangeMsg = "maxInstanceLifetime must be either equal to 0 or between 86400 and 31536000 seconds (inclusive). A value of 0 is used to remove a previously set value."

func (e launchEnv) maxLifetime(group string) *int32 {
	e.t.Helper()
	out, err := e.ASG.DescribeAutoScalingGroups(e.t.Context(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		e.t.Fatalf("describe group %s: %v", group, err)
	}
	return out.AutoScalingGroups[0].MaxInstanceLifetime
}

func (e launchEnv) setMaxLifetime(group string, secs int32) error {
	_, err := e.ASG.UpdateAutoScalingGroup(e.t.Context(), &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group), MaxInstanceLifetime: aws.Int32(secs)})
	return err
}

// lifetimeWatch is what playing the agents' part through lifetime replacements saw.
type lifetimeWatch struct {
	minInService, maxListed, maxTerminating, maxPending, heldTerminating int
	states                                                               map[string]string
}

// playLifetime completes held actions the way the agents do (a launch once seen in
// Pending:Wait, a termination only once no instance is pending: a manager's drain waits for
// its replacement), polling every 50 ms until done says so; it fails if the desired capacity
// shown ever differs from desired.
func (e launchEnv) playLifetime(group string, desired int32, done func(map[string]string) bool) lifetimeWatch {
	e.t.Helper()
	w := lifetimeWatch{minInService: 1 << 30}
	deadline := time.Now().Add(time.Minute)
	for {
		st := e.states(group)
		if d := e.desired(group); d != desired {
			e.t.Fatalf("desired capacity shown during the replacements: %d, want %d (states %v)", d, desired, st)
		}
		inService, pending, terminating := 0, 0, 0
		for _, s := range st {
			switch s {
			case "InService":
				inService++
			case awsfront.StatePendingWait, "Pending":
				pending++
			case awsfront.StateTerminatingWait, awsfront.StateTerminatingProceed:
				terminating++
			}
		}
		w.minInService, w.maxListed = min(w.minInService, inService), max(w.maxListed, len(st))
		w.maxPending, w.maxTerminating = max(w.maxPending, pending), max(w.maxTerminating, terminating)
		if done(st) {
			w.states = st
			return w
		}
		w.heldTerminating += e.completeAsAgents(group, st, pending)
		if time.Now().After(deadline) {
			e.t.Fatalf("replacements not over after a minute: %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMaxInstanceLifetime: through the real SDK, a group's MaxInstanceLifetime is checked as
// AWS checks it (0, or one day to one year), shown by DescribeAutoScalingGroups, kept by an
// update that does not name it and cleared by 0; and the instances that reach it are replaced
// as AWS does by default: one at a time, each terminated through the group's terminating hook
// (Terminating:Wait until its action completes) with its replacement launched at the same time
// and held by the launching hook, the desired capacity unchanged; an instance protected from
// scale-in is not replaced until its protection is lifted; instances launched since are not
// replaced; a large group replaces up to 10 % of its capacity at once.
func TestMaxInstanceLifetime(t *testing.T) {
	t.Parallel()
	e := newLaunchEnv(t)
	ctx := t.Context()

	t.Run("range", func(t *testing.T) {
		for _, secs := range []int32{1, 3600, 86399, 31536001, -1} {
			_, err := e.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
				AutoScalingGroupName: aws.String(fmt.Sprintf("l0-%d", secs)),
				LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt"), Version: aws.String("$Latest")},
				MinSize:              aws.Int32(0), MaxSize: aws.Int32(2), AvailabilityZones: []string{"us-east-1a"},
				MaxInstanceLifetime: aws.Int32(secs)})
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationError" || ae.ErrorMessage() != lifetimeRangeMsg {
				t.Errorf("CreateAutoScalingGroup with MaxInstanceLifetime %d: %v; want ValidationError %q", secs, err, lifetimeRangeMsg)
			}
		}
		out, err := e.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
		if err != nil || len(out.AutoScalingGroups) != 0 {
			t.Fatalf("groups after the refusals: %d, %v; want none created", len(out.AutoScalingGroups), err)
		}
		e.group("l0", 0)
		if v := e.maxLifetime("l0"); v != nil {
			t.Errorf("a group created without a maximum lifetime shows %d", *v)
		}
		for _, secs := range []int32{3600, 31536001} {
			if err := e.setMaxLifetime("l0", secs); apiCode(err) != "ValidationError" {
				t.Errorf("UpdateAutoScalingGroup with MaxInstanceLifetime %d: %v; want ValidationError", secs, err)
			}
		}
		for _, secs := range []int32{86400, 31536000, 2592000} {
			if err := e.setMaxLifetime("l0", secs); err != nil {
				t.Fatalf("UpdateAutoScalingGroup with MaxInstanceLifetime %d: %v", secs, err)
			}
			if v := e.maxLifetime("l0"); aws.ToInt32(v) != secs {
				t.Errorf("after setting %d, DescribeAutoScalingGroups shows %v", secs, v)
			}
		}
		if _, err := e.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
			AutoScalingGroupName: aws.String("l0"), MaxSize: aws.Int32(3)}); err != nil {
			t.Fatal(err)
		}
		if v := e.maxLifetime("l0"); aws.ToInt32(v) != 2592000 {
			t.Errorf("an update without MaxInstanceLifetime left %v, want 2592000 kept", v)
		}
		if err := e.setMaxLifetime("l0", 0); err != nil {
			t.Fatal(err)
		}
		if v := e.maxLifetime("l0"); v != nil {
			t.Errorf("after clearing with 0: %d", *v)
		}
		if _, err := e.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
			AutoScalingGroupName: aws.String("l0b"),
			LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt"), Version: aws.String("$Latest")},
			MinSize:              aws.Int32(0), MaxSize: aws.Int32(2), AvailabilityZones: []string{"us-east-1a"},
			MaxInstanceLifetime: aws.Int32(86400)}); err != nil {
			t.Fatal(err)
		}
		if v := e.maxLifetime("l0b"); aws.ToInt32(v) != 86400 {
			t.Errorf("created with 86400, shows %v", v)
		}
	})

	t.Run("replaced one at a time, hooks honoured, protection holds one back", func(t *testing.T) {
		old := e.refreshGroup("l1")
		var protected string
		for id := range old {
			protected = max(protected, id)
		}
		if _, err := e.ASG.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{AutoScalingGroupName: aws.String("l1"),
			InstanceIds: []string{protected}, ProtectedFromScaleIn: aws.Bool(true)}); err != nil {
			t.Fatal(err)
		}
		if err := e.setMaxLifetime("l1", 86400); err != nil {
			t.Fatal(err)
		}
		// Several of the front's ticks: nothing has reached a day.
		waitfor.Throughout(t, time.Second, 50*time.Millisecond, "nothing replaced before a day", func() error {
			if st, reps := e.states("l1"), e.Front.LifetimeReplacements("l1"); len(st) != 3 || len(reps) != 0 {
				return fmt.Errorf("%v, replacements %v", st, reps)
			}
			return nil
		})
		if aged, err := e.Front.AgeInstances(ctx, "l1", day+time.Hour); err != nil || len(aged) != 3 {
			t.Fatalf("AgeInstances: %v, %v", aged, err)
		}
		unprotected := func(st map[string]string) bool {
			for id := range old {
				if _, in := st[id]; in && id != protected {
					return false
				}
			}
			for id, s := range st {
				if s != "InService" && id != protected {
					return false
				}
			}
			return len(st) == 3
		}
		w := e.playLifetime("l1", 3, unprotected)
		if w.maxTerminating > 1 || w.maxPending > 1 || w.minInService < 2 || w.maxListed != 4 {
			t.Errorf("at most %d terminating and %d pending at once, at least %d in service, at most %d listed; want 1, 1, 2 and 4 (one at a time, the replacement launched while its instance terminates)",
				w.maxTerminating, w.maxPending, w.minInService, w.maxListed)
		}
		if w.heldTerminating == 0 {
			t.Errorf("no instance was seen held in Terminating:Wait on its hook")
		}
		if w.states[protected] != "InService" {
			t.Errorf("the protected instance %s: %q, want it left in service", protected, w.states[protected])
		}
		reps := e.Front.LifetimeReplacements("l1")
		if len(reps) != 2 {
			t.Fatalf("replacements %+v, want the 2 unprotected instances", reps)
		}
		for _, r := range reps {
			if !old[r.InstanceID] || r.InstanceID == protected || r.Age < day {
				t.Errorf("replacement %+v: want an old unprotected instance at least a day old", r)
			}
			if a, _ := e.Front.LifecycleAction(r.InstanceID); a.Result != "CONTINUE" || a.Completions != 1 || a.TimedOut {
				t.Errorf("termination action of %s: %+v; want one CONTINUE", r.InstanceID, a)
			}
			if s := e.ec2State(r.InstanceID); s != "terminated" && s != "shutting-down" {
				t.Errorf("replaced instance %s: EC2 says %q", r.InstanceID, s)
			}
		}
		for id := range w.states {
			if !old[id] {
				if a, ok := e.Front.LaunchAction(id); !ok || a.Result != "CONTINUE" {
					t.Errorf("replacement %s: launch action %+v, want held and continued", id, a)
				}
			}
		}
		// The instances launched since are a day younger: nothing more is replaced.
		waitfor.Throughout(t, time.Second, 50*time.Millisecond, "no replacement of the new instances", func() error {
			if n := len(e.Front.LifetimeReplacements("l1")); n != 2 {
				return fmt.Errorf("%d replacements, want still 2", n)
			}
			return nil
		})
		// Protection lifted: the protected one, past its lifetime, goes too.
		if _, err := e.ASG.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{AutoScalingGroupName: aws.String("l1"),
			InstanceIds: []string{protected}, ProtectedFromScaleIn: aws.Bool(false)}); err != nil {
			t.Fatal(err)
		}
		w = e.playLifetime("l1", 3, func(st map[string]string) bool {
			_, in := st[protected]
			return !in && unprotected(st)
		})
		if w.maxTerminating > 1 || w.maxListed > 4 {
			t.Errorf("replacing the once protected instance: %d terminating at once, %d listed", w.maxTerminating, w.maxListed)
		}
		if reps := e.Front.LifetimeReplacements("l1"); len(reps) != 3 || reps[2].InstanceID != protected {
			t.Errorf("replacements %+v, want the once protected %s third", reps, protected)
		}
	})

	t.Run("a group at its maximum size: replaced above it, shown unchanged", func(t *testing.T) {
		// min = max = desired, as Terraform's managers' group: the replacement launches while
		// its instance terminates, above the maximum, which DescribeAutoScalingGroups shows
		// unchanged, during and after.
		if _, err := e.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
			AutoScalingGroupName: aws.String("l3"),
			LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt"), Version: aws.String("$Latest")},
			MinSize:              aws.Int32(2), MaxSize: aws.Int32(2), DesiredCapacity: aws.Int32(2), AvailabilityZones: []string{"us-east-1a"},
			MaxInstanceLifetime: aws.Int32(86400)}); err != nil {
			t.Fatal(err)
		}
		e.hook("l3", "drain", awsfront.TransitionTerminating, 60, "ABANDON")
		e.hook("l3", "boot", awsfront.TransitionLaunching, 60, "ABANDON")
		old := map[string]bool{}
		for id := range e.states("l3") {
			old[id] = true
		}
		if _, err := e.Front.AgeInstances(ctx, "l3", day); err != nil {
			t.Fatal(err)
		}
		sizes := func() (int32, int32) {
			out, err := e.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"l3"}})
			if err != nil || len(out.AutoScalingGroups) != 1 {
				t.Fatalf("describe l3: %v", err)
			}
			return aws.ToInt32(out.AutoScalingGroups[0].MinSize), aws.ToInt32(out.AutoScalingGroups[0].MaxSize)
		}
		w := e.playLifetime("l3", 2, func(st map[string]string) bool {
			if lo, hi := sizes(); lo != 2 || hi != 2 {
				t.Fatalf("min and max size shown during the replacements: %d and %d, want 2 and 2", lo, hi)
			}
			for id, s := range st {
				if old[id] || s != "InService" {
					return false
				}
			}
			return len(st) == 2
		})
		if w.maxListed != 3 || w.maxTerminating > 1 {
			t.Errorf("at most %d listed, %d terminating at once; want 3 (the replacement above the maximum while its instance terminates) and 1", w.maxListed, w.maxTerminating)
		}
		if lo, hi := sizes(); lo != 2 || hi != 2 || e.desired("l3") != 2 {
			t.Errorf("after the replacements: min %d, max %d, desired %d; want 2, 2, 2", lo, hi, e.desired("l3"))
		}
	})

	t.Run("up to 10 % of a large group at once", func(t *testing.T) {
		e.group("l2", 20)
		e.hook("l2", "drain", awsfront.TransitionTerminating, 60, "ABANDON")
		if err := e.setMaxLifetime("l2", 86400); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Front.AgeInstances(ctx, "l2", 2*day); err != nil {
			t.Fatal(err)
		}
		waitfor.Until(t, 20*time.Second, "two replacements started", func() error {
			if reps := e.Front.LifetimeReplacements("l2"); len(reps) < 2 {
				return fmt.Errorf("replacements %+v", reps)
			}
			return nil
		})
		// Several ticks: none more while those two wait on their hook.
		waitfor.Throughout(t, time.Second, 50*time.Millisecond, "no third replacement", func() error {
			if reps := e.Front.LifetimeReplacements("l2"); len(reps) != 2 {
				return fmt.Errorf("replacements %+v, want 2 (10 %% of 20)", reps)
			}
			return nil
		})
		reps := e.Front.LifetimeReplacements("l2")
		waiting := 0
		for id, s := range e.states("l2") {
			if s == awsfront.StateTerminatingWait {
				waiting++
				if id != reps[0].InstanceID && id != reps[1].InstanceID {
					t.Errorf("%s waits in Terminating:Wait but was not replaced for its lifetime", id)
				}
			}
		}
		if len(reps) != 2 || waiting != 2 || e.desired("l2") != 20 {
			t.Fatalf("replacements %+v, %d in Terminating:Wait, desired %d; want 2 (10 %% of 20), 2, 20", reps, waiting, e.desired("l2"))
		}
		if err := e.setMaxLifetime("l2", 0); err != nil { // cleared: no more replacements
			t.Fatal(err)
		}
		for _, r := range reps {
			if err := e.complete("l2", "drain", r.InstanceID, "", "CONTINUE"); err != nil {
				t.Fatal(err)
			}
		}
		waitfor.Throughout(t, time.Second, 50*time.Millisecond, "no replacement once the maximum is cleared", func() error {
			if n := len(e.Front.LifetimeReplacements("l2")); n != 2 {
				return fmt.Errorf("%d replacements, want still 2", n)
			}
			if st := e.states("l2"); len(st) != 20 {
				return fmt.Errorf("%d instances after the two replacements, want 20", len(st))
			}
			return nil
		})
	})
}
