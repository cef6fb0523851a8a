package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/discovery"
)

// TestExitCodeFromTypesOnly: the exit code follows the error's type, whatever its words. The
// wait message "a manager that accepts the join" once matched cobra's "accepts " and turned a
// wait that elapsed (6, systemd restarts) into a usage error (2, systemd gives up).
func TestExitCodeFromTypesOnly(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("waited 1m0s for a manager that accepts the join: %w", bootstrap.ErrWaitElapsed), ExitWaitElapsed},
		{fmt.Errorf("unknown command in a message from docker: invalid argument, accepts 1 arg: %w", errDocker), ExitDocker},
		{errors.New("unknown flag said by someone; requires at least a bug"), ExitInternal},
		{fmt.Errorf("registered managers do not answer: %w", bootstrap.ErrWaitElapsed), ExitWaitElapsed},
		{usageError{errors.New("accepts 0 arg(s), received 1")}, ExitUsage},
		// Another cluster's managers' record: a configuration error (it also carries
		// ErrDiscoveryConfig, whose code is 5), whatever the words.
		{fmt.Errorf("boot: %w: %w: zone not found, access denied", discovery.ErrDiscoveryConfig, discovery.ErrOtherCluster), ExitUsage},
		{fmt.Errorf("boot: %w: another cluster owns the name", discovery.ErrDiscoveryConfig), ExitDiscovery},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%q) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// TestParserRefusalsAreUsage: what cobra refuses before a command runs exits 2.
func TestParserRefusalsAreUsage(t *testing.T) {
	for _, args := range [][]string{{"no-such-command"}, {"version", "extra"}, {"boot", "--no-such-flag"}} {
		var out, errb bytes.Buffer
		if code := run(t.Context(), env{stdout: &out, stderr: &errb, readFile: os.ReadFile}, args); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitUsage, errb.String())
		}
	}
}
