package testbed

// A node's dockerd: starting it in the node's namespace, waiting until it answers, killing it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StartEngine starts n's dockerd (keeping its data) and waits until it answers on its socket.
// The engine is not tied to ctx; ctx only bounds the wait.
func (b *Bed) StartEngine(ctx context.Context, n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.engine != nil {
		select {
		case <-n.exited:
		default:
			return fmt.Errorf("engine of %s already runs (pid %d)", n.Name, n.engine.Process.Pid)
		}
	}
	// dockerd starts its containerd with Pdeathsig SIGKILL, so the containerd of a killed
	// dockerd dies too, but not at once: until it is gone (it may sit in the kernel for a
	// while), a new dockerd would find its pid alive and dial its dying socket until it gives
	// up ("timeout waiting for containerd to start"). Wait for it, then drop the pid files of
	// processes gone or zombies (an init that does not reap leaves the dead containerd as a
	// zombie), which would make dockerd wait for them.
	ctrdPID := filepath.Join(n.Dir, "exec", "containerd", "containerd.pid")
	if n.engine != nil {
		if err := waitGone(ctrdPID, containerdExit); err != nil {
			return fmt.Errorf("engine of %s: containerd of the previous engine: %w", n.Name, err)
		}
	}
	for _, f := range []string{filepath.Join(n.Dir, "pid"), ctrdPID} {
		if data, err := os.ReadFile(f); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || !alive(pid) {
				_ = os.Remove(f)
			}
		}
	}
	logf, err := os.OpenFile(n.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("engine of %s: %w", n.Name, err)
	}
	defer logf.Close()
	// nsenter, not `ip netns exec`: the latter remounts /sys and dockerd then finds no
	// devices cgroup. unshare --uts gives the node its own hostname.
	// The node label lives in the engine's own daemon.json (a label flag would forbid labels in
	// the file, where the agent writes its own); written once, kept across restarts.
	if _, err := os.Stat(n.ConfigPath()); errors.Is(err, os.ErrNotExist) {
		cfg := fmt.Sprintf("{\n  \"labels\": [\"%s=%s\"]\n}\n", NodeLabel, n.Name)
		if err := os.WriteFile(n.ConfigPath(), []byte(cfg), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", n.ConfigPath(), err)
		}
	}
	script := `hostname "$0" && exec dockerd "$@"`
	cmd := exec.Command("nsenter", "--net="+n.NetnsPath(), "--", "unshare", "--uts", "--",
		"sh", "-c", script, n.Name,
		"--data-root", filepath.Join(n.Dir, "data"),
		"--exec-root", filepath.Join(n.Dir, "exec"),
		"-H", n.Host,
		"--pidfile", filepath.Join(n.Dir, "pid"),
		"--iptables=false", "--ip-masq=false", "--bridge=none",
		"--cgroup-parent", "/"+n.Netns,
		"--userland-proxy=false",
		"--config-file", n.ConfigPath(),
	)
	cmd.Args = append(cmd.Args, b.opts.EngineArgs...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start engine of %s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n.engine, n.exited = cmd, exited
	b.logf("%s: dockerd pid %d, %s", n.Name, cmd.Process.Pid, n.Host)
	return waitEngine(ctx, n, exited)
}

// containerdExit bounds the wait for a dead engine's containerd to exit.
const containerdExit = 30 * time.Second

// waitGone waits until the process named by pidFile (if any) has exited, SIGKILLing it
// once halfway through the wait.
func waitGone(pidFile string, wait time.Duration) error {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return nil
	}
	deadline, killed := time.Now().Add(wait), false
	for alive(pid) {
		if !killed && time.Until(deadline) < wait/2 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d (%s) still alive after %s", pid, pidFile, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// waitEngine polls n's socket until the engine answers, it exits or the deadline passes.
func waitEngine(ctx context.Context, n *Node, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, engineWait)
	defer cancel()
	start := time.Now()
	var last error
	for {
		if last = ping(ctx, n.Socket()); last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("engine of %s exited while starting; log %s:\n%s", n.Name, n.LogPath(), tail(n.LogPath(), 20))
		case <-ctx.Done():
			return fmt.Errorf("engine of %s did not answer on %s within %v (%v); log %s:\n%s",
				n.Name, n.Host, time.Since(start).Round(time.Millisecond), last, n.LogPath(), tail(n.LogPath(), 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unixClient is an HTTP client that talks to the engine at sock.
func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
}

func ping(ctx context.Context, sock string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := unixClient(sock).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// KillEngine kills n's dockerd with SIGKILL, as a crash would; its containerd, containers and
// data stay. StartEngine brings it back.
func (b *Bed) KillEngine(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.engine == nil {
		return fmt.Errorf("engine of %s was not started", n.Name)
	}
	select {
	case <-n.exited:
		return fmt.Errorf("engine of %s is not running", n.Name)
	default:
	}
	if err := n.engine.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill engine of %s: %w", n.Name, err)
	}
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("engine of %s did not die after SIGKILL", n.Name)
	}
	_ = os.Remove(filepath.Join(n.Dir, "pid"))
	return nil
}

// StopEngine stops n's dockerd as a shutdown does: SIGTERM (it stops its containers and its
// containerd), SIGKILL after grace. Its data stays; StartEngine brings it back.
func (b *Bed) StopEngine(n *Node, grace time.Duration) error {
	n.mu.Lock()
	started := n.engine != nil
	n.mu.Unlock()
	if !started {
		return fmt.Errorf("engine of %s was not started", n.Name)
	}
	n.stopEngine(grace)
	return nil
}

// stopEngine asks n's dockerd to stop (it stops its containers and containerd) and kills it
// after a grace period.
func (n *Node) stopEngine(grace time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.engine == nil {
		return
	}
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.engine.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(grace):
		_ = n.engine.Process.Signal(syscall.SIGKILL)
		<-n.exited
	}
}
