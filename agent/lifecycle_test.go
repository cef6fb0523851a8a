package agent

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// stubSwarm answers every call with err, counting calls.
type stubSwarm struct {
	lifecycle.Swarm // nil: calls not listed panic
	err             error
	calls           int
}

func (s *stubSwarm) Nodes(context.Context) ([]swarm.Node, error) {
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	return []swarm.Node{{ID: "n1"}}, nil
}

func (s *stubSwarm) SetAvailability(context.Context, string, string) error { s.calls++; return s.err }

// TestFallbackSwarm: the local engine serves while it is a manager; once it says it is not
// (a demoted manager, a worker), calls go to the managers' control API; other errors do not.
func TestFallbackSwarm(t *testing.T) {
	notMgr := errors.New(`Error response from daemon: This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state.`)
	tests := []struct {
		name                  string
		localErr              error
		remote                bool
		wantLocal, wantRemote int
		wantErr               bool
	}{
		{"manager", nil, true, 1, 0, false},
		{"not a manager: remote", notMgr, true, 1, 1, false},
		{"not a manager, no remote", notMgr, false, 1, 0, true},
		{"other error stays", errors.New("connection refused"), true, 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local, remote := &stubSwarm{err: tt.localErr}, &stubSwarm{}
			s := fallbackSwarm{local: local}
			if tt.remote {
				s.remote = remote
			}
			_, err := s.Nodes(t.Context())
			err2 := s.SetAvailability(t.Context(), "n1", "drain")
			if (err != nil) != tt.wantErr || (err2 != nil) != tt.wantErr {
				t.Fatalf("errors %v / %v, want error %v", err, err2, tt.wantErr)
			}
			if local.calls != 2*tt.wantLocal || remote.calls != 2*tt.wantRemote {
				t.Fatalf("local %d remote %d calls, want %d and %d", local.calls, remote.calls, 2*tt.wantLocal, 2*tt.wantRemote)
			}
		})
	}
}

// TestObserveMetrics: the leader's decisions about other nodes show in their metrics.
func TestObserveMetrics(t *testing.T) {
	m := newMetrics()
	m.observe(lifecycle.EventGhostRemoved, "")
	m.observe(lifecycle.EventRefused, lifecycle.ReasonAmbiguous)
	m.observe(lifecycle.EventRefused, lifecycle.ReasonAmbiguous)
	m.observe(lifecycle.EventRefused, lifecycle.ReasonLiveNode)
	m.observe(lifecycle.EventTakeover, lifecycle.ReasonStale)
	m.observe(lifecycle.EventProtection, "set")
	if got := testutil.ToFloat64(m.ghostsRemoved); got != 1 {
		t.Errorf("swarm_agent_ghost_nodes_removed_total = %v, want 1", got)
	}
	for reason, want := range map[string]float64{lifecycle.ReasonAmbiguous: 2, lifecycle.ReasonLiveNode: 1} {
		if got := testutil.ToFloat64(m.refusals.WithLabelValues(reason)); got != want {
			t.Errorf("swarm_agent_lifecycle_refusals_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(m.takeovers.WithLabelValues(lifecycle.ReasonStale)); got != 1 {
		t.Errorf("swarm_agent_takeovers_total{reason=stale} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.protections.WithLabelValues("set")); got != 1 {
		t.Errorf("swarm_agent_scale_in_protections_total{result=set} = %v, want 1", got)
	}
	(*metrics)(nil).observe(lifecycle.EventGhostRemoved, "") // no metrics: nothing, no panic
}

// TestOnBehalfOnePerInstance: the queue consumer and the reaper never drain one instance on
// its behalf twice at once; a second ask waits for (run) or skips (start) the running drain.
func TestOnBehalfOnePerInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ob := newOnBehalf()
		release := make(chan struct{})
		started := make(chan struct{})
		calls := 0
		drain := func(context.Context) error {
			calls++
			close(started)
			<-release
			return nil
		}
		ob.start(t.Context(), "i-1", drain, zerolog.Nop())
		<-started
		ob.start(t.Context(), "i-1", func(context.Context) error { t.Error("second background drain of i-1"); return nil }, zerolog.Nop())
		waited := make(chan error, 1)
		go func() {
			waited <- ob.run(t.Context(), "i-1", func(context.Context) error { t.Error("queue drain of i-1 while one runs"); return nil })
		}()
		other := ob.run(t.Context(), "i-2", func(context.Context) error { return errors.New("i-2's own") })
		if other == nil || other.Error() != "i-2's own" {
			t.Errorf("another instance's drain = %v, want its own result", other)
		}
		synctest.Wait() // the second ask of i-1 now waits for the first
		select {
		case err := <-waited:
			t.Fatalf("run returned %v while i-1's drain still runs", err)
		default:
		}
		close(release)
		if err := <-waited; err != nil {
			t.Errorf("run after the running drain ended = %v", err)
		}
		ob.wait()
		if calls != 1 {
			t.Errorf("%d drains of i-1, want 1", calls)
		}
		if err := ob.run(t.Context(), "i-1", func(context.Context) error { return nil }); err != nil {
			t.Errorf("a later drain of i-1 = %v", err)
		}
	})
}
