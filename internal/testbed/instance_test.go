package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestInstance boots an instance node next to an engine node: systemd as PID 1 reaches
// running with no failed unit, its docker.service answers the host through the node's socket
// with overlay2 storage, it is on the bed's network with its own host name, a reboot keeps its
// root file system and a power cut ends every process of it; Close leaves nothing behind.
func TestInstance(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("real docker engines cannot start here: %v", err)
	}
	ctx := t.Context()
	img, err := BaseImage(ctx, "../..", true, testLog{t})
	if err != nil {
		t.Skipf("no instance root file system (tools/prepare.sh --instance builds it): %v", err)
	}
	b, err := Start(ctx, Options{Nodes: 2, NoImage: true, Instances: []int{2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	eng, inst := b.Nodes[0], b.Nodes[1]
	if eng.IsInstance() || !inst.IsInstance() {
		t.Fatalf("kinds: node1 instance=%v node2 instance=%v", eng.IsInstance(), inst.IsInstance())
	}
	start := time.Now()
	if err := b.BootInstance(ctx, inst, InstanceConfig{Image: img}); err != nil {
		t.Fatal(err)
	}
	t.Logf("instance booted in %s", time.Since(start).Round(time.Millisecond))
	out := func(name string, args ...string) string {
		t.Helper()
		s, err := b.InstanceOutput(ctx, inst, name, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(s)
	}
	if s, _ := b.InstanceOutput(ctx, inst, "systemctl", "is-system-running", "--wait"); strings.TrimSpace(s) != "running" {
		t.Errorf("is-system-running = %q; failed units:\n%s", s, out("systemctl", "--failed", "--no-legend"))
	}
	if s := out("hostname"); s != inst.Name {
		t.Errorf("hostname = %q, want %q", s, inst.Name)
	}
	if s := out("cat", "/proc/1/comm"); s != "systemd" {
		t.Errorf("PID 1 is %q", s)
	}
	if s := out("systemd-detect-virt", "--container"); s != "container-other" {
		t.Errorf("systemd-detect-virt --container = %q", s)
	}
	if err := ping(ctx, inst.Socket()); err != nil {
		t.Fatalf("engine from the host: %v", err)
	}
	if s := out("docker", "info", "--format", "{{.Driver}} {{.Name}}"); s != "overlay2 "+inst.Name {
		t.Errorf("docker info: %q, want overlay2 storage and name %s", s, inst.Name)
	}
	// On the bed's network: the instance reaches the engine node's dockerd? It listens on a
	// socket only; use the bridge instead.
	if _, err := b.InstanceOutput(ctx, inst, "bash", "-c", "exec 3<>/dev/tcp/"+b.BridgeIP+"/9; exit 0"); err != nil && !strings.Contains(err.Error(), "refused") {
		t.Logf("bridge reachability probe: %v", err)
	}
	if s := out("ip", "-4", "-o", "addr", "show", "eth0"); !strings.Contains(s, inst.IP+"/24") {
		t.Errorf("eth0: %q, want %s", s, inst.IP)
	}
	// Reboot: the root file system stays, /run is new.
	out("sh", "-c", "echo kept > /var/tmp/mark; echo gone > /run/mark")
	pid := inst.PID()
	if err := b.Reboot(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if inst.PID() == pid {
		t.Errorf("same systemd pid %d after reboot", pid)
	}
	if s := out("cat", "/var/tmp/mark"); s != "kept" {
		t.Errorf("after reboot /var/tmp/mark = %q", s)
	}
	if _, err := b.InstanceOutput(ctx, inst, "cat", "/run/mark"); err == nil {
		t.Errorf("/run/mark survived the reboot")
	}
	// A power cut ends every process of the instance.
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); err == nil && cgMatch(cg, "/"+inst.Netns[:len(inst.Netns)-1]) {
			var p int
			if _, err := fmt.Sscan(e.Name(), &p); err == nil {
				pids = append(pids, p)
			}
		}
	}
	if len(pids) < 5 {
		t.Errorf("%d processes in the instance's cgroup, want systemd, journald, dbus, containerd, dockerd...", len(pids))
	}
	b.KillInstance(inst)
	// SIGKILL takes effect when each process next runs, which a loaded machine may delay: wait
	// for the deaths (generously) rather than looking once after a fixed pause.
	waitfor.Until(t, time.Minute, "every process of the instance ended by its power cut", func() error {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("pids %v of the instance survived", left)
		}
		return nil
	})
	k := b.Index
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if left := residue(t, k, nil); len(left) > 0 {
		t.Errorf("left after Close: %v", left)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
