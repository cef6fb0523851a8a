package agent

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// inSwarmFake is the managers' view of one node that gets ready, labelled and copied step by
// step, as a joining worker's node does.
type inSwarmFake struct {
	mu      sync.Mutex
	node    swarm.Node
	reads   int
	set     []map[string]string
	onRead  func(reads int, n *swarm.Node)
	nodesOK bool
}

func (f *inSwarmFake) Node(_ context.Context, id string) (swarm.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.onRead != nil {
		f.onRead(f.reads, &f.node)
	}
	if id != f.node.ID {
		return swarm.Node{}, lifecycle.ErrNoSuchNode
	}
	n := f.node
	n.Labels = maps.Clone(f.node.Labels)
	return n, nil
}

func (f *inSwarmFake) Nodes(ctx context.Context) ([]swarm.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.nodesOK {
		return nil, errors.New("not a manager")
	}
	return []swarm.Node{f.node, {ID: "leader", Role: swarm.RoleManager, State: "ready", Leader: true}}, nil
}

func (f *inSwarmFake) SetNodeLabels(_ context.Context, id string, l map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set = append(f.set, l)
	maps.Copy(f.node.Labels, l)
	return nil
}
func (f *inSwarmFake) SetAvailability(context.Context, string, string) error       { return nil }
func (f *inSwarmFake) SetRole(context.Context, string, swarm.Role) error           { return nil }
func (f *inSwarmFake) RemoveNode(context.Context, string, bool) error              { return nil }
func (f *inSwarmFake) Tasks(context.Context, string, string) ([]swarm.Task, error) { return nil, nil }
func (f *inSwarmFake) Self(context.Context) (string, bool, error)                  { return f.node.ID, false, nil }
func (f *inSwarmFake) Leave(context.Context, bool) error                           { return nil }

// TestWaitInSwarm: a worker's launch action waits until the managers show its node ready,
// labelled with its instance id (which the agent sets) and with the labels its engine labels
// call for (which the leader copies); a manager's also until it is a reachable Raft member of
// a swarm with a leader; and the wait ends with ctx, saying what was missing.
func TestWaitInSwarm(t *testing.T) {
	defer func(p time.Duration) { inSwarmPoll = p }(inSwarmPoll)
	inSwarmPoll = 5 * time.Millisecond
	const id = "i-0123456789abcdef0"
	engine := map[string]string{swarm.LabelInstanceID: id, swarm.LabelAZ: "us-east-1a", swarm.LabelNodeLabels: "workload", "workload": "db"}

	t.Run("worker", func(t *testing.T) {
		f := &inSwarmFake{node: swarm.Node{ID: "w1", Role: swarm.RoleWorker, State: "unknown", Labels: map[string]string{}, EngineLabels: engine}}
		f.onRead = func(reads int, n *swarm.Node) {
			if reads == 3 {
				n.State = "ready"
			}
			if reads == 6 { // the leader's copy
				n.Labels["az"], n.Labels["workload"] = "us-east-1a", "db"
			}
		}
		var stages []string
		why, err := waitInSwarm(t.Context(), f, swarm.RoleWorker, id, "", f, func(s string) { stages = append(stages, s) })
		if err != nil || why != "" {
			t.Fatalf("waitInSwarm = %q, %v", why, err)
		}
		if len(f.set) != 1 || f.set[0][swarm.LabelInstanceID] != id {
			t.Fatalf("labels set %v, want the instance id once", f.set)
		}
		if f.reads < 6 || len(stages) == 0 {
			t.Fatalf("returned after %d reads (stages %v), before the node was ready and labelled", f.reads, stages)
		}
	})
	t.Run("manager", func(t *testing.T) {
		f := &inSwarmFake{node: swarm.Node{ID: "m1", Role: swarm.RoleManager, State: "ready", Reachability: "unknown",
			Labels: map[string]string{swarm.LabelInstanceID: id, "az": "us-east-1a", "workload": "db"}, EngineLabels: engine}}
		f.onRead = func(reads int, n *swarm.Node) {
			if reads == 4 {
				n.Reachability = "reachable"
				f.nodesOK = true
			}
		}
		if why, err := waitInSwarm(t.Context(), f, swarm.RoleManager, id, "m1", f, func(string) {}); err != nil || why != "" {
			t.Fatalf("waitInSwarm = %q, %v", why, err)
		}
		if f.reads < 4 || len(f.set) != 0 {
			t.Fatalf("returned after %d reads, labels set %v", f.reads, f.set)
		}
	})
	t.Run("never ready", func(t *testing.T) {
		f := &inSwarmFake{node: swarm.Node{ID: "w1", Role: swarm.RoleWorker, State: "down", Labels: map[string]string{}}}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		why, err := waitInSwarm(ctx, f, swarm.RoleWorker, id, "w1", f, func(string) {})
		if !errors.Is(err, context.DeadlineExceeded) || why == "" {
			t.Fatalf("waitInSwarm = %q, %v; want the deadline and a reason", why, err)
		}
	})
}

// TestLaunchLookupOnlyWithHookName: a boot on an instance of an Auto Scaling group (instance
// metadata names its target lifecycle state) looks for a launch lifecycle action only when
// --launch-hook-name names one; without it boot makes no Auto Scaling call at all, which
// 10,000 workers booting at once would otherwise spend against the account's limit.
func TestLaunchLookupOnlyWithHookName(t *testing.T) {
	s := imdsfake.New()
	s.Put(imdsfake.Instance{ID: "i-0123456789abcdef0", PrivateIP: "127.0.0.1", AZ: "us-east-1a", Region: "us-east-1",
		InstanceType: "t3.medium", ASG: "workers", TargetLifecycleState: imdsfake.StateInService})
	imdsSrv := httptest.NewServer(s)
	defer imdsSrv.Close()
	var mu sync.Mutex
	var ops []string
	asgSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		ops = append(ops, r.Form.Get("Action"))
		mu.Unlock()
		// An instance in no group: the lookup settles at once.
		_, _ = io.WriteString(w, `<DescribeAutoScalingInstancesResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">`+
			`<DescribeAutoScalingInstancesResult><AutoScalingInstances/></DescribeAutoScalingInstancesResult>`+
			`<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></DescribeAutoScalingInstancesResponse>`)
	}))
	defer asgSrv.Close()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imdsSrv.URL)
	t.Setenv("AWS_ENDPOINT_URL_AUTO_SCALING", asgSrv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	calls := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ops)
	}
	cfg := Config{Role: "worker", Region: "us-east-1"}

	if l := startLaunch(t.Context(), cfg, zerolog.Nop(), nil); l != nil {
		l.hold.Release()
		t.Fatalf("without --launch-hook-name boot started a launch lookup")
	}
	if got := calls(); len(got) != 0 {
		t.Fatalf("without --launch-hook-name boot made Auto Scaling calls %v, want none", got)
	}

	cfg.LaunchHookName = "swarm-agent-launch"
	l := startLaunch(t.Context(), cfg, zerolog.Nop(), nil)
	if l == nil {
		t.Fatal("with --launch-hook-name boot did not look for its launch action")
	}
	held, known := l.hold.Held(t.Context(), 10*time.Second)
	l.hold.Release()
	if held || !known {
		t.Fatalf("lookup: held %t, known %t; want an answer: not held", held, known)
	}
	if got := calls(); !slices.Equal(got, []string{"DescribeAutoScalingInstances"}) {
		t.Fatalf("with --launch-hook-name: Auto Scaling calls %v, want one DescribeAutoScalingInstances", got)
	}
}
