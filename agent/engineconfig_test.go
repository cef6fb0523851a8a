package agent

import (
	"bufio"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/bootstrap/daemonconfig"
)

// TestReloadEngineSignalsThePidfileProcess: without systemd, the reload is a SIGHUP to the
// process the pid file names (what dockerd reloads daemon.json on), only if it is a dockerd.
func TestReloadEngineSignalsThePidfileProcess(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs this machine: the reload would go to docker.service over D-Bus")
	}
	dir := t.TempDir()
	// A shell named dockerd (its /proc/PID/comm) stands for the engine.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	dockerd := filepath.Join(dir, "dockerd")
	if err := os.Symlink(sh, dockerd); err != nil {
		t.Fatal(err)
	}
	engine := startTrapShell(t, dockerd)
	pidfile := filepath.Join(dir, "docker.pid")
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(engine.pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reloadEngine(t.Context(), pidfile); err != nil {
		t.Fatal(err)
	}
	if got := engine.next(t); got != "hup" {
		t.Fatalf("the process named by the pid file reported %q, want hup (a SIGHUP)", got)
	}

	for name, content := range map[string]string{"garbage": "dockerd\n", "init": "1\n"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := reloadEngine(t.Context(), p); err == nil || !strings.Contains(err.Error(), "is not a pid") {
			t.Errorf("pid file %q: err %v, want one saying it is not a pid", content, err)
		}
	}
	if err := reloadEngine(t.Context(), filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no dockerd") {
		t.Errorf("missing pid file: %v", err)
	}
	// A stale pid file naming another live process: no signal to it.
	other := startTrapShell(t, sh)
	stale := filepath.Join(dir, "stale.pid")
	if err := os.WriteFile(stale, []byte(strconv.Itoa(other.pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reloadEngine(t.Context(), stale); err == nil || !strings.Contains(err.Error(), "not a running dockerd") {
		t.Errorf("stale pid file: %v, want an error saying it is not a running dockerd", err)
	}
	// The shell reports its pending signals lowest number first: a SIGHUP sent before this
	// SIGUSR1 would be reported before it.
	if err := syscall.Kill(other.pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if got := other.next(t); got != "usr1" {
		t.Errorf("the process a stale pid file named reported %q before usr1: it got a signal", got)
	}
}

// trapShell is a shell (started as the program at path) that reports each SIGHUP and SIGUSR1
// as a line on its standard output.
type trapShell struct {
	pid   int
	out   *os.File
	lines *bufio.Reader
}

// startTrapShell starts a trapShell and returns once its traps are set: it says "ready" only
// then, so no signal can reach it before and kill it instead.
func startTrapShell(t *testing.T, path string) *trapShell {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "-c", `trap 'echo hup' HUP; trap 'echo usr1' USR1; echo ready; while :; do sleep 0.05; done`)
	cmd.Stdout = w
	// A shell cannot trap a signal that was ignored when it started (POSIX), and a test run
	// under nohup (or any parent that ignores SIGHUP) passes that on: the trap would silently
	// not be set and the SIGHUP never reported. While this process handles SIGHUP itself, the
	// child starts with the default action instead (Go resets handled signals in the child);
	// Stop puts back what was there before.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	err = cmd.Start()
	signal.Stop(hup)
	_ = w.Close()
	if err != nil {
		_ = r.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = r.Close() })
	s := &trapShell{pid: cmd.Process.Pid, out: r, lines: bufio.NewReader(r)}
	if got := s.next(t); got != "ready" {
		t.Fatalf("stand-in shell said %q, want ready", got)
	}
	return s
}

// next returns the shell's next line, failing the test after 30 s without one.
func (s *trapShell) next(t *testing.T) string {
	t.Helper()
	if err := s.out.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := s.lines.ReadString('\n')
	if err != nil {
		t.Fatalf("stand-in shell (pid %d): no line: %v", s.pid, err)
	}
	return strings.TrimSpace(line)
}

// TestLogSettingsChange: only a change of the log settings asks for an engine restart; labels
// alone are reloaded, and settings already in the file change nothing.
func TestLogSettingsChange(t *testing.T) {
	base := daemonconfig.Owned{InstanceID: "i-1", AZ: "us-east-1a"}
	withLog := base
	withLog.LogDriver, withLog.LogOpts = "awslogs", map[string]string{"awslogs-group": "swarm"}
	tests := []struct {
		name    string
		file    string
		want    daemonconfig.Owned
		restart bool
	}{
		{"no log settings asked", `{"log-driver":"journald"}`, base, false},
		{"labels change only", `{"labels":["swarm-agent.instance-id=i-0"],"log-driver":"awslogs","log-opts":{"awslogs-group":"swarm"}}`, withLog, false},
		{"log driver changes", `{"log-driver":"journald"}`, withLog, true},
		{"log opts change", `{"log-driver":"awslogs","log-opts":{"awslogs-group":"old"}}`, withLog, true},
		{"no file yet", "", withLog, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "daemon.json")
			if tt.file != "" {
				if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := logSettingsChange(path, tt.want)
			if err != nil || got != tt.restart {
				t.Fatalf("restart = %v (%v), want %v", got, err, tt.restart)
			}
		})
	}
}
