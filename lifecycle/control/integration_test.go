package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// engineSwarm is a minimal lifecycle.Swarm over a real manager's engine, for the test. A
// node the engine does not list is lifecycle.ErrNoSuchNode.
type engineSwarm struct{ e *engine.Engine }

func (s engineSwarm) known(ctx context.Context, id string) error {
	ns, err := s.e.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range ns {
		if n.ID == id {
			return nil
		}
	}
	return fmt.Errorf("node %s: %w", id, lifecycle.ErrNoSuchNode)
}

func (s engineSwarm) Node(ctx context.Context, id string) (swarm.Node, error) {
	if err := s.known(ctx, id); err != nil {
		return swarm.Node{}, err
	}
	n, err := s.e.Node(ctx, id)
	return swarm.Node(n), err
}

func (s engineSwarm) Nodes(ctx context.Context) ([]swarm.Node, error) {
	ns, err := s.e.Nodes(ctx)
	out := make([]swarm.Node, 0, len(ns))
	for _, n := range ns {
		out = append(out, swarm.Node(n))
	}
	return out, err
}

func (s engineSwarm) SetAvailability(ctx context.Context, id, a string) error {
	return s.e.SetAvailability(ctx, id, a)
}

func (s engineSwarm) SetNodeLabels(ctx context.Context, id string, l map[string]string) error {
	return s.e.SetNodeLabels(ctx, id, l)
}

func (s engineSwarm) SetRole(ctx context.Context, id string, role swarm.Role) error {
	return s.e.SetRole(ctx, id, role)
}

func (s engineSwarm) RemoveNode(ctx context.Context, id string, force bool) error {
	if err := s.known(ctx, id); err != nil {
		return err
	}
	return s.e.RemoveNode(ctx, id, force)
}

func (s engineSwarm) Tasks(ctx context.Context, nodeID, serviceID string) ([]swarm.Task, error) {
	ts, err := s.e.Tasks(ctx, engine.TaskFilter{NodeID: nodeID, ServiceID: serviceID})
	out := make([]swarm.Task, 0, len(ts))
	for _, t := range ts {
		out = append(out, swarm.Task(t))
	}
	return out, err
}

// TestIntegrationControlRealCerts runs the control API with the certificates two real
// engines got from their swarm: a manager serves, the worker reads, drains and labels
// itself, is refused on the manager's node, leaves (its engine deletes its certificates)
// and has its node removed with the pair its client kept in memory.
func TestIntegrationControlRealCerts(t *testing.T) {
	t.Parallel()
	bed := testbed.StartT(t, 2) // skips, saying why, where real engines cannot run
	ctx := t.Context()
	n1, n2 := bed.Nodes[0], bed.Nodes[1]
	e1, err := engine.New(n1.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer e1.Close()
	e2, err := engine.New(n2.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()

	managerID, err := e1.Init(ctx, bootstrap.InitRequest{AdvertiseAddr: n1.IP})
	if err != nil {
		t.Fatal(err)
	}
	tokens, cluster, err := e1.JoinTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Join(ctx, bootstrap.JoinRequest{RemoteAddrs: []string{n1.IP + ":2377"}, Token: tokens.Worker, AdvertiseAddr: n2.IP}); err != nil {
		t.Fatal(err)
	}
	workerID, _, err := e2.Self(ctx)
	if err != nil || workerID == "" {
		t.Fatalf("worker's node id %q, %v", workerID, err)
	}

	mgrCerts := &Certs{Dir: CertsDir(filepath.Join(n1.Dir, "data"))}
	wrkCerts := &Certs{Dir: CertsDir(filepath.Join(n2.Dir, "data"))}
	for _, c := range []struct {
		certs *Certs
		want  Identity
	}{
		{mgrCerts, Identity{NodeID: managerID, Role: swarm.RoleManager, ClusterID: cluster}},
		{wrkCerts, Identity{NodeID: workerID, Role: swarm.RoleWorker, ClusterID: cluster}},
	} {
		got, err := c.certs.Identity()
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s: Identity() = %+v, want %+v", c.certs.Dir, got, c.want)
		}
	}

	logs := &syncBuffer{}
	addr := startServer(t, mgrCerts.Dir, engineSwarm{e1}, logs)
	c, err := NewClient(wrkCerts, func(context.Context) ([]string, error) { return []string{addr}, nil }, testLogger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	n, err := c.Node(ctx, workerID)
	if err != nil {
		t.Fatal(err)
	}
	if n.ID != workerID || n.Role != "worker" || n.Hostname != n2.Name || n.Addr != n2.IP || n.State != "ready" {
		t.Errorf("Node(self) = %+v, want the ready worker %s at %s", n, n2.Name, n2.IP)
	}
	if !strings.Contains(logs.String(), `"node_id":"`+workerID+`","action":"read-node"`) {
		t.Errorf("the server did not see the worker's node id %s as the caller:\n%s", workerID, logs)
	}

	if err := c.SetAvailability(ctx, managerID, "drain"); !errors.Is(err, lifecycle.ErrNotAllowed) {
		t.Errorf("worker draining the manager: %v, want ErrNotAllowed", err)
	}
	if m, err := e1.Node(ctx, managerID); err != nil || m.Availability != "active" {
		t.Errorf("manager after the refused drain: %+v, %v", m, err)
	}
	if err := c.SetNodeLabels(ctx, workerID, map[string]string{swarm.LabelLeaving: "2026-03-01T10:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetAvailability(ctx, workerID, "drain"); err != nil {
		t.Fatal(err)
	}
	if w, err := e1.Node(ctx, workerID); err != nil || w.Availability != "drain" || w.Labels[swarm.LabelLeaving] == "" {
		t.Errorf("worker after draining itself: %+v, %v", w, err)
	}
	if err := c.RemoveNode(ctx, workerID, false); err == nil || !strings.Contains(err.Error(), "not down") {
		t.Errorf("removal while up: %v, want a refusal saying it is not down", err)
	}

	if err := e2.Leave(ctx, false); err != nil {
		t.Fatal(err)
	}
	// The engine deletes its certificates when it leaves; make sure of it, so that what
	// follows runs on the pair the client keeps in memory.
	if _, err := os.Stat(filepath.Join(wrkCerts.Dir, NodeKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Logf("the worker's key is still on disk after leaving (%v): deleting it", err)
		if err := os.RemoveAll(wrkCerts.Dir); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := c.RemoveNode(ctx, workerID, false)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || !strings.Contains(err.Error(), "not down") {
			t.Fatalf("removal after leaving: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	if _, err := c.Node(ctx, workerID); !errors.Is(err, lifecycle.ErrNoSuchNode) {
		t.Errorf("Node(self) after removal: %v, want ErrNoSuchNode", err)
	}
	if ns, err := e1.Nodes(ctx); err != nil || len(ns) != 1 || ns[0].ID != managerID {
		t.Errorf("nodes after removal: %+v, %v; want only the manager", ns, err)
	}
}
