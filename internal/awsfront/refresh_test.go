package awsfront_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
)

func (e launchEnv) startRefresh(group string, prefs *asgtypes.RefreshPreferences) (string, error) {
	out, err := e.ASG.StartInstanceRefresh(e.t.Context(), &autoscaling.StartInstanceRefreshInput{
		AutoScalingGroupName: aws.String(group), Preferences: prefs})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.InstanceRefreshId), nil
}

func (e launchEnv) refresh(group, id string) asgtypes.InstanceRefresh {
	e.t.Helper()
	out, err := e.ASG.DescribeInstanceRefreshes(e.t.Context(), &autoscaling.DescribeInstanceRefreshesInput{
		AutoScalingGroupName: aws.String(group), InstanceRefreshIds: []string{id}})
	if err != nil || len(out.InstanceRefreshes) != 1 {
		e.t.Fatalf("describe refresh %s of %s: %v (%d found)", id, group, err, len(out.InstanceRefreshes))
	}
	return out.InstanceRefreshes[0]
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// refreshWatch is what playing the agents' part through a refresh saw.
type refreshWatch struct {
	minInService, maxLive int
	heldTerminating       int // polls where an old instance waited in Terminating:Wait
	// The first polls that saw an instance in Terminating:Wait and a new one in service (0:
	// none). The test completes launches itself, so a new instance is in service at the
	// earliest one poll after the one that saw it pending.
	firstTermination, firstInService int
	states                           map[string]string
}

// playAgents completes each held instance's action the way the agents do, polling every
// 50 ms until the refresh ends: a launch once seen in Pending:Wait, a termination only once
// every instance launched before it is in service (a manager's drain waits for its
// replacement). It records, every poll, the instances in service and those in service or
// pending, and fails if the desired capacity shown ever differs from desired.
func (e launchEnv) playAgents(group, refreshID string, desired int32, old map[string]bool) refreshWatch {
	e.t.Helper()
	w := refreshWatch{minInService: 1 << 30}
	deadline := time.Now().Add(2 * time.Minute)
	for poll := 1; ; poll++ {
		st := e.states(group)
		if d := e.desired(group); d != desired {
			e.t.Fatalf("desired capacity shown during the refresh: %d, want %d (states %v)", d, desired, st)
		}
		inService, live, pending := 0, 0, 0
		for id, s := range st {
			switch s {
			case "InService":
				inService++
				live++
				if !old[id] && w.firstInService == 0 {
					w.firstInService = poll
				}
			case awsfront.StatePendingWait, "Pending":
				live++
				pending++
			case awsfront.StateTerminatingWait:
				w.heldTerminating++
				if w.firstTermination == 0 {
					w.firstTermination = poll
				}
			}
		}
		w.minInService, w.maxLive = min(w.minInService, inService), max(w.maxLive, live)
		e.completeAsAgents(group, st, pending)
		r := e.refresh(group, refreshID)
		if r.Status != asgtypes.InstanceRefreshStatusInProgress && r.Status != asgtypes.InstanceRefreshStatusPending {
			w.states = e.states(group)
			return w
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("refresh still %s after 2 minutes: %+v, states %v", r.Status, r, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// completeAsAgents completes the held actions of the group's instances (states st) the way
// the agents do: a launch ("boot") at once, a termination ("drain") only once no instance is
// pending (pending of them: a manager's drain waits for its replacement). It returns the
// terminations it completed.
func (e launchEnv) completeAsAgents(group string, st map[string]string, pending int) int {
	e.t.Helper()
	n := 0
	for id, s := range st {
		switch {
		case s == awsfront.StatePendingWait:
			if err := e.complete(group, "boot", id, "", "CONTINUE"); err != nil && !noActive(err, id) {
				e.t.Fatalf("complete launch of %s: %v", id, err)
			}
		case s == awsfront.StateTerminatingWait && pending == 0:
			n++
			if err := e.complete(group, "drain", id, "", "CONTINUE"); err != nil && !noActive(err, id) {
				e.t.Fatalf("complete termination of %s: %v", id, err)
			}
		}
	}
	return n
}

func (e launchEnv) refreshGroup(name string) map[string]bool {
	e.t.Helper()
	e.group(name, 3)
	e.hook(name, "drain", awsfront.TransitionTerminating, 60, "ABANDON")
	e.hook(name, "boot", awsfront.TransitionLaunching, 60, "ABANDON")
	old := map[string]bool{}
	for id := range e.states(name) {
		old[id] = true
	}
	return old
}

// TestInstanceRefresh: through the real SDK, StartInstanceRefresh replaces every instance of
// a group as AWS does, with the group's hooks honoured: by default (minimum healthy 90 %,
// maximum 100 %) it terminates one instance and launches its replacement at the same time,
// and terminates the next only once the replacement is in service (its launching hook
// completed); with a maximum of 200 % it launches first and terminates once the new
// instances are in service. A terminated instance waits in Terminating:Wait until its hook
// completes. The desired capacity stays throughout; DescribeInstanceRefreshes reports the
// status and percentage; checkpoints pause it; CancelInstanceRefresh stops it; AWS's
// refusals come with AWS's codes.
func TestInstanceRefresh(t *testing.T) {
	t.Parallel()
	e := newLaunchEnv(t)
	ctx := t.Context()

	t.Run("refusals", func(t *testing.T) {
		e.group("r0", 1)
		for _, tc := range []struct {
			name  string
			group string
			prefs *asgtypes.RefreshPreferences
			code  string
		}{
			{"min above 100", "r0", &asgtypes.RefreshPreferences{MinHealthyPercentage: aws.Int32(101)}, "ValidationError"},
			{"max below 100", "r0", &asgtypes.RefreshPreferences{MaxHealthyPercentage: aws.Int32(99)}, "ValidationError"},
			{"range above 100", "r0", &asgtypes.RefreshPreferences{MinHealthyPercentage: aws.Int32(0), MaxHealthyPercentage: aws.Int32(150)}, "ValidationError"},
			{"unknown group", "nope", nil, "ValidationError"},
			{"unsupported preference", "r0", &asgtypes.RefreshPreferences{SkipMatching: aws.Bool(true)}, "ValidationError"},
		} {
			if _, err := e.startRefresh(tc.group, tc.prefs); apiCode(err) != tc.code {
				t.Errorf("%s: StartInstanceRefresh error %v, want %s", tc.name, err, tc.code)
			}
		}
		if _, err := e.ASG.CancelInstanceRefresh(ctx, &autoscaling.CancelInstanceRefreshInput{AutoScalingGroupName: aws.String("r0")}); apiCode(err) != "ActiveInstanceRefreshNotFound" {
			t.Errorf("CancelInstanceRefresh without a refresh: %v, want ActiveInstanceRefreshNotFound", err)
		}
		out, err := e.ASG.DescribeInstanceRefreshes(ctx, &autoscaling.DescribeInstanceRefreshesInput{AutoScalingGroupName: aws.String("r0")})
		if err != nil || len(out.InstanceRefreshes) != 0 {
			t.Errorf("DescribeInstanceRefreshes of a group never refreshed: %v, %v", out, err)
		}
	})

	t.Run("terminate and launch, one at a time", func(t *testing.T) {
		old := e.refreshGroup("r1")
		id, err := e.startRefresh("r1", &asgtypes.RefreshPreferences{InstanceWarmup: aws.Int32(0)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.startRefresh("r1", nil); apiCode(err) != "InstanceRefreshInProgress" {
			t.Fatalf("a second StartInstanceRefresh: %v, want InstanceRefreshInProgress", err)
		}
		w := e.playAgents("r1", id, 3, old)
		r := e.refresh("r1", id)
		if r.Status != asgtypes.InstanceRefreshStatusSuccessful || aws.ToInt32(r.PercentageComplete) != 100 || aws.ToInt32(r.InstancesToUpdate) != 0 || r.EndTime == nil {
			t.Fatalf("refresh at the end: %s %q %d%% to update %d end %v", r.Status, aws.ToString(r.StatusReason), aws.ToInt32(r.PercentageComplete), aws.ToInt32(r.InstancesToUpdate), r.EndTime)
		}
		if p := r.Preferences; aws.ToInt32(p.MinHealthyPercentage) != 90 || aws.ToInt32(p.MaxHealthyPercentage) != 100 {
			t.Errorf("preferences reported %+v, want AWS's defaults 90/100", p)
		}
		checkReplaced(t, e, "r1", old, w.states)
		// Bounds, not exact values: the agents' poll may miss the moment at the bound.
		if w.minInService < 2 || w.maxLive > 3 {
			t.Errorf("in service at least %d, in service or pending at most %d; want at least 2 and at most 3 (one at a time, within 100 %%)", w.minInService, w.maxLive)
		}
		if w.heldTerminating == 0 {
			t.Errorf("no instance was seen waiting in Terminating:Wait on its hook")
		}
		for o := range old {
			if a, _ := e.Front.LifecycleAction(o); a.Result != "CONTINUE" || a.Completions != 1 || a.TimedOut {
				t.Errorf("termination action of %s: %+v; want one CONTINUE", o, a)
			}
		}
	})

	t.Run("launch before terminating", func(t *testing.T) {
		old := e.refreshGroup("r2")
		id, err := e.startRefresh("r2", &asgtypes.RefreshPreferences{InstanceWarmup: aws.Int32(0),
			MinHealthyPercentage: aws.Int32(100), MaxHealthyPercentage: aws.Int32(200)})
		if err != nil {
			t.Fatal(err)
		}
		w := e.playAgents("r2", id, 3, old)
		if r := e.refresh("r2", id); r.Status != asgtypes.InstanceRefreshStatusSuccessful {
			t.Fatalf("refresh: %s %q", r.Status, aws.ToString(r.StatusReason))
		}
		checkReplaced(t, e, "r2", old, w.states)
		if w.minInService < 3 || w.maxLive > 6 {
			t.Errorf("in service at least %d, in service or pending at most %d; want at least 3 and at most 6", w.minInService, w.maxLive)
		}
		if w.firstTermination < w.firstInService {
			t.Errorf("an old instance was terminated (seen at poll %d) before any new one was in service (poll %d)", w.firstTermination, w.firstInService)
		}
	})

	t.Run("checkpoint, then cancel", func(t *testing.T) {
		old := e.refreshGroup("r3")
		id, err := e.startRefresh("r3", &asgtypes.RefreshPreferences{InstanceWarmup: aws.Int32(0),
			CheckpointPercentages: []int32{30, 100}, CheckpointDelay: aws.Int32(3600)})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			for id, s := range e.states("r3") {
				switch s {
				case awsfront.StatePendingWait:
					_ = e.complete("r3", "boot", id, "", "CONTINUE")
				case awsfront.StateTerminatingWait:
					_ = e.complete("r3", "drain", id, "", "CONTINUE")
				}
			}
			r := e.refresh("r3", id)
			if strings.Contains(aws.ToString(r.StatusReason), "checkpoint") {
				// Paused at the 30% checkpoint: one of three replaced (33%), or two when the
				// second replacement, already under way when the first completed, finished
				// before this poll (a loaded machine's polls are far apart): AWS too counts
				// what completed during the pause. Never all three.
				if p := aws.ToInt32(r.PercentageComplete); r.Status != asgtypes.InstanceRefreshStatusInProgress || p != 33 && p != 66 {
					t.Fatalf("at the checkpoint: %s %d%%, want InProgress 33%% (or 66%%)", r.Status, p)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint reached: %+v", r)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Nothing moves at a checkpoint: the old instances in service stay so for several
		// refresh ticks (the second may already be on its way out: its replacement can be in
		// service before the first old one is gone).
		inService := func() (n int) {
			for o := range old {
				if e.states("r3")[o] == "InService" {
					n++
				}
			}
			return n
		}
		before := inService()
		time.Sleep(4 * 250 * time.Millisecond) // several refresh ticks: a window of observation
		if after := inService(); after != before || after < 1 {
			t.Fatalf("old instances in service: %d at the checkpoint, %d during its delay; want the same, at least 1", before, after)
		}
		out, err := e.ASG.CancelInstanceRefresh(ctx, &autoscaling.CancelInstanceRefreshInput{AutoScalingGroupName: aws.String("r3")})
		if err != nil || aws.ToString(out.InstanceRefreshId) != id {
			t.Fatalf("CancelInstanceRefresh: %v, %v", out, err)
		}
		waitRefresh(t, e, "r3", id, asgtypes.InstanceRefreshStatusCancelled)
		if d := e.desired("r3"); d != 3 {
			t.Errorf("desired after the cancel: %d", d)
		}
	})

	t.Run("scale-in held by a hook: the desired capacity is lower at once", func(t *testing.T) {
		e.refreshGroup("r4")
		if _, err := e.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("r4"), DesiredCapacity: aws.Int32(2)}); err != nil {
			t.Fatal(err)
		}
		if d := e.desired("r4"); d != 2 {
			t.Fatalf("desired while the scaled-in instance waits on its hook: %d, want 2", d)
		}
		// A scale-out meanwhile launches one (moto still counts the one on its way out).
		if _, err := e.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("r4"), DesiredCapacity: aws.Int32(3)}); err != nil {
			t.Fatal(err)
		}
		pending := 0
		for _, s := range e.states("r4") {
			if s == awsfront.StatePendingWait {
				pending++
			}
		}
		if d := e.desired("r4"); d != 3 || pending != 1 {
			t.Fatalf("after scaling out again: desired %d, %d launched; want 3 and 1", d, pending)
		}
	})

	t.Run("terminated without decrement: the replacement launches at once", func(t *testing.T) {
		old := e.refreshGroup("r5")
		var victim string
		for id := range old {
			victim = id
		}
		if _, err := e.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
			InstanceId: aws.String(victim), ShouldDecrementDesiredCapacity: aws.Bool(false)}); err != nil {
			t.Fatal(err)
		}
		st := e.states("r5")
		var fresh []string
		for id, s := range st {
			if !old[id] && s == awsfront.StatePendingWait {
				fresh = append(fresh, id)
			}
		}
		if st[victim] != awsfront.StateTerminatingWait || len(fresh) != 1 || e.desired("r5") != 3 {
			t.Fatalf("after terminating %s without decrement: %v, desired %d; want it in Terminating:Wait, one replacement in Pending:Wait, desired 3", victim, st, e.desired("r5"))
		}
		if err := e.complete("r5", "drain", victim, "", "CONTINUE"); err != nil {
			t.Fatal(err)
		}
		e.waitState("r5", victim, "")
		if st := e.states("r5"); len(st) != 3 || e.desired("r5") != 3 {
			t.Fatalf("after the termination: %v, desired %d; want 3 instances, desired 3 (no second replacement)", st, e.desired("r5"))
		}
	})
}

func waitRefresh(t *testing.T, e launchEnv, group, id string, want asgtypes.InstanceRefreshStatus) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := e.refresh(group, id)
		if r.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("refresh %s: %s, want %s", id, r.Status, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkReplaced asserts that none of the old instances is left, in the group or in EC2, and
// that the group holds as many new ones, in service, with its desired capacity unchanged.
func checkReplaced(t *testing.T, e launchEnv, group string, old map[string]bool, st map[string]string) {
	t.Helper()
	var fresh []string
	for id, s := range st {
		if old[id] {
			t.Errorf("old instance %s still in the group (%s)", id, s)
			continue
		}
		if s != "InService" {
			t.Errorf("new instance %s: %s, want InService", id, s)
		}
		fresh = append(fresh, id)
	}
	if len(fresh) != len(old) {
		t.Errorf("group %s holds %v, want %d new instances", group, st, len(old))
	}
	for o := range old {
		if s := e.ec2State(o); s != "terminated" && s != "shutting-down" {
			t.Errorf("old instance %s: EC2 says %q", o, s)
		}
	}
	if d := e.desired(group); d != int32(len(old)) {
		t.Errorf("desired capacity after the refresh: %d", d)
	}
}
