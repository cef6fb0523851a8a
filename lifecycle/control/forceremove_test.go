package control

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// leaving is what a node's own drain makes of its node before it leaves: drained and marked.
func leaving(n *swarm.Node) {
	n.Availability = "drain"
	n.Labels[swarm.LabelLeaving] = "2026-03-01T10:00:00Z"
}

// TestForceRemoveSelf: a node may have its own node object removed by force, at once, once
// it has drained and marked itself leaving (its drain then leaves the swarm, and the managers
// still show it ready until its heartbeat times out); never another node, never a node that
// is not on its way out, never a manager, never for a caller the TLS layer did not verify.
func TestForceRemoveSelf(t *testing.T) {
	tests := []struct {
		name   string
		caller func(s *testSwarm) string // the certificate directory the client presents
		target string
		setup  func(s *testSwarm)
		// wantRemoved: the request succeeds and removes target by force; otherwise it is
		// refused with ErrNotAllowed and nothing changes.
		wantRemoved bool
		wantMsg     string // part of the refusal
	}{
		{
			name:   "own node, drained and marked leaving, left (still ready)",
			caller: func(s *testSwarm) string { return s.w1 }, target: worker1,
			setup: func(s *testSwarm) {
				s.engine.update(worker1, leaving)
				// It left: its engine deleted its certificate files; the client kept the pair.
				if err := os.RemoveAll(s.w1); err != nil {
					t.Fatal(err)
				}
			},
			wantRemoved: true,
		},
		{
			name:   "own node, down, not marked",
			caller: func(s *testSwarm) string { return s.w1 }, target: worker1,
			setup:       func(s *testSwarm) { s.engine.setState(worker1, "down") },
			wantRemoved: true,
		},
		{
			name:   "another node, drained and marked leaving",
			caller: func(s *testSwarm) string { return s.w1 }, target: worker2,
			setup:   func(s *testSwarm) { s.engine.update(worker2, leaving) },
			wantMsg: "only on its own node",
		},
		{
			name:   "another node, down",
			caller: func(s *testSwarm) string { return s.w1 }, target: worker2,
			setup:   func(s *testSwarm) { s.engine.setState(worker2, "down") },
			wantMsg: "only on its own node",
		},
		{
			name:   "own node, active and not leaving",
			caller: func(s *testSwarm) string { return s.w1 }, target: worker1,
			setup:   func(*testSwarm) {},
			wantMsg: "only once it has drained and marked itself leaving",
		},
		{
			name:   "own node, marked leaving but not drained",
			caller: func(s *testSwarm) string { return s.w1 }, target: worker1,
			setup: func(s *testSwarm) {
				s.engine.update(worker1, func(n *swarm.Node) { n.Labels[swarm.LabelLeaving] = "2026-03-01T10:00:00Z" })
			},
			wantMsg: "only once it has drained and marked itself leaving",
		},
		{
			name:   "own node, drained by an operator, not leaving",
			caller: func(s *testSwarm) string { return s.w1 }, target: worker1,
			setup:   func(s *testSwarm) { s.engine.update(worker1, func(n *swarm.Node) { n.Availability = "drain" }) },
			wantMsg: "only once it has drained and marked itself leaving",
		},
		{
			name: "own node, a manager not yet demoted",
			caller: func(s *testSwarm) string {
				return s.ca.writeNode(t, manager2, OUManager, clusterA)
			},
			target: manager2,
			setup: func(s *testSwarm) {
				s.engine.update(manager2, func(n *swarm.Node) { leaving(n); n.Reachability = "reachable" })
			},
			wantMsg: "must be demoted",
		},
		{
			name: "own node, demoted but its certificate not yet renewed",
			caller: func(s *testSwarm) string {
				return s.ca.writeNode(t, manager2, OUManager, clusterA)
			},
			target: manager2,
			setup: func(s *testSwarm) {
				s.engine.update(manager2, func(n *swarm.Node) { leaving(n); n.Role = "worker" })
			},
			wantRemoved: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSwarm(t)
			c := newTestClient(t, tt.caller(s), s.addr)
			tt.setup(s)
			before := s.engine.snapshot()

			err := c.RemoveNode(t.Context(), tt.target, true)

			if tt.wantRemoved {
				if err != nil {
					t.Fatalf("RemoveNode(%s, force) = %v, want it removed", tt.target, err)
				}
				if want := []string{"remove " + tt.target + " force=true"}; !slices.Equal(s.engine.changes(), want) {
					t.Errorf("engine calls %q, want %q", s.engine.changes(), want)
				}
				if _, err := s.engine.Node(t.Context(), tt.target); !errors.Is(err, lifecycle.ErrNoSuchNode) {
					t.Errorf("node %s after removal: %v, want ErrNoSuchNode", tt.target, err)
				}
				// Again: the node is gone, which a retry takes as done.
				if err := c.RemoveNode(t.Context(), tt.target, true); !errors.Is(err, lifecycle.ErrNoSuchNode) {
					t.Errorf("RemoveNode(%s, force) again = %v, want ErrNoSuchNode", tt.target, err)
				}
				return
			}
			if !errors.Is(err, lifecycle.ErrNotAllowed) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("RemoveNode(%s, force) = %v, want ErrNotAllowed saying %q", tt.target, err, tt.wantMsg)
			}
			if errors.Is(err, lifecycle.ErrNoSuchNode) {
				t.Errorf("refusal %v also matches ErrNoSuchNode (a drain would take it as removed)", err)
			}
			if got := s.engine.snapshot(); got != before {
				t.Errorf("engine changed:\n%s\nwas\n%s", got, before)
			}
			if ch := s.engine.changes(); len(ch) > 0 {
				t.Errorf("engine calls %v, want none", ch)
			}
		})
	}
}

// TestForceRemoveUnauthenticated: without a verified client certificate nothing is removed,
// neither over TLS (the handshake fails) nor by a request that reached the handler without
// TLS at all.
func TestForceRemoveUnauthenticated(t *testing.T) {
	s := newTestSwarm(t)
	s.engine.update(worker1, leaving)
	before := s.engine.snapshot()
	noCert := tlsAs(t, s.w1) // trusts the manager, presents no certificate of its own
	noCert.GetClientCertificate = nil
	r, err := http.NewRequest(http.MethodDelete, "https://"+s.addr+"/v1/nodes/"+worker1+"?force=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := rawClient(noCert).Do(r); err == nil {
		resp.Body.Close()
		t.Fatalf("without a client certificate the server answered %s", resp.Status)
	}

	h := &handler{swarm: s.engine, certs: &Certs{Dir: s.mgrDir}, log: testLogger(t, nil)}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodDelete, "http://manager/v1/nodes/"+worker1+"?force=true", nil))
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), codeNotAllowed) {
		t.Errorf("without TLS: %d %s, want 403 %s", w.Code, w.Body, codeNotAllowed)
	}
	if got := s.engine.snapshot(); got != before {
		t.Errorf("engine changed:\n%s\nwas\n%s", got, before)
	}
	if ch := s.engine.changes(); len(ch) > 0 {
		t.Errorf("engine calls %v, want none", ch)
	}
}
