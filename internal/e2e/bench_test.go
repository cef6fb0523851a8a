package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

// BenchmarkDrainOverhead measures the agent's own overhead in a scale-in drain on real
// engines: the time `swarm-agent drain` took from start to CompleteLifecycleAction, minus the
// time the swarm itself took to move the node's tasks (the drain report's TaskWait). It also
// reports the remove step apart: most of it is the swarm noticing that the node left (its
// heartbeat timeout), which the node removal has to wait for.
func BenchmarkDrainOverhead(b *testing.B) {
	if err := testbed.Available(); err != nil {
		b.Skipf("real engines cannot start here: %v", err)
	}
	c, err := localcluster.Start(b.Context(), localcluster.Options{Managers: 1, Workers: 1 + b.N, AgentBin: agentBin})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	ctx := b.Context()
	var wg sync.WaitGroup
	for i, n := range c.Bed.Nodes {
		role := "worker"
		if i == 0 {
			role = "manager"
		}
		wg.Go(func() {
			if r := c.Boot(ctx, n, role); r.Code != 0 {
				b.Errorf("boot of %s: %s", n.Name, r.Stderr)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	mgr, err := c.StartRun(ctx, c.Bed.Nodes[0], "--watch-interval=500ms")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mgr.Stop(10 * time.Second) })
	d, err := c.Docker(c.Bed.Nodes[0])
	if err != nil {
		b.Fatal(err)
	}
	replicas := uint64(2 * len(c.Bed.Nodes))
	if _, err := d.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "bench"},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: testbed.Image, Command: []string{"sleep", "3600"}}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}, QueryRegistry: false}); err != nil {
		b.Fatal(err)
	}
	time.Sleep(5 * time.Second) // tasks start
	var overhead, moving, removal time.Duration
	b.ResetTimer()
	for i := range b.N {
		n := c.Bed.Nodes[1+i]
		if err := c.Front.StartScaleIn(ctx, c.InstanceID(n)); err != nil {
			b.Fatal(err)
		}
		out, err := c.Command(ctx, n, "drain", "--drain-deadline=2m").Output()
		if err != nil {
			b.Fatalf("drain of %s: %v", n.Name, err)
		}
		var rep struct {
			Took, TaskWait time.Duration
			Steps          []struct {
				Name, Outcome string
				Took          time.Duration
			}
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
			b.Fatalf("drain report %q: %v", out, err)
		}
		for _, st := range rep.Steps {
			fmt.Printf("bench: step %-10s %-8s %s\n", st.Name, st.Outcome, st.Took.Round(time.Millisecond))
			if st.Name == "remove" {
				removal += st.Took // mostly the swarm noticing the node left (its heartbeat timeout)
			}
		}
		overhead += rep.Took - rep.TaskWait
		moving += rep.TaskWait
	}
	b.StopTimer()
	b.ReportMetric((overhead / time.Duration(b.N)).Seconds(), "overhead-s/drain")
	b.ReportMetric((moving / time.Duration(b.N)).Seconds(), "swarm-move-s/drain")
	b.ReportMetric((removal / time.Duration(b.N)).Seconds(), "remove-wait-s/drain")
	fmt.Printf("bench: drain overhead %s per drain (swarm moving tasks: %s)\n", overhead/time.Duration(b.N), moving/time.Duration(b.N))
}
