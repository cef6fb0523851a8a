package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// fakeLaunchHook is Auto Scaling for one instance with one launch hook. states, when set,
// are the states the instance shows on successive lookups (the last one stays).
type fakeLaunchHook struct {
	mu          sync.Mutex
	states      []string
	lookErrs    []error // returned, in order, by the next lookups
	noHook      bool
	ambiguous   bool
	completeErr error
	lookups     int
	heartbeats  int
	completions []string // "asg/hook/instance/result"
}

var _ LaunchHook = (*fakeLaunchHook)(nil)

func (f *fakeLaunchHook) state() string {
	if len(f.states) == 0 {
		return StateInService
	}
	return f.states[0]
}

func (f *fakeLaunchHook) LaunchAction(_ context.Context, id string) (HookAction, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if len(f.lookErrs) > 0 {
		err := f.lookErrs[0]
		f.lookErrs = f.lookErrs[1:]
		return HookAction{}, err
	}
	switch {
	case f.noHook:
		return HookAction{}, fmt.Errorf("group asg has no launch hook: %w", ErrNoHook)
	case f.ambiguous:
		return HookAction{}, fmt.Errorf("group asg has launch hooks a, b: %w", ErrAmbiguousHook)
	}
	st := f.state()
	if len(f.states) > 1 {
		f.states = f.states[1:]
	}
	return HookAction{ASG: "asg", Hook: "boot", State: st, HeartbeatTimeout: 30 * time.Second, DefaultResult: ResultAbandon}, nil
}

func (f *fakeLaunchHook) Heartbeat(_ context.Context, asg, hook, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !LaunchWaiting(f.state()) {
		return fmt.Errorf("heartbeat: %w", ErrNoAction)
	}
	f.heartbeats++
	return nil
}

func (f *fakeLaunchHook) Complete(_ context.Context, asg, hook, id, result string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.completeErr != nil {
		err := f.completeErr
		f.completeErr = nil
		return err
	}
	if !LaunchWaiting(f.state()) {
		return fmt.Errorf("complete: %w", ErrNoAction)
	}
	f.completions = append(f.completions, asg+"/"+hook+"/"+id+"/"+result)
	f.states = []string{StateInService}
	if result == ResultAbandon {
		f.states = []string{StateTerminated}
	}
	return nil
}

func (f *fakeLaunchHook) counts() (lookups, beats int, completions []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups, f.heartbeats, append([]string(nil), f.completions...)
}

func newLaunch(h LaunchHook) *Launch {
	return &Launch{Hook: h, InstanceID: "i-0123456789abcdef0", HeartbeatOverride: 10 * time.Millisecond, Poll: 10 * time.Millisecond, Log: zerolog.Nop()}
}

// answerWait bounds the waits for the background lookup's answer: Held returns as soon as
// it is known, so a generous bound costs nothing and a loaded machine gets its time.
const answerWait = 30 * time.Second

// mustBeHeld waits for the background lookup to find the instance held by the hook.
func mustBeHeld(t *testing.T, hold *LaunchHold) {
	t.Helper()
	if held, known := hold.Held(t.Context(), answerWait); !held || !known {
		t.Fatalf("Held = %v, %v; want held", held, known)
	}
}

// waitHeartbeats waits until the hold has sent at least n heartbeats.
func waitHeartbeats(t *testing.T, h *fakeLaunchHook, n int) {
	t.Helper()
	waitfor.Every(t, answerWait, 5*time.Millisecond, fmt.Sprintf("%d heartbeats", n), func() error {
		if _, beats, _ := h.counts(); beats < n {
			return fmt.Errorf("%d heartbeats", beats)
		}
		return nil
	})
}

// TestLaunchHeldHeartbeatsAndContinues: an instance in Pending:Wait is heartbeaten until the
// boot is over and completed once with CONTINUE, naming its group and hook.
func TestLaunchHeldHeartbeatsAndContinues(t *testing.T) {
	h := &fakeLaunchHook{states: []string{StatePendingWait}}
	hold := newLaunch(h).Start(t.Context())
	mustBeHeld(t, hold)
	waitHeartbeats(t, h, 2)
	rep, err := hold.Complete(t.Context(), ResultContinue)
	if err != nil {
		t.Fatal(err)
	}
	_, beats, done := h.counts()
	if !rep.Held || rep.Result != ResultContinue || rep.Heartbeats != beats || beats < 2 {
		t.Fatalf("report %+v with %d heartbeats, want held, CONTINUE, several heartbeats", rep, beats)
	}
	if len(done) != 1 || done[0] != "asg/boot/i-0123456789abcdef0/CONTINUE" {
		t.Fatalf("completions %v", done)
	}
	if again, err := hold.Complete(t.Context(), ResultAbandon); err != nil || again.Result != ResultContinue {
		t.Fatalf("a second Complete: %+v, %v; want the first's report", again, err)
	}
	if _, _, done = h.counts(); len(done) != 1 {
		t.Fatalf("completions after a second Complete: %v", done)
	}
}

