package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// fakeScaleIn is Auto Scaling's view of the world's instances: every one in service in
// group "managers" or "workers", unprotected, journaled on change.
type fakeScaleIn struct {
	j   *journal
	mu  sync.Mutex
	m   map[string]GroupMember
	err error
}

func newFakeScaleIn(w *world) *fakeScaleIn {
	f := &fakeScaleIn{j: w.j, m: map[string]GroupMember{}}
	for _, n := range w.c.nodesNow() {
		group := "workers"
		if n.Role == swarm.RoleManager {
			group = "managers"
		}
		f.m[n.InstanceID()] = GroupMember{ASG: group, State: "InService"}
	}
	return f
}

func (f *fakeScaleIn) Members(_ context.Context, ids []string) (map[string]GroupMember, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := map[string]GroupMember{}
	for _, id := range ids {
		if m, ok := f.m[id]; ok {
			out[id] = m
		}
	}
	return out, nil
}

func (f *fakeScaleIn) Protect(_ context.Context, asg string, ids []string, protect bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		m, ok := f.m[id]
		if !ok || m.ASG != asg {
			return fmt.Errorf("ValidationError: the instance %s is not part of Auto Scaling group %s", id, asg)
		}
		m.Protected = protect
		f.m[id] = m
		f.j.add("protect %s %t", id, protect)
	}
	return nil
}

func (f *fakeScaleIn) protected() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, id := range slices.Sorted(maps.Keys(f.m)) {
		if f.m[id].Protected {
			out = append(out, id)
		}
	}
	return out
}

// TestProtector: the leader keeps scale-in protection on exactly the managers whose loss
// would cost quorum, lifts only the protection it set, and acts only once EC2 confirms the
// manager's instance.
func TestProtector(t *testing.T) {
	type step struct {
		do            func(w *world, asg *fakeScaleIn, ec2 *fakeEC2)
		wantProtected []string
	}
	tests := []struct {
		name       string
		managers   int
		steps      []step
		wantEvents []string
	}{
		{name: "three managers, all reachable: nothing to protect", managers: 3,
			steps: []step{{}}},
		{name: "one of three down: the two others protected, then lifted when it is back", managers: 3,
			steps: []step{
				{do: func(w *world, _ *fakeScaleIn, _ *fakeEC2) { w.c.kill("m3") }, wantProtected: []string{"i-m1", "i-m2"}},
				{wantProtected: []string{"i-m1", "i-m2"}}, // nothing changes on the next pass
				{do: func(w *world, _ *fakeScaleIn, _ *fakeEC2) { w.c.revive("m3") }},
			},
			wantEvents: []string{"protection set", "protection set", "protection cleared", "protection cleared"}},
		{name: "the last manager", managers: 1,
			steps:      []step{{wantProtected: []string{"i-m1"}}},
			wantEvents: []string{"protection set"}},
		{name: "an operator's protection stays", managers: 3,
			steps: []step{
				{do: func(_ *world, asg *fakeScaleIn, _ *fakeEC2) {
					m := asg.m["i-m2"]
					m.Protected = true
					asg.m["i-m2"] = m
				}, wantProtected: []string{"i-m2"}},
				{do: func(w *world, _ *fakeScaleIn, _ *fakeEC2) { w.c.kill("m3") }, wantProtected: []string{"i-m1", "i-m2"}},
				{do: func(w *world, _ *fakeScaleIn, _ *fakeEC2) { w.c.revive("m3") }, wantProtected: []string{"i-m2"}},
			},
			wantEvents: []string{"protection set", "protection cleared"}},
		{name: "a leaving manager is left alone", managers: 1,
			steps: []step{{do: func(w *world, _ *fakeScaleIn, _ *fakeEC2) {
				w.c.label("m1", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
			}}}},
		{name: "EC2 does not confirm the manager's instance", managers: 1,
			steps: []step{{do: func(_ *world, _ *fakeScaleIn, ec2 *fakeEC2) {
				ec2.addrs["i-m1"] = []string{"10.9.9.9"}
			}}},
			wantEvents: []string{"refused identity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(tt.managers, 2)
			asg, ec2, ev := newFakeScaleIn(w), newFakeEC2(w), &events{}
			p := &Protector{Swarm: w.c, ASG: asg, Instances: ec2, Log: testLogger(t), Observe: ev.observe}
			for i, s := range tt.steps {
				if s.do != nil {
					s.do(w, asg, ec2)
				}
				nodes, err := w.c.Nodes(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Pass(t.Context(), nodes); err != nil {
					t.Errorf("pass %d: %v", i, err)
				}
				if got := asg.protected(); !slices.Equal(got, s.wantProtected) {
					t.Errorf("pass %d: protected %v, want %v", i, got, s.wantProtected)
				}
			}
			if e := ev.all(); !slices.Equal(e, tt.wantEvents) {
				t.Errorf("events %q, want %q", e, tt.wantEvents)
			}
			for _, n := range w.c.nodesNow() {
				if n.Labels[swarm.LabelProtected] != "" && !slices.Contains(asg.protected(), n.InstanceID()) {
					t.Errorf("node %s labelled protected, its instance is not", n.ID)
				}
			}
		})
	}
	t.Run("not permitted: off after one warning", func(t *testing.T) {
		w := newWorld(1, 1)
		asg := &deniedScaleIn{fakeScaleIn: newFakeScaleIn(w)}
		p := &Protector{Swarm: w.c, ASG: asg, Instances: newFakeEC2(w), Log: testLogger(t)}
		for range 3 {
			nodes, _ := w.c.Nodes(t.Context())
			if err := p.Pass(t.Context(), nodes); err != nil {
				t.Errorf("Pass: %v, want no error (protection is optional)", err)
			}
		}
		if asg.calls != 1 {
			t.Errorf("SetInstanceProtection tried %d times, want once", asg.calls)
		}
	})
	t.Run("Auto Scaling fails", func(t *testing.T) {
		w := newWorld(1, 1)
		asg := newFakeScaleIn(w)
		asg.err = errors.New("throttled")
		p := &Protector{Swarm: w.c, ASG: asg, Instances: newFakeEC2(w), Log: testLogger(t)}
		nodes, _ := w.c.Nodes(t.Context())
		if err := p.Pass(t.Context(), nodes); err == nil {
			t.Errorf("Pass with Auto Scaling failing: no error")
		}
	})
}

// deniedScaleIn refuses SetInstanceProtection as AWS does without the permission.
type deniedScaleIn struct {
	*fakeScaleIn
	calls int
}

type accessDenied struct{}

func (accessDenied) Error() string {
	return "api error AccessDenied: not authorized to perform autoscaling:SetInstanceProtection"
}
func (accessDenied) ErrorCode() string { return "AccessDenied" }

func (d *deniedScaleIn) Protect(context.Context, string, []string, bool) error {
	d.calls++
	return fmt.Errorf("set scale-in protection: %w", accessDenied{})
}
