package tools_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	all := []string{"Debian packages (iproute2 iptables busybox-static procps util-linux file systemd rpm cloud-init mmdebstrap)",
		"Docker (swarm-agent install)", "moto", "Consul agent (bin/consul)", "Packer (bin/packer)",
		"instance root file system (bin/instance-rootfs)"}
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

// TestNewcomer runs tools/newcomer.sh with a stand-in for make: the README's two commands run in
// a fresh clone of HEAD, in order, and each gets a line with its result and duration.
func TestNewcomer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("newcomer.sh runs as root, as the README's commands do")
	}
	if err := exec.CommandContext(t.Context(), "git", "rev-parse", "HEAD").Run(); err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	// The stand-in records its arguments, where it ran and that directory's commit; "test" fails.
	stub := filepath.Join(dir, "make")
	script := "#!/bin/sh\necho \"$1 $(pwd) $(git rev-parse HEAD)\" >> " + calls + "\necho building\n[ \"$1\" != test ]\n"
	if err := os.WriteFile(stub, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "bash", "newcomer.sh")
	cmd.Env = append(os.Environ(), "MAKE="+stub)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("newcomer.sh with a failing make test: %v, want exit status 1\n%s", err, out)
	}
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("make ran %d times (%q), want demo then test", len(lines), lines)
	}
	repo, _ := filepath.Abs("..")
	for i, want := range []string{"demo", "test"} {
		f := strings.Fields(lines[i])
		if len(f) != 3 || f[0] != want || !strings.HasPrefix(f[1], "/tmp/swarm-agent-newcomer.") || f[1] == repo {
			t.Fatalf("call %d: %q, want make %s in a fresh clone", i, lines[i], want)
		}
		// The clone's commit is this checkout's (HEAD when the script ran: another commit may
		// have landed since) and the one the script names.
		if err := exec.CommandContext(t.Context(), "git", "cat-file", "-e", f[2]+"^{commit}").Run(); err != nil || !strings.Contains(string(out), "commit "+f[2][:7]) {
			t.Errorf("call %d ran at commit %s: not one of this checkout's, or not the one the script names (%v)", i, f[2], err)
		}
		if _, err := os.Stat(f[1]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the clone %s is still there (%v)", f[1], err)
		}
	}
	for _, re := range []string{`newcomer: sudo make demo +ok +[0-9.]+s\n`, `newcomer: sudo make test +FAILED \(exit 1\) +[0-9.]+s\n`} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("output does not match %s:\n%s", re, out)
		}
	}
}