// TestLaunchNotHeld: an instance in service (launched before the hook existed, or a reboot),
// in no group, or in a group with several launch hooks and none named, completes nothing.
func TestLaunchNotHeld(t *testing.T) {
	for name, h := range map[string]*fakeLaunchHook{
		"in service": {states: []string{StateInService}},
		"no hook":    {noHook: true},
		"ambiguous":  {ambiguous: true},
		"terminated": {states: []string{StateTerminated}},
	} {
		t.Run(name, func(t *testing.T) {
			hold := newLaunch(h).Start(t.Context())
			if held, known := hold.Held(t.Context(), answerWait); held || !known {
				t.Fatalf("Held = %v, %v; want known, not held", held, known)
			}
			rep, err := hold.Complete(t.Context(), ResultAbandon)
			if err != nil || rep.Held || rep.Result != "" {
				t.Fatalf("Complete = %+v, %v; want nothing held, nothing completed", rep, err)
			}
			if _, beats, done := h.counts(); beats != 0 || len(done) != 0 {
				t.Fatalf("%d heartbeats, completions %v; want none", beats, done)
			}
		})
	}
}

// TestLaunchPendingThenHeld: an instance still Pending when the agent starts is looked at again
// until the hook holds it; failed lookups are retried.
func TestLaunchPendingThenHeld(t *testing.T) {
	h := &fakeLaunchHook{lookErrs: []error{errors.New("throttled"), errors.New("throttled")},
		states: []string{StatePending, StatePending, StatePendingWait}}
	hold := newLaunch(h).Start(t.Context())
	waitHeartbeats(t, h, 1)
	rep, err := hold.Complete(t.Context(), ResultContinue)
	if err != nil || !rep.Held || rep.Result != ResultContinue {
		t.Fatalf("Complete = %+v, %v", rep, err)
	}
}

// TestLaunchCompleteLooksOnceMore: a Complete that comes before the background lookup had its
// answer (the instance still Pending) looks again and completes what it finds.
func TestLaunchCompleteLooksOnceMore(t *testing.T) {
	h := &fakeLaunchHook{states: []string{StatePending}}
	l := newLaunch(h)
	l.Poll = time.Hour // the background looks once only
	hold := l.Start(t.Context())
	if held, known := hold.Held(t.Context(), 20*time.Millisecond); held || known {
		t.Fatalf("Held while the instance is Pending = %v, %v; want not known yet", held, known)
	}
	h.mu.Lock()
	h.states = []string{StatePendingWait}
	h.mu.Unlock()
	rep, err := hold.Complete(t.Context(), ResultAbandon)
	if err != nil || !rep.Held || rep.Result != ResultAbandon {
		t.Fatalf("Complete = %+v, %v; want held and abandoned", rep, err)
	}
}

// TestLaunchAlreadyCompleted: an action no longer active when the agent completes it (it timed
// out, or the leader completed it) is reported, not an error.
func TestLaunchAlreadyCompleted(t *testing.T) {
	h := &fakeLaunchHook{states: []string{StatePendingWait}}
	hold := newLaunch(h).Start(t.Context())
	mustBeHeld(t, hold) // the background found the action before it ended
	h.mu.Lock()
	h.states = []string{StateInService}
	h.mu.Unlock()
	rep, err := hold.Complete(t.Context(), ResultContinue)
	if err != nil || !rep.Held || !rep.AlreadyCompleted || rep.Result != "" {
		t.Fatalf("Complete = %+v, %v; want held, already completed", rep, err)
	}
}

