package asg

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

const (
	launching = "autoscaling:EC2_INSTANCE_LAUNCHING"
)

func TestAction(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(f *fakeASG)
		hookName string
		want     Action
		wantErr  error
	}{
		{
			name: "terminating hook picked among launch and terminate hooks",
			setup: func(f *fakeASG) {
				f.addHook("g1", "on-launch", launching, time.Minute)
				f.addHook("g1", "drain", TransitionTerminating, 5*time.Minute)
				f.addInstance("i-1", "g1")
			},
			want: Action{ASG: "g1", Hook: "drain", State: "InService", HeartbeatTimeout: 5 * time.Minute,
				GlobalTimeout: 500 * time.Minute, DefaultResult: "ABANDON"},
		},
		{
			name: "state while terminating",
			setup: func(f *fakeASG) {
				f.addHook("g1", "drain", TransitionTerminating, time.Minute)
				f.addInstance("i-1", "g1")
				f.scaleIn("i-1")
			},
			want: Action{ASG: "g1", Hook: "drain", State: "Terminating:Wait", HeartbeatTimeout: time.Minute,
				GlobalTimeout: 100 * time.Minute, DefaultResult: "ABANDON"},
		},
		{
			name:    "instance in no group",
			setup:   func(f *fakeASG) { f.addHook("g1", "drain", TransitionTerminating, time.Minute) },
			wantErr: ErrNoHook,
		},
		{
			name: "group with only a launch hook",
			setup: func(f *fakeASG) {
				f.addHook("g1", "on-launch", launching, time.Minute)
				f.addInstance("i-1", "g1")
			},
			wantErr: ErrNoHook,
		},
		{
			name: "two termination hooks and none named",
			setup: func(f *fakeASG) {
				f.addHook("g1", "drain", TransitionTerminating, time.Minute)
				f.addHook("g1", "ship-logs", TransitionTerminating, time.Minute)
				f.addInstance("i-1", "g1")
			},
			wantErr: ErrAmbiguousHook,
		},
		{
			name: "two termination hooks, one named",
			setup: func(f *fakeASG) {
				f.addHook("g1", "drain", TransitionTerminating, 2*time.Minute)
				f.addHook("g1", "ship-logs", TransitionTerminating, time.Minute)
				f.addInstance("i-1", "g1")
			},
			hookName: "drain",
			want: Action{ASG: "g1", Hook: "drain", State: "InService", HeartbeatTimeout: 2 * time.Minute,
				GlobalTimeout: 200 * time.Minute, DefaultResult: "ABANDON"},
		},
		{
			name: "named hook missing",
			setup: func(f *fakeASG) {
				f.addHook("g1", "ship-logs", TransitionTerminating, time.Minute)
				f.addInstance("i-1", "g1")
			},
			hookName: "drain",
			wantErr:  ErrNoHook,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeASG()
			tt.setup(f)
			c := New(f)
			c.HookName = tt.hookName
			got, err := c.Action(t.Context(), "i-1")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Action error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Action = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestActionAPIError(t *testing.T) {
	f := newFakeASG()
	f.addHook("g1", "drain", TransitionTerminating, time.Minute)
	f.addInstance("i-1", "g1")
	f.failNext["DescribeAutoScalingInstances"] = 1
	_, err := New(f).Action(t.Context(), "i-1")
	if err == nil || errors.Is(err, ErrNoHook) {
		t.Fatalf("Action error = %v, want an API error that is not ErrNoHook", err)
	}
}

func TestComplete(t *testing.T) {
	tests := []struct {
		name          string
		scaleIn       bool
		completeFirst bool
		fail          int
		result        string
		wantErr       error
		wantAnyErr    bool
		wantState     string
		wantCompleted int
	}{
		{name: "active action", scaleIn: true, result: "CONTINUE", wantState: "Terminating:Proceed", wantCompleted: 1},
		{name: "abandon", scaleIn: true, result: "ABANDON", wantState: "Terminating:Proceed", wantCompleted: 1},
		{name: "already completed", scaleIn: true, completeFirst: true, result: "CONTINUE", wantErr: lifecycle.ErrNoAction, wantAnyErr: true, wantState: "Terminating:Proceed", wantCompleted: 1},
		{name: "never started", result: "CONTINUE", wantErr: lifecycle.ErrNoAction, wantAnyErr: true, wantState: "InService"},
		{name: "server error is not no-action", scaleIn: true, fail: 1, result: "CONTINUE", wantAnyErr: true, wantState: "Terminating:Wait"},
		{name: "bad result", scaleIn: true, result: "continue", wantAnyErr: true, wantState: "Terminating:Wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeASG()
			f.addHook("g1", "drain", TransitionTerminating, time.Minute)
			f.addInstance("i-1", "g1")
			if tt.scaleIn {
				f.scaleIn("i-1")
			}
			c := New(f)
			if tt.completeFirst {
				if err := c.Complete(t.Context(), "g1", "drain", "i-1", "CONTINUE"); err != nil {
					t.Fatalf("first Complete: %v", err)
				}
			}
			f.failNext["CompleteLifecycleAction"] = tt.fail
			err := c.Complete(t.Context(), "g1", "drain", "i-1", tt.result)
			if (err != nil) != tt.wantAnyErr {
				t.Fatalf("Complete error = %v, want error %t", err, tt.wantAnyErr)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Complete error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && errors.Is(err, lifecycle.ErrNoAction) {
				t.Fatalf("Complete error = %v, must not be ErrNoAction", err)
			}
			in := f.instance("i-1")
			if in.state != tt.wantState || len(in.completed) != tt.wantCompleted {
				t.Errorf("instance state %s with %d completions, want %s with %d", in.state, len(in.completed), tt.wantState, tt.wantCompleted)
			}
		})
	}
}

func TestInstanceStateAndGone(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(f *fakeASG)
		wantState string
		wantFound bool
		wantGone  bool
	}{
		{name: "in service", setup: func(f *fakeASG) { f.addInstance("i-1", "g1") }, wantState: "InService", wantFound: true},
		{name: "waiting on hook", setup: func(f *fakeASG) { f.addInstance("i-1", "g1"); f.scaleIn("i-1") }, wantState: "Terminating:Wait", wantFound: true},
		{name: "proceeding", setup: func(f *fakeASG) {
			f.addInstance("i-1", "g1")
			f.scaleIn("i-1")
			f.instances["i-1"].state = "Terminating:Proceed"
		}, wantState: "Terminating:Proceed", wantFound: true, wantGone: true},
		{name: "terminated", setup: func(f *fakeASG) {
			f.addInstance("i-1", "g1")
			f.instances["i-1"].state = "Terminated"
		}, wantState: "Terminated", wantFound: true, wantGone: true},
		{name: "unknown", setup: func(f *fakeASG) {}, wantGone: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeASG()
			f.addHook("g1", "drain", TransitionTerminating, time.Minute)
			tt.setup(f)
			c := New(f)
			state, found, err := c.InstanceState(t.Context(), "i-1")
			if err != nil || state != tt.wantState || found != tt.wantFound {
				t.Errorf("InstanceState = %q, %t, %v; want %q, %t, nil", state, found, err, tt.wantState, tt.wantFound)
			}
			gone, err := c.InstanceGone(t.Context(), "i-1")
			if err != nil || gone != tt.wantGone {
				t.Errorf("InstanceGone = %t, %v; want %t, nil", gone, err, tt.wantGone)
			}
		})
	}
	t.Run("api error is not gone", func(t *testing.T) {
		f := newFakeASG()
		f.failNext["DescribeAutoScalingInstances"] = 1
		gone, err := New(f).InstanceGone(t.Context(), "i-1")
		if err == nil || gone {
			t.Errorf("InstanceGone = %t, %v; want false and an error", gone, err)
		}
	})
}

