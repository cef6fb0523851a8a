package agent

import (
	"github.com/swarm-agent/swarm-agent/bootstrap/daemonconfig"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReloadEngineSignalsThePidfileProcess: without systemd, the reload is a SIGHUP to the
// process the pid file names (what dockerd reloads daemon.json on), only if it is a dockerd.
func TestReloadEngineSignalsThePidfileProcess(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs this machine: the reload would go to docker.service over D-Bus")
	}
	dir := t.TempDir()
	mark := filepath.Join(dir, "hup")
	// A shell named dockerd (its /proc/PID/comm) stands for the engine.
	dockerd := filepath.Join(dir, "dockerd")
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sh, dockerd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dockerd, "-c", `trap 'echo hup > "$0"' HUP; while :; do sleep 0.05; done`, mark)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(200 * time.Millisecond) // the trap is set
	pidfile := filepath.Join(dir, "docker.pid")
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reloadEngine(t.Context(), pidfile); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, err := os.ReadFile(mark); err == nil && strings.TrimSpace(string(b)) == "hup" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process named by the pid file got no SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}

	for name, content := range map[string]string{"garbage": "dockerd\n", "init": "1\n"} {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(content), 0o644)
		if err := reloadEngine(t.Context(), p); err == nil || !strings.Contains(err.Error(), "is not a pid") {
			t.Errorf("pid file %q: err %v, want one saying it is not a pid", content, err)
		}
	}
	if err := reloadEngine(t.Context(), filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no dockerd") {
		t.Errorf("missing pid file: %v", err)
	}
	// A stale pid file naming another live process: no signal to it.
	other := exec.Command("sh", "-c", `trap 'echo hup > "$0"' HUP; while :; do sleep 0.05; done`, mark+"2")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	time.Sleep(200 * time.Millisecond)
	stale := filepath.Join(dir, "stale.pid")
	if err := os.WriteFile(stale, []byte(strconv.Itoa(other.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reloadEngine(t.Context(), stale); err == nil || !strings.Contains(err.Error(), "not a running dockerd") {
		t.Errorf("stale pid file: %v, want an error saying it is not a running dockerd", err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Stat(mark + "2"); err == nil {
		t.Error("the process a stale pid file named got a SIGHUP")
	}
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
