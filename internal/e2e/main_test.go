// Package e2e runs the real swarm-agent binary on real dockerd engines in network namespaces,
// against moto and the AWS front, as an operator's instances would.
package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

var (
	agentBin string
	workDir  string // the test binary's scratch directory (the agent binary, the instance image)
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if testbed.Available() != nil {
			return m.Run() // the tests skip, saying why
		}
		dir, err := os.MkdirTemp("", "swarm-agent-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		workDir = dir
		if agentBin, err = localcluster.BuildAgent(context.Background(), "../..", dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}())
}

// newCluster starts a local cluster for t, or skips when real engines cannot run here.
func newCluster(t *testing.T, managers, workers int) *localcluster.Cluster {
	t.Helper()
	if err := testbed.Available(); err != nil {
		t.Skipf("real engines cannot start here: %v", err)
	}
	c, err := localcluster.Start(t.Context(), localcluster.Options{Managers: managers, Workers: workers, AgentBin: agentBin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// bootAll boots every node of c at once, the first managers nodes as managers, and fails the
// test when a boot does.
func bootAll(t *testing.T, c *localcluster.Cluster, managers int) {
	t.Helper()
	var wg sync.WaitGroup
	runs := make([]localcluster.Run, len(c.Bed.Nodes))
	for i, n := range c.Bed.Nodes {
		role := "worker"
		if i < managers {
			role = "manager"
		}
		wg.Go(func() { runs[i] = c.Boot(t.Context(), n, role) })
	}
	wg.Wait()
	for i, r := range runs {
		if r.Code != 0 {
			t.Fatalf("boot of %s: exit %d\n%s", c.Bed.Nodes[i].Name, r.Code, r.Stderr)
		}
	}
}

// raceRound boots every node of c at the same moment, in shuffled order with small random
// delays (the first managers nodes as managers), fails the test when a boot fails, and returns
// how many boots reported init and every engine's view afterwards.
func raceRound(t *testing.T, c *localcluster.Cluster, managers int, label string) (int, localcluster.View) {
	t.Helper()
	ctx := t.Context()
	type job struct {
		n    *testbed.Node
		role string
	}
	jobs := make([]job, len(c.Bed.Nodes))
	for i, n := range c.Bed.Nodes {
		jobs[i] = job{n, "worker"}
		if i < managers {
			jobs[i].role = "manager"
		}
	}
	rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	var wg sync.WaitGroup
	runs := make([]localcluster.Run, len(jobs))
	for i, j := range jobs {
		delay := time.Duration(rand.IntN(300)) * time.Millisecond
		wg.Go(func() {
			time.Sleep(delay)
			runs[i] = c.Boot(ctx, j.n, j.role)
			saveLog(label+"-"+j.n.Name, runs[i].Stderr)
		})
	}
	wg.Wait()
	inits := 0
	for _, r := range runs {
		if r.Result.Action == "init" {
			inits++
		}
	}
	v := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
	failed := slices.ContainsFunc(runs, func(r localcluster.Run) bool { return r.Code != 0 })
	if failed || inits != 1 || len(v.ClusterIDs) != 1 {
		for i, r := range runs {
			t.Logf("%s: %s (%s) exit %d action %q:\n%s", label, jobs[i].n.Name, jobs[i].role, r.Code, r.Result.Action, keyLines(r.Stderr))
		}
	}
	if failed {
		t.Fatalf("%s: a boot failed (see above)", label)
	}
	return inits, v
}

// saveLog keeps a boot's log under $SWARM_AGENT_TEST_E2E_LOGS (when set) for post-mortems.
func saveLog(name, stderr string) {
	dir := os.Getenv("SWARM_AGENT_TEST_E2E_LOGS")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, name+".log"), []byte(stderr), 0o644)
	}
}

// keyLines keeps the log lines that tell what a boot did (for failure reports).
func keyLines(stderr string) string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		for _, k := range []string{"initialis", "published", "registered", "joined", "join failed", "leaving", "lock",
			"a manager appeared", "failed", "not yet published", "swarm-agent:"} {
			if strings.Contains(l, k) {
				if len(l) > 400 {
					l = l[:400]
				}
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