func TestProtect(t *testing.T) {
	f := newFakeASG()
	f.addInstance("i-1", "g1")
	f.addInstance("i-2", "g1")
	c := New(f)
	if err := c.Protect(t.Context(), "g1", []string{"i-1", "i-2"}, true); err != nil {
		t.Fatalf("Protect: %v", err)
	}
	if !f.instance("i-1").protected || !f.instance("i-2").protected {
		t.Errorf("instances not protected")
	}
	if err := c.Protect(t.Context(), "g1", []string{"i-2"}, false); err != nil {
		t.Fatalf("Protect false: %v", err)
	}
	if !f.instance("i-1").protected || f.instance("i-2").protected {
		t.Errorf("protection i-1=%t i-2=%t, want true false", f.instance("i-1").protected, f.instance("i-2").protected)
	}
	if err := c.Protect(t.Context(), "other", []string{"i-1"}, true); err == nil {
		t.Errorf("Protect in the wrong group succeeded")
	}
}

func TestHeartbeatLoop(t *testing.T) {
	const timeout = time.Minute
	tests := []struct {
		name     string
		interval time.Duration
		limit    time.Duration
		runFor   time.Duration // cancel after this; 0: never
		fail     int           // transient heartbeat failures
		complete time.Duration // someone completes the action after this; 0: never
		// want
		beats      int
		stopAfter  time.Duration
		noAction   bool
		stillAlive bool
	}{
		{name: "beats keep the action alive past its timeout", interval: 20 * time.Second, limit: time.Hour,
			runFor: 290 * time.Second, beats: 15, stopAfter: 290 * time.Second, stillAlive: true},
		{name: "interval longer than the timeout lets the action expire", interval: 90 * time.Second, limit: time.Hour,
			beats: 1, stopAfter: 90 * time.Second, noAction: true},
		{name: "cap stops the beats", interval: 10 * time.Second, limit: 105 * time.Second,
			beats: 11, stopAfter: 105 * time.Second, stillAlive: true},
		{name: "transient failures are retried", interval: 20 * time.Second, limit: time.Hour, fail: 2,
			runFor: 290 * time.Second, beats: 13, stopAfter: 290 * time.Second, stillAlive: true},
		{name: "completed elsewhere stops the loop", interval: 20 * time.Second, limit: time.Hour,
			complete: 45 * time.Second, beats: 3, stopAfter: 60 * time.Second, noAction: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeASG()
				f.addHook("g1", "drain", TransitionTerminating, timeout)
				f.addInstance("i-1", "g1")
				f.scaleIn("i-1")
				f.failNext["RecordLifecycleActionHeartbeat"] = tt.fail
				c := New(f)
				ctx := t.Context()
				if tt.runFor > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.runFor)
					defer cancel()
				}
				if tt.complete > 0 {
					tm := time.AfterFunc(tt.complete, func() {
						if err := c.Complete(context.Background(), "g1", "drain", "i-1", "CONTINUE"); err != nil {
							t.Errorf("Complete: %v", err)
						}
					})
					defer tm.Stop()
				}
				start := time.Now()
				beats, err := HeartbeatLoop(ctx, tt.interval, tt.limit, func(ctx context.Context) error {
					return c.Heartbeat(ctx, "g1", "drain", "i-1")
				}, zerolog.New(zerolog.NewTestWriter(t)))
				if got := time.Since(start); got != tt.stopAfter {
					t.Errorf("loop stopped after %v, want %v", got, tt.stopAfter)
				}
				if beats != tt.beats {
					t.Errorf("beats = %d, want %d", beats, tt.beats)
				}
				if tt.noAction != errors.Is(err, lifecycle.ErrNoAction) {
					t.Errorf("loop error = %v, want ErrNoAction %t", err, tt.noAction)
				}
				if !tt.noAction && err != nil {
					t.Errorf("loop error = %v, want nil", err)
				}
				in := f.instance("i-1")
				f.mu.Lock()
				f.expireLocked(&in)
				f.mu.Unlock()
				if alive := in.state == "Terminating:Wait"; alive != tt.stillAlive {
					t.Errorf("action alive at the end = %t (state %s), want %t", alive, in.state, tt.stillAlive)
				}
				if in.heartbeats != tt.beats {
					t.Errorf("fake recorded %d heartbeats, loop counted %d", in.heartbeats, tt.beats)
				}
			})
		})
	}
}

