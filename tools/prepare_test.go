package tools_test

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestMakePreparesWhatItRuns: `make demo` prepares Docker and moto only (Consul too for
// -mode=consul, never Packer), `make test` everything the tests use. Building Consul and Packer
// was 9 of the 10 minutes of a newcomer's first demo.
func TestMakePreparesWhatItRuns(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	base := []string{"Debian packages (iproute2 iptables busybox-static procps util-linux)", "Docker (swarm-agent install)", "moto"}
	all := []string{"Debian packages (iproute2 iptables busybox-static procps util-linux file systemd rpm cloud-init)",
		"Docker (swarm-agent install)", "moto", "Consul agent (bin/consul)", "Packer (bin/packer)"}
	tests := []struct {
		name string
		make []string
		want []string
	}{
		{"demo", []string{"demo"}, base},
		{"demo -mode=failover", []string{"demo", "DEMO_FLAGS=-mode=failover"}, base},
		{"demo -mode=consul", []string{"demo", "DEMO_FLAGS=-mode=consul"}, append(slices.Clip(base), "Consul agent (bin/consul)")},
		{"demo -mode consul", []string{"demo", "DEMO_FLAGS=-mode consul"}, append(slices.Clip(base), "Consul agent (bin/consul)")},
		{"test", []string{"test"}, all},
		{"test-integration", []string{"test-integration"}, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), "make", append([]string{"-n", "--no-print-directory", "-C", ".."}, tt.make...)...).Output()
			if err != nil {
				t.Fatalf("make -n %s: %v", strings.Join(tt.make, " "), err)
			}
			var prepare []string
			for line := range strings.Lines(string(out)) {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == "bash" && f[1] == "tools/prepare.sh" {
					prepare = f[2:]
				}
			}
			if prepare == nil {
				t.Fatalf("make %s runs no tools/prepare.sh:\n%s", strings.Join(tt.make, " "), out)
			}
			if got := plan(t, prepare...); !slices.Equal(got, tt.want) {
				t.Errorf("make %s prepares %q (tools/prepare.sh %s), want %q", strings.Join(tt.make, " "), got, strings.Join(prepare, " "), tt.want)
			}
		})
	}
}

// plan is the list of steps tools/prepare.sh would take with args.
func plan(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "bash", append([]string{"prepare.sh", "--plan"}, args...)...).Output()
	if err != nil {
		t.Fatalf("prepare.sh --plan %s: %v", strings.Join(args, " "), err)
	}
	var steps []string
	for line := range strings.Lines(string(out)) {
		// prepare: [2/3] Docker (swarm-agent install)
		_, step, ok := strings.Cut(strings.TrimSpace(line), "] ")
		if !ok || !strings.HasPrefix(line, "prepare: [") {
			t.Fatalf("prepare.sh --plan printed %q, want only step lines", line)
		}
		steps = append(steps, step)
	}
	return steps
}

// TestPrepareRefusesUnknownArguments: a misspelt part is an error (exit 2), not a silent default.
func TestPrepareRefusesUnknownArguments(t *testing.T) {
	err := exec.CommandContext(t.Context(), "bash", "prepare.sh", "--plan", "--consl").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("prepare.sh --consl: %v, want exit status 2", err)
	}
}
