package localcluster

import (
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

// TestStartFailureCleansUp: a start that fails after the cluster was made (here the test bed
// refuses zero nodes) returns its error and tears down what it had started. It panicked: the
// clean-up went through the named result, which `return nil, err` had set to nil, and a
// panic in one e2e test's setup ends the whole package.
func TestStartFailureCleansUp(t *testing.T) {
	if err := testbed.Available(); err != nil {
		t.Skipf("real engines cannot start here: %v", err)
	}
	c, err := Start(t.Context(), Options{})
	if err == nil {
		c.Close()
		t.Fatal("a cluster of no nodes started; want the test bed's refusal")
	}
	if c != nil || !strings.Contains(err.Error(), "start engines") {
		t.Fatalf("Start = %v, %v; want nil and the test bed's refusal", c, err)
	}
}