func TestMembers(t *testing.T) {
	f := newFakeASG()
	f.addHook("g1", "drain", TransitionTerminating, time.Minute)
	ids := []string{"i-out"}
	for i := range 60 { // more than one DescribeAutoScalingInstances takes
		id := fmt.Sprintf("i-%02d", i)
		f.addInstance(id, "g1")
		ids = append(ids, id)
	}
	f.instances["i-07"].protected = true
	f.scaleIn("i-08")
	got, err := New(f).Members(t.Context(), ids)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	if len(got) != 60 || f.calls["DescribeAutoScalingInstances"] != 2 {
		t.Fatalf("%d members in %d calls, want 60 in 2", len(got), f.calls["DescribeAutoScalingInstances"])
	}
	if _, ok := got["i-out"]; ok {
		t.Errorf("an instance in no group is a member")
	}
	if m := got["i-07"]; m.ASG != "g1" || !m.Protected || m.State != "InService" {
		t.Errorf("i-07 = %+v, want protected in service in g1", m)
	}
	if m := got["i-08"]; m.State != "Terminating:Wait" || m.Protected {
		t.Errorf("i-08 = %+v, want Terminating:Wait", m)
	}
	f.failNext["DescribeAutoScalingInstances"] = 1
	if _, err := New(f).Members(t.Context(), ids); err == nil {
		t.Errorf("Members with Auto Scaling failing: no error")
	}
}