// TestLaunchCompleteRetries: a failed completion is tried again.
func TestLaunchCompleteRetries(t *testing.T) {
	h := &fakeLaunchHook{states: []string{StatePendingWait}, completeErr: errors.New("throttled")}
	hold := newLaunch(h).Start(t.Context())
	mustBeHeld(t, hold)
	rep, err := hold.Complete(t.Context(), ResultContinue)
	if err != nil || rep.Result != ResultContinue {
		t.Fatalf("Complete = %+v, %v", rep, err)
	}
}

// TestLaunchRelease: an interrupted boot stops the heartbeats and completes nothing.
func TestLaunchRelease(t *testing.T) {
	h := &fakeLaunchHook{states: []string{StatePendingWait}}
	hold := newLaunch(h).Start(t.Context())
	mustBeHeld(t, hold)
	waitHeartbeats(t, h, 1)
	rep := hold.Release()
	_, beats, done := h.counts()
	if !rep.Held || rep.Heartbeats != beats || len(done) != 0 {
		t.Fatalf("Release = %+v, completions %v", rep, done)
	}
	time.Sleep(40 * time.Millisecond)
	if _, after, _ := h.counts(); after != beats {
		t.Fatalf("heartbeats went on after Release: %d -> %d", beats, after)
	}
	if rep2, err := hold.Complete(t.Context(), ResultContinue); err != nil || rep2.Result != "" {
		t.Fatalf("Complete after Release = %+v, %v; want nothing", rep2, err)
	}
}

// TestLaunchWarmPool: Warmed:Pending:Wait (launching into a warm pool) is a launch hook's wait
// too.
func TestLaunchWarmPool(t *testing.T) {
	h := &fakeLaunchHook{states: []string{StateWarmedPending, StateWarmedPendingWait}}
	hold := newLaunch(h).Start(t.Context())
	mustBeHeld(t, hold) // looked past Warmed:Pending
	rep, err := hold.Complete(t.Context(), ResultContinue)
	if err != nil || !rep.Held || rep.Action.State != StateWarmedPendingWait || rep.Result != ResultContinue {
		t.Fatalf("Complete = %+v, %v", rep, err)
	}
}

func TestInSwarm(t *testing.T) {
	const id = "i-0123456789abcdef0"
	worker := swarm.Node{ID: "n1", Role: swarm.RoleWorker, State: "ready", Labels: map[string]string{swarm.LabelInstanceID: id, "az": "us-east-1a"}}
	manager := worker
	manager.Role, manager.Reachability = swarm.RoleManager, "reachable"
	with := func(n swarm.Node, f func(*swarm.Node)) swarm.Node {
		m := map[string]string{}
		for k, v := range n.Labels {
			m[k] = v
		}
		n.Labels = m
		f(&n)
		return n
	}
	want := map[string]string{"az": "us-east-1a"}
	tests := map[string]struct {
		n      swarm.Node
		role   swarm.Role
		want   map[string]string
		leader bool
		ok     bool
	}{
		"ready worker":                   {n: worker, role: swarm.RoleWorker, want: want, ok: true},
		"worker down":                    {n: with(worker, func(n *swarm.Node) { n.State = "down" }), role: swarm.RoleWorker},
		"worker unknown":                 {n: with(worker, func(n *swarm.Node) { n.State = "" }), role: swarm.RoleWorker},
		"worker without its instance id": {n: with(worker, func(n *swarm.Node) { delete(n.Labels, swarm.LabelInstanceID) }), role: swarm.RoleWorker},
		"worker with another's id":       {n: with(worker, func(n *swarm.Node) { n.Labels[swarm.LabelInstanceID] = "i-1" }), role: swarm.RoleWorker},
		"worker before its labels":       {n: worker, role: swarm.RoleWorker, want: map[string]string{"workload": "db"}},
		"wrong role":                     {n: worker, role: swarm.RoleManager, leader: true},
		"reachable manager with leader":  {n: manager, role: swarm.RoleManager, want: want, leader: true, ok: true},
		"manager without a leader":       {n: manager, role: swarm.RoleManager},
		"unreachable manager":            {n: with(manager, func(n *swarm.Node) { n.Reachability = "unreachable" }), role: swarm.RoleManager, leader: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ok, why := InSwarm(tt.n, tt.role, id, tt.want, tt.leader)
			if ok != tt.ok || ok == (why != "") {
				t.Fatalf("InSwarm = %v, %q; want %v (and a reason exactly when not)", ok, why, tt.ok)
			}
		})
	}
}
