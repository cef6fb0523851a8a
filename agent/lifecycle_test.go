package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// stubSwarm answers every call with err, counting calls.
type stubSwarm struct {
	lifecycle.Swarm // nil: calls not listed panic
	err             error
	calls           int
}

func (s *stubSwarm) Nodes(context.Context) ([]lifecycle.Node, error) {
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	return []lifecycle.Node{{ID: "n1"}}, nil
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
	if got := testutil.ToFloat64(m.ghostsRemoved); got != 1 {
		t.Errorf("swarm_agent_ghost_nodes_removed_total = %v, want 1", got)
	}
	for reason, want := range map[string]float64{lifecycle.ReasonAmbiguous: 2, lifecycle.ReasonLiveNode: 1} {
		if got := testutil.ToFloat64(m.refusals.WithLabelValues(reason)); got != want {
			t.Errorf("swarm_agent_lifecycle_refusals_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	(*metrics)(nil).observe(lifecycle.EventGhostRemoved, "") // no metrics: nothing, no panic
}
