package engine

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// TestRealSwarm drives three real engines through a swarm's life: check, init, join as
// worker and manager, labels, a service, drain, demote, leave and remove. The steps build on
// each other, so a failed step stops the test.
func TestRealSwarm(t *testing.T) {
	t.Parallel()
	bed := testbed.StartT(t, 3)
	ctx := t.Context()
	n1, n2, n3 := bed.Nodes[0], bed.Nodes[1], bed.Nodes[2]
	engines := map[string]*Engine{}
	for _, n := range bed.Nodes {
		e, err := New(n.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		engines[n.Name] = e
	}
	e1, e2, e3 := engines[n1.Name], engines[n2.Name], engines[n3.Name]
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("check", func(t *testing.T) {
		v, err := e1.Check(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if v.Engine == "" || v.OS != "linux" || !strings.HasPrefix(v.API, "1.") {
			t.Errorf("Check = %+v", v)
		}
		if _, err := e1.Check(ctx, "999.0.0"); err == nil || !strings.Contains(err.Error(), "older than the required 999.0.0") {
			t.Errorf("Check(999.0.0) error %v, want it to name the floor", err)
		}
	})
	step("fresh node is inactive", func(t *testing.T) {
		for name, e := range engines {
			ln, err := e.Local(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ln.State != bootstrap.StateInactive || ln.NodeID != "" || ln.IsManager {
				t.Errorf("%s: Local = %+v, want inactive", name, ln)
			}
		}
	})
	step("engine labels", func(t *testing.T) {
		for name, e := range engines {
			l, err := e.EngineLabels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if l[testbed.NodeLabel] != name {
				t.Errorf("%s: engine labels %v, want %s=%s", name, l, testbed.NodeLabel, name)
			}
		}
	})

	var id1, cluster string
	var tokens swarm.JoinTokens
	step("init", func(t *testing.T) {
		var err error
		if id1, err = e1.Init(ctx, bootstrap.InitRequest{AdvertiseAddr: n1.IP}); err != nil {
			t.Fatal(err)
		}
		ln, err := e1.Local(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ln.State != bootstrap.StateActive || ln.NodeID != id1 || !ln.IsManager || ln.ClusterID == "" || ln.NodeAddr != n1.IP {
			t.Fatalf("Local after init = %+v, want active manager %s at %s with a cluster id", ln, id1, n1.IP)
		}
		cluster = ln.ClusterID
		var cid string
		if tokens, cid, err = e1.JoinTokens(ctx); err != nil {
			t.Fatal(err)
		}
		if cid != cluster || !strings.HasPrefix(tokens.Worker, "SWMTKN-") || !strings.HasPrefix(tokens.Manager, "SWMTKN-") || tokens.Worker == tokens.Manager {
			t.Fatalf("JoinTokens: cluster %q (want %q), tokens not two distinct SWMTKN tokens", cid, cluster)
		}
		if _, _, err := e2.JoinTokens(ctx); err == nil {
			t.Error("JoinTokens on a node in no swarm succeeded")
		}
	})
	step("join worker and manager", func(t *testing.T) {
		mgr := []string{n1.IP + ":2377"}
		if err := e2.Join(ctx, bootstrap.JoinRequest{RemoteAddrs: mgr, Token: tokens.Worker, AdvertiseAddr: n2.IP}); err != nil {
			t.Fatal(err)
		}
		if err := e3.Join(ctx, bootstrap.JoinRequest{RemoteAddrs: mgr, Token: tokens.Manager, AdvertiseAddr: n3.IP}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			e       *Engine
			manager bool
		}{{e2, false}, {e3, true}} {
			ln, err := c.e.Local(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantCluster := ""
			if c.manager {
				wantCluster = cluster
			}
			if ln.State != bootstrap.StateActive || ln.IsManager != c.manager || ln.ClusterID != wantCluster || ln.NodeID == "" {
				t.Errorf("%s: Local = %+v, want active, manager %v, cluster %q", c.e.Host(), ln, c.manager, wantCluster)
			}
			if !slices.Contains(ln.RemoteManagers, n1.IP+":2377") {
				t.Errorf("%s: remote managers %v lack %s:2377", c.e.Host(), ln.RemoteManagers, n1.IP)
			}
			// What boot proves membership with: the node's own certificate on disk.
			if ln.CertClusterID != cluster {
				t.Errorf("%s: cluster id in its certificate %q, want %q", c.e.Host(), ln.CertClusterID, cluster)
			}
		}
		// ... and what a manager's swarm port presents.
		for _, n := range []string{n1.IP, n3.IP} {
			p := bootstrap.TLSProbe(ctx, n+":2377")
			if !p.Answers || p.ClusterID != cluster || !p.Manager {
				t.Errorf("TLSProbe(%s) = %+v, want a manager of %s", n, p, cluster)
			}
		}
		if p := bootstrap.TLSProbe(ctx, n2.IP+":2377"); p.Answers {
			t.Errorf("TLSProbe of a worker = %+v, want no answer (workers do not listen)", p)
		}
		err := e2.Join(ctx, bootstrap.JoinRequest{RemoteAddrs: mgr, Token: tokens.Worker, AdvertiseAddr: n2.IP})
		if err == nil || strings.Contains(err.Error(), tokens.Worker) {
			t.Errorf("second join: %v, want an error without the token", err)
		}
	})

	ids := map[string]string{} // node name -> node id
	step("nodes", func(t *testing.T) {
		nodes, err := e1.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, n := range nodes {
			ids[n.Hostname] = n.ID
			got[n.Hostname] = fmt.Sprintf("%s %s %s leader=%v %s", n.Addr, n.Role, n.Availability, n.Leader, n.EngineLabels[testbed.NodeLabel])
		}
		want := map[string]string{
			n1.Name: n1.IP + " manager active leader=true " + n1.Name,
			n2.Name: n2.IP + " worker active leader=false " + n2.Name,
			n3.Name: n3.IP + " manager active leader=false " + n3.Name,
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("nodes\n got %v\nwant %v", got, want)
		}
		if ids[n1.Name] != id1 {
			t.Errorf("node1 id %s, Init said %s", ids[n1.Name], id1)
		}
	})
	step("labels", func(t *testing.T) {
		id := ids[n2.Name]
		if err := e1.SetNodeLabels(ctx, id, map[string]string{"a": "1", "b": "2"}); err != nil {
			t.Fatal(err)
		}
		if err := e3.SetNodeLabels(ctx, id, map[string]string{"b": "3"}); err != nil { // via the other manager
			t.Fatal(err)
		}
		n, err := e1.Node(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(n.Labels) != fmt.Sprint(map[string]string{"a": "1", "b": "3"}) {
			t.Errorf("labels %v, want a=1 b=3", n.Labels)
		}
		if err := e2.SetNodeLabels(ctx, id, map[string]string{"c": "4"}); err == nil {
			t.Error("a worker changed node labels")
		}
	})

	var serviceID string
	running := func(f TaskFilter) ([]swarm.Task, error) {
		f.DesiredState = "running"
		tasks, err := e1.Tasks(ctx, f)
		if err != nil {
			return nil, err
		}
		return slices.DeleteFunc(tasks, func(t swarm.Task) bool { return t.State != "running" }), nil
	}
	step("service tasks land", func(t *testing.T) {
		replicas := uint64(2)
		grace := 500 * time.Millisecond
		res, err := e1.c.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: swarmapi.ServiceSpec{
			Annotations: swarmapi.Annotations{Name: "sleeper"},
			TaskTemplate: swarmapi.TaskSpec{ContainerSpec: &swarmapi.ContainerSpec{
				Image: testbed.Image, Command: []string{"sleep", "3600"}, StopGracePeriod: &grace,
			}},
			Mode: swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
		}, QueryRegistry: false})
		if err != nil {
			t.Fatal(err)
		}
		serviceID = res.ID
		waitfor.Until(t, 60*time.Second, "2 running tasks", func() error {
			tasks, err := running(TaskFilter{ServiceID: serviceID})
			if err != nil {
				return err
			}
			if len(tasks) != 2 {
				all, _ := e1.Tasks(ctx, TaskFilter{ServiceID: serviceID})
				return fmt.Errorf("%d running: %+v", len(tasks), all)
			}
			return nil
		})
	})
	step("drain moves tasks off the node", func(t *testing.T) {
		tasks, err := running(TaskFilter{ServiceID: serviceID})
		if err != nil {
			t.Fatal(err)
		}
		victim := tasks[0].NodeID
		if err := e1.SetAvailability(ctx, victim, "drain"); err != nil {
			t.Fatal(err)
		}
		waitfor.Until(t, 60*time.Second, "tasks moved off the drained node", func() error {
			on, err := running(TaskFilter{NodeID: victim})
			if err != nil {
				return err
			}
			all, err := running(TaskFilter{ServiceID: serviceID})
			if err != nil {
				return err
			}
			if len(on) > 0 || len(all) != 2 {
				return fmt.Errorf("%d still on %s, %d running in all", len(on), victim, len(all))
			}
			return nil
		})
		n, err := e1.Node(ctx, victim)
		if err != nil {
			t.Fatal(err)
		}
		if n.Availability != "drain" {
			t.Errorf("availability %q, want drain", n.Availability)
		}
		if err := e1.SetAvailability(ctx, victim, "active"); err != nil {
			t.Fatal(err)
		}
		if _, err := e1.c.ServiceRemove(ctx, serviceID, client.ServiceRemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	step("demote", func(t *testing.T) {
		id := ids[n3.Name]
		if err := e1.SetRole(ctx, id, "worker"); err != nil {
			t.Fatal(err)
		}
		waitfor.Until(t, 30*time.Second, "node3 no longer a manager", func() error {
			ln, err := e3.Local(ctx)
			if err != nil {
				return err
			}
			n, err := e1.Node(ctx, id)
			if err != nil {
				return err
			}
			if ln.IsManager || n.Role != "worker" {
				return fmt.Errorf("local manager=%v, role %s", ln.IsManager, n.Role)
			}
			return nil
		})
	})
	step("leave and remove", func(t *testing.T) {
		for _, c := range []struct {
			e     *Engine
			node  string
			force bool
		}{{e2, n2.Name, false}, {e3, n3.Name, true}} {
			if err := c.e.Leave(ctx, false); err != nil {
				t.Fatal(err)
			}
			ln, err := c.e.Local(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ln.State != bootstrap.StateInactive {
				t.Fatalf("%s after leave: %+v", c.node, ln)
			}
			if err := c.e.Leave(ctx, false); err != nil {
				t.Errorf("%s: leaving again: %v", c.node, err)
			}
			// Without force the manager removes only a node it already sees down, which takes
			// a few heartbeats after a leave; the refusal must be the engine's, then force works.
			id := ids[c.node]
			if err := e1.RemoveNode(ctx, id, c.force); err != nil {
				if c.force || !strings.Contains(err.Error(), "remove node "+id) || !strings.Contains(err.Error(), "not down") {
					t.Fatal(err)
				}
				if err := e1.RemoveNode(ctx, id, true); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e1.Node(ctx, id); err == nil || !strings.Contains(err.Error(), "inspect node "+id) {
				t.Errorf("inspect removed node: %v", err)
			}
		}
		nodes, err := e1.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 1 || nodes[0].ID != id1 {
			t.Errorf("nodes after removal: %+v, want only %s", nodes, id1)
		}
	})
}

// TestJoinUnreachableManager checks the real engine's join time-out: with no manager at the
// address, dockerd answers "Timeout was reached..." after 20 s and keeps trying; Join then
// waits for the background join until the caller's deadline, and Leave(force) resets the node.
func TestJoinUnreachableManager(t *testing.T) {
	t.Parallel()
	bed := testbed.StartT(t, 1)
	e, err := New(bed.Nodes[0].Host)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
	defer cancel()
	const token = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"
	// a "manager" that accepts connections and never answers
	silent, err := net.Listen("tcp", bed.BridgeIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 100)
	defer func() {
		silent.Close()
		close(held)
		for c := range held {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			select {
			case held <- c:
			default:
				c.Close()
			}
		}
	}()
	err = e.Join(ctx, bootstrap.JoinRequest{RemoteAddrs: []string{silent.Addr().String()}, Token: token, AdvertiseAddr: bed.Nodes[0].IP})
	if err == nil {
		t.Fatal("join via an address where no manager listens succeeded")
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("error shows the token: %v", err)
	}
	if !strings.Contains(err.Error(), "waiting for the background join") {
		t.Errorf("join error %v, want the engine's time-out to lead to waiting for the background join", err)
	}
	if err := e.Leave(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	ln, err := e.Local(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ln.State != bootstrap.StateInactive {
		t.Errorf("after Leave(force): %+v, want inactive", ln)
	}
}
