// Package e2e runs the real swarm-agent binary on real dockerd engines in network namespaces,
// against moto and the AWS front, as an operator's instances would.
package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

var agentBin string

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
