package lifecycle

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestVerifyNode(t *testing.T) {
	node := func(addr, id string) swarm.Node {
		return swarm.Node{ID: "n1", Addr: addr, Labels: map[string]string{swarm.LabelInstanceID: id}}
	}
	ec2 := &fakeEC2{gone: map[string]bool{"i-gone": true}, addrs: map[string][]string{
		"i-1":    {"10.0.0.5", "10.0.0.6"}, // a secondary address too
		"i-v6":   {"10.0.1.5", "2001:db8::5"},
		"i-gone": {"10.0.2.5"},
	}}
	tests := []struct {
		name    string
		ec      Instances
		n       swarm.Node
		wantErr error
	}{
		{"primary address", ec2, node("10.0.0.5", "i-1"), nil},
		{"secondary address", ec2, node("10.0.0.6", "i-1"), nil},
		{"ipv6 address", ec2, node("2001:db8:0::5", "i-v6"), nil},
		{"another instance's address", ec2, node("10.0.1.5", "i-1"), ErrIdentity},
		{"unknown instance", ec2, node("10.0.0.5", "i-unknown"), ErrIdentity},
		{"terminated instance", ec2, node("10.0.2.5", "i-gone"), ErrIdentity},
		{"no address", ec2, node("", "i-1"), ErrIdentity},
		{"garbage address", ec2, node("10.0.0.5:2377", "i-1"), ErrIdentity},
		{"no label", ec2, node("10.0.0.5", ""), ErrIdentity},
		{"no EC2", nil, node("10.0.0.5", "i-1"), ErrIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyNode(t.Context(), tt.ec, tt.n)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("VerifyNode = %v, want %v", err, tt.wantErr)
			}
		})
	}
	t.Run("EC2 fails", func(t *testing.T) {
		failing := &fakeEC2{err: errors.New("throttled")}
		err := VerifyNode(t.Context(), failing, node("10.0.0.5", "i-1"))
		if err == nil || errors.Is(err, ErrIdentity) {
			t.Errorf("VerifyNode = %v, want EC2's error, not a verdict", err)
		}
	})
}

// TestReapChecksIdentity: the reaper completes an instance's lifecycle action, or removes a
// ghost because of a live node, only once EC2 confirms that the node it acts for is on that
// instance: a node may label itself with any instance id.
func TestReapChecksIdentity(t *testing.T) {
	const grace = 5 * time.Minute
	tests := []struct {
		name string
		// setup prepares the world and EC2; the instance scaled in is i-x.
		setup       func(w *world, ec2 *fakeEC2)
		want        []string
		wantJournal []string
		wantErr     bool
		wantEvents  []string
	}{
		{
			name: "a down worker labelled with another instance's id: nothing done",
			setup: func(w *world, ec2 *fakeEC2) {
				w.c.label("w2", swarm.LabelInstanceID, "i-x")
				ec2.addrs["i-x"] = []string{"10.9.9.9"}
				w.c.kill("w2")
			},
			wantEvents: []string{EventRefused + " " + ReasonIdentity},
		},
		{
			name: "EC2 confirms the address: removed and completed",
			setup: func(w *world, ec2 *fakeEC2) {
				w.c.label("w2", swarm.LabelInstanceID, "i-x")
				n, _ := w.c.node("w2")
				ec2.addrs["i-x"] = []string{"10.9.9.9", n.Addr}
				w.c.kill("w2")
			},
			want:        []string{"w2"},
			wantJournal: []string{"remove w2", "complete i-x CONTINUE"},
		},
		{
			name: "EC2 does not know the instance",
			setup: func(w *world, ec2 *fakeEC2) {
				w.c.label("w2", swarm.LabelInstanceID, "i-x")
				w.c.kill("w2")
			},
			wantEvents: []string{EventRefused + " " + ReasonIdentity},
		},
		{
			name: "EC2 fails: an error, nothing done",
			setup: func(w *world, ec2 *fakeEC2) {
				w.c.label("w2", swarm.LabelInstanceID, "i-x")
				ec2.err = errors.New("throttled")
				w.c.kill("w2")
			},
			wantErr: true,
		},
		{
			name: "a live node claims a down node's instance: the down node is no ghost of it",
			setup: func(w *world, ec2 *fakeEC2) {
				w.c.label("w1", swarm.LabelInstanceID, "i-x") // the real node of i-x, down
				n, _ := w.c.node("w1")
				ec2.addrs["i-x"] = []string{n.Addr}
				w.c.kill("w1")
				w.c.label("w2", swarm.LabelInstanceID, "i-x") // a live node that says it is i-x
			},
			wantEvents: []string{EventRefused + " " + ReasonIdentity},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				hook := newFakeHook(w.j, "i-x", time.Hour)
				hook.scaleIn()
				ec2 := newFakeEC2(w)
				tt.setup(w, ec2)
				ev := &events{}
				r := &Reaper{Swarm: w.c, Hook: hook, Instances: ec2, Grace: grace, Log: testLogger(t), Observe: ev.observe}
				var got []string
				var errs []error
				for range 3 {
					removed, err := r.Reap(t.Context(), time.Now())
					got = append(got, removed...)
					errs = append(errs, err)
					time.Sleep(grace)
				}
				if err := errors.Join(errs...); (err != nil) != tt.wantErr {
					t.Errorf("Reap errors %v, want error %t", err, tt.wantErr)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("removed %v, want %v", got, tt.want)
				}
				if j := w.j.all(); !slices.Equal(j, tt.wantJournal) {
					t.Errorf("journal = %q, want %q", j, tt.wantJournal)
				}
				if e := ev.all(); !slices.Equal(e, tt.wantEvents) {
					t.Errorf("events %q, want %q", e, tt.wantEvents)
				}
			})
		})
	}
	t.Run("without EC2 nothing is completed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(1, 1)
			hook := newFakeHook(w.j, "i-w1", time.Hour)
			hook.scaleIn()
			w.c.kill("w1")
			r := &Reaper{Swarm: w.c, Hook: hook, Grace: grace, Log: testLogger(t)}
			for range 3 {
				if _, err := r.Reap(t.Context(), time.Now()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(grace)
			}
			if c, _, _ := hook.status(); len(c) != 0 {
				t.Errorf("completions %v with no EC2 to confirm the node's instance", c)
			}
		})
	})
	t.Run("a removed leaving node EC2 does not confirm: not completed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(1, 1)
			hook := newFakeHook(w.j, "i-x", time.Hour)
			hook.scaleIn()
			ec2 := newFakeEC2(w)
			ec2.addrs["i-x"] = []string{"10.9.9.9"}
			ev := &events{}
			r := &Reaper{Swarm: w.c, Hook: hook, Grace: grace, Instances: ec2, Log: testLogger(t), Observe: ev.observe}
			w.c.label("w1", swarm.LabelInstanceID, "i-x")
			w.c.label("w1", swarm.LabelLeaving, "2000-01-01T00:00:00Z")
			w.c.kill("w1")
			for range 3 {
				if _, err := r.Reap(t.Context(), time.Now()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(grace)
			}
			if c, _, _ := hook.status(); len(c) != 0 {
				t.Errorf("completions %v for a node EC2 does not place on the instance", c)
			}
			if e := ev.all(); !slices.Equal(e, []string{EventRefused + " " + ReasonIdentity}) {
				t.Errorf("events %q, want one identity refusal", e)
			}
		})
	})
}
