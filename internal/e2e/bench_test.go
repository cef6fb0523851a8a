package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// BenchmarkDrainOverhead measures the agent's own overhead in a scale-in drain on real
// engines: the time `swarm-agent drain` took from start to CompleteLifecycleAction, minus the
// time the swarm itself took to move the node's tasks (the drain report's TaskWait). It also
// reports the remove step apart: the node asks for its own removal by force right after it
// left; were that refused, the removal would wait for the swarm to notice that the node left
// (its heartbeat timeout, about 15 s).
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
	waitfor.Until(b, 2*time.Minute, fmt.Sprintf("%d running tasks of bench", replicas), func() error {
		_, n, err := localcluster.RunningTasks(ctx, d, "bench")
		if err == nil && n != int(replicas) {
			err = fmt.Errorf("%d running", n)
		}
		return err
	})
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

// BenchmarkJoin measures what boot costs on top of the swarm's own join, on real engines: one
// manager is booted, then each round a worker and a second manager boot with `swarm-agent boot`
// (process start to exit, timed from outside) and, once they are out again, join once more with a
// bare SwarmJoin through the engine's API (the floor: the same engine and token, nothing of the
// agent), and time the bed starting /bin/true in the node the way it starts the agent (nsenter,
// unshare, sh: part of every boot's time, and none of the bare join's). It prints the medians
// of boot's own stage times too. Medians over b.N rounds (run with -benchtime=5x or more). BENCH_AGENT_BIN names
// another agent binary to time (e.g. an older build) on the same bed; BENCH_AGENT_BASE one to
// time as well, in the same rounds, right after the agent under test (an A/B on a machine
// whose load drifts). BENCH_JOIN_ARGS adds arguments to each boot of the agent under test
// (e.g. --log-level=debug), and BENCH_JOIN_LOGS=1 prints each of its boots' start, end and log,
// to read where a boot's time goes beyond its stages (the process start before them).
func BenchmarkJoin(b *testing.B) {
	if err := testbed.Available(); err != nil {
		b.Skipf("real engines cannot start here: %v", err)
	}
	bin := agentBin
	if v := os.Getenv("BENCH_AGENT_BIN"); v != "" {
		bin = v
	}
	base := os.Getenv("BENCH_AGENT_BASE")
	ctx := b.Context()
	c, err := localcluster.Start(ctx, localcluster.Options{Managers: 2, Workers: 1, AgentBin: bin})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	first, mgr, wrk := c.Bed.Nodes[0], c.Bed.Nodes[1], c.Bed.Nodes[2]
	if r := c.Boot(ctx, first, "manager"); r.Code != 0 {
		b.Fatalf("boot of %s: %s", first.Name, r.Stderr)
	}
	d0, err := c.Docker(first)
	if err != nil {
		b.Fatal(err)
	}
	sw, err := d0.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	tokens := map[string]string{"worker": sw.Swarm.JoinTokens.Worker, "manager": sw.Swarm.JoinTokens.Manager}
	// out takes n out of the swarm again: demoted first when a manager (two managers cannot
	// lose one without losing quorum), left, and its node object removed.
	out := func(n *testbed.Node, role string) {
		d, err := c.Docker(n)
		if err != nil {
			b.Fatal(err)
		}
		info, err := d.Info(ctx, client.InfoOptions{})
		if err != nil {
			b.Fatal(err)
		}
		id := info.Info.Swarm.NodeID
		if role == "manager" {
			waitfor.Until(b, time.Minute, "demoting "+n.Name, func() error {
				res, err := d0.NodeInspect(ctx, id, client.NodeInspectOptions{})
				if err != nil {
					return err
				}
				spec := res.Node.Spec
				spec.Role = swarm.NodeRoleWorker
				_, err = d0.NodeUpdate(ctx, id, client.NodeUpdateOptions{Version: res.Node.Version, Spec: spec})
				return err
			})
			// The demotion is done when the node itself no longer says it is a manager.
			waitfor.Until(b, time.Minute, n.Name+" no longer a manager", func() error {
				info, err := d.Info(ctx, client.InfoOptions{})
				if err == nil && info.Info.Swarm.ControlAvailable {
					err = errors.New("still a manager")
				}
				return err
			})
		}
		if _, err := d.SwarmLeave(ctx, client.SwarmLeaveOptions{Force: true}); err != nil {
			b.Fatalf("leave %s: %v", n.Name, err)
		}
		waitfor.Until(b, time.Minute, "removing "+n.Name, func() error {
			_, err := d0.NodeRemove(ctx, id, client.NodeRemoveOptions{Force: true})
			return err
		})
	}
	var boots, floors = map[string][]time.Duration{}, map[string][]time.Duration{}
	stages := map[string]map[string][]time.Duration{} // role -> stage -> times, from "boot finished"
	var spawns []time.Duration                        // the bed starting a process in a node (/bin/true)
	b.ResetTimer()
	for range b.N {
		for _, x := range []struct {
			n    *testbed.Node
			role string
		}{{wrk, "worker"}, {mgr, "manager"}} {
			start := time.Now()
			if err := c.Bed.Command(ctx, x.n, nil, "true").Run(); err != nil {
				b.Fatalf("start /bin/true in %s: %v", x.n.Name, err)
			}
			spawns = append(spawns, time.Since(start))
			start = time.Now()
			r := c.Boot(ctx, x.n, x.role, strings.Fields(os.Getenv("BENCH_JOIN_ARGS"))...)
			if os.Getenv("BENCH_JOIN_LOGS") != "" {
				fmt.Printf("bench: %s boot started %s, ended %s:\n%s", x.role, start.UTC().Format("15:04:05.000"), time.Now().UTC().Format("15:04:05.000"), r.Stderr)
			}
			if r.Code != 0 || r.Result.Action != "join" {
				b.Fatalf("boot of %s as %s: code %d action %q: %s", x.n.Name, x.role, r.Code, r.Result.Action, r.Stderr)
			}
			boots[x.role] = append(boots[x.role], time.Since(start))
			addStages(stages, x.role, r.Stderr)
			out(x.n, x.role)
			if base != "" {
				start = time.Now()
				r := c.BootBin(ctx, base, x.n, x.role)
				if r.Code != 0 || r.Result.Action != "join" {
					b.Fatalf("boot of %s as %s with %s: code %d action %q: %s", x.n.Name, x.role, base, r.Code, r.Result.Action, r.Stderr)
				}
				boots["base "+x.role] = append(boots["base "+x.role], time.Since(start))
				out(x.n, x.role)
			}
			d, err := c.Docker(x.n)
			if err != nil {
				b.Fatal(err)
			}
			start = time.Now()
			if _, err := d.SwarmJoin(ctx, client.SwarmJoinOptions{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: x.n.IP,
				RemoteAddrs: []string{first.IP + ":2377"}, JoinToken: tokens[x.role]}); err != nil {
				b.Fatalf("bare join of %s: %v", x.n.Name, err)
			}
			floors[x.role] = append(floors[x.role], time.Since(start))
			out(x.n, x.role)
		}
	}
	b.StopTimer()
	// Part of every boot's time is the bed's, not the agent's: nsenter, unshare and sh start
	// before the agent does (the bare join is called from the host and pays none of it).
	b.ReportMetric(median(spawns).Seconds(), "bed-spawn-s")
	fmt.Printf("bench: the bed starting a process in a node (nsenter, unshare, sh, /bin/true): %s (median of %d)\n", median(spawns).Round(time.Millisecond), len(spawns))
	for _, role := range []string{"worker", "manager"} {
		bm, fm := median(boots[role]), median(floors[role])
		b.ReportMetric(bm.Seconds(), role+"-boot-s")
		b.ReportMetric(fm.Seconds(), role+"-bare-join-s")
		fmt.Printf("bench: %s join: boot %s, bare SwarmJoin %s (medians of %d)\n", role, bm.Round(time.Millisecond), fm.Round(time.Millisecond), b.N)
		if base != "" {
			fmt.Printf("bench: %s join with %s: boot %s (median of %d, same rounds)\n", role, base, median(boots["base "+role]).Round(time.Millisecond), b.N)
		}
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(stages[role])) {
			parts = append(parts, fmt.Sprintf("%s %s", name, median(stages[role][name]).Round(100*time.Microsecond)))
		}
		fmt.Printf("bench: %s stages (medians, from boot's stages_ms): %s\n", role, strings.Join(parts, ", "))
	}
}

// addStages adds the stage times of the "boot finished" line in a boot's log to stages[role].
func addStages(stages map[string]map[string][]time.Duration, role, log string) {
	for line := range strings.Lines(log) {
		var l struct {
			Msg    string             `json:"message"`
			Stages map[string]float64 `json:"stages_ms"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "boot finished" {
			continue
		}
		if stages[role] == nil {
			stages[role] = map[string][]time.Duration{}
		}
		for name, ms := range l.Stages {
			stages[role][name] = append(stages[role][name], time.Duration(ms*float64(time.Millisecond)))
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
