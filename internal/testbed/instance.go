package testbed

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// An instance is a node that boots like an EC2 instance: systemd is PID 1 of its own PID,
// mount, UTS, IPC and cgroup namespaces, in the node's network namespace, over a root file
// system of its own (an overlay: the image's read-only layers and an upper directory kept
// under the node's directory, so that a "reboot" finds what the last boot left). Its Docker
// is the image's docker.service, its engine data under the node's directory (data/, bound at
// /var/lib/docker, so that overlay2 works and SwarmCertPath holds), its cloud-init the image's,
// fed through a NoCloud seed. The bed's own dockerd does not run on an instance node.
//
// The image's base layer is the root file system tools/instance/build.sh builds from Debian's
// packages (systemd, dbus, docker.io, cloud-init) and caches; further layers come from Bake.

//go:embed instance_init.sh
var instanceInit string

// InstanceConfig is what an instance is given at its first boot.
type InstanceConfig struct {
	Image InstanceImage
	// UserData is the instance's user_data, given to cloud-init through its NoCloud seed
	// (/var/lib/cloud/seed/nocloud/user-data). Nil: no seed, and cloud-init stays disabled.
	UserData []byte
	// InstanceID is the seed's meta-data instance-id (cloud-init runs its per-instance modules,
	// runcmd among them, once per id); default the node's name.
	InstanceID string
	// Env is KEY=VALUE set for every service of the instance (systemd's DefaultEnvironment):
	// what its cloud provides, such as where the AWS endpoints are.
	Env []string
}

// instance is the running part of an instance node.
type instance struct {
	name   string
	dir    string   // upper/, work/, root/ (the overlay), data/ (/var/lib/docker), console.log
	netns  string   // a path under /run/netns, or "" for a namespace of its own
	cgroup string   // the cgroup directory name in every hierarchy
	layers []string // lowerdirs, top first
	mu     sync.Mutex
	cmd    *exec.Cmd // unshare, parent of PID 1
	pid    int       // systemd, as the host sees it
	exited chan struct{}
	booted bool
}

// rootDir is where the instance's root file system is mounted on the host.
func (in *instance) rootDir() string { return filepath.Join(in.dir, "root") }

// IsInstance reports whether n is an instance node.
func (n *Node) IsInstance() bool { return n.inst != nil }

// Root is where an instance node's root file system is mounted on the host (readable and
// writable while it runs and while it is off); "" for an engine node.
func (n *Node) Root() string {
	if n.inst == nil {
		return ""
	}
	return n.inst.rootDir()
}

// ConsoleLog is the file that holds what an instance wrote to its console.
func (n *Node) ConsoleLog() string { return filepath.Join(n.Dir, "console.log") }

// PID is the host's pid of the instance's systemd, 0 when it does not run.
func (n *Node) PID() int {
	if n.inst == nil {
		return 0
	}
	n.inst.mu.Lock()
	defer n.inst.mu.Unlock()
	if !n.inst.runningLocked() {
		return 0
	}
	return n.inst.pid
}

func (in *instance) runningLocked() bool {
	if in.cmd == nil {
		return false
	}
	select {
	case <-in.exited:
		return false
	default:
		return true
	}
}

// BootInstance boots instance node n. The first boot lays down cfg: the image, the NoCloud
// seed, the host name, the instance's environment; later boots (after PowerOff) start systemd
// again over the same root file system and ignore cfg, as a reboot would. It returns once
// systemd answers and the instance's engine answers the host; the boot's other jobs (cloud-init's
// final stage, the user_data) may still run: `systemctl is-system-running --wait` waits for them.
func (b *Bed) BootInstance(ctx context.Context, n *Node, cfg InstanceConfig) error {
	if n.inst == nil {
		return fmt.Errorf("%s is not an instance node", n.Name)
	}
	in := n.inst
	in.mu.Lock()
	first := !in.booted
	if first {
		if len(cfg.Image.Layers) == 0 {
			in.mu.Unlock()
			return fmt.Errorf("boot %s: no image", n.Name)
		}
		in.layers = cfg.Image.Layers
	}
	in.mu.Unlock()
	if err := in.mount(ctx); err != nil {
		return fmt.Errorf("boot %s: %w", n.Name, err)
	}
	if first {
		if err := firstBoot(in.rootDir(), n.Name, cfg); err != nil {
			return fmt.Errorf("boot %s: %w", n.Name, err)
		}
	}
	if err := in.start(); err != nil {
		return fmt.Errorf("boot %s: %w", n.Name, err)
	}
	b.logf("%s: instance booting, systemd pid %d", n.Name, n.PID())
	if err := in.waitBooted(ctx, 3*time.Minute, false); err != nil {
		return fmt.Errorf("boot %s: %w\nconsole (%s):\n%s", n.Name, err, n.ConsoleLog(), tail(n.ConsoleLog(), 30))
	}
	return nil
}

// firstBoot writes what an instance gets before its first boot.
func firstBoot(root, name string, cfg InstanceConfig) error {
	files := map[string]string{
		"etc/hostname": name + "\n",
		// The bed's cloud, as cloud-init sees it: the NoCloud seed is the only datasource (none
		// given: cloud-init stays disabled); the network is the bed's (eth0 is configured before
		// the instance boots, as EC2's DHCP would); C.UTF-8 needs no locale generated.
		"etc/cloud/cloud.cfg.d/90-swarm-testbed.cfg": "# Written by the test bed (internal/testbed) at the instance's first boot.\n" +
			"datasource_list: [ NoCloud ]\nnetwork: {config: disabled}\nlocale: C.UTF-8\n",
	}
	if cfg.UserData != nil {
		id := cfg.InstanceID
		if id == "" {
			id = name
		}
		files["var/lib/cloud/seed/nocloud/meta-data"] = fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", id, name)
		files["var/lib/cloud/seed/nocloud/user-data"] = string(cfg.UserData)
	}
	if len(cfg.Env) > 0 {
		var q []string
		for _, kv := range cfg.Env {
			if strings.ContainsAny(kv, "\"\\\n") || !strings.Contains(kv, "=") {
				return fmt.Errorf("environment %q: want KEY=VALUE without quotes, backslashes or newlines", kv)
			}
			q = append(q, `"`+kv+`"`)
		}
		files["etc/systemd/system.conf.d/swarm-testbed.conf"] = "# The test bed's cloud: what every service of this instance finds in its environment.\n" +
			"[Manager]\nDefaultEnvironment=" + strings.Join(q, " ") + "\n"
	}
	for p, content := range files {
		path := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(p, "var/lib/cloud/seed") {
			mode = 0o600 // user_data may hold what only root should read
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

// mount mounts the overlay at root/ and the engine's data at root/var/lib/docker, unless they
// are mounted already (a reboot keeps them).
func (in *instance) mount(ctx context.Context) error {
	root := in.rootDir()
	for _, d := range []string{"upper", "work", "root", "data"} {
		if err := os.MkdirAll(filepath.Join(in.dir, d), 0o755); err != nil {
			return err
		}
	}
	if !isMountPoint(root) {
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(in.layers, ":"),
			filepath.Join(in.dir, "upper"), filepath.Join(in.dir, "work"))
		if err := run(ctx, "mount", "-t", "overlay", "-o", opts, "swarm-testbed", root); err != nil {
			return fmt.Errorf("overlay root: %w", err)
		}
	}
	lib := filepath.Join(root, "var/lib/docker")
	if !isMountPoint(lib) {
		if err := os.MkdirAll(lib, 0o710); err != nil {
			return err
		}
		if err := run(ctx, "mount", "--bind", filepath.Join(in.dir, "data"), lib); err != nil {
			return fmt.Errorf("engine data: %w", err)
		}
	}
	return nil
}

// isMountPoint reports whether path is a mount point in this mount namespace.
func isMountPoint(path string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 4 && unescape(fields[4]) == path {
			return true
		}
	}
	return false
}

// start runs the init script: systemd becomes PID 1 of the instance's namespaces.
func (in *instance) start() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.runningLocked() {
		return fmt.Errorf("already running (systemd pid %d)", in.pid)
	}
	cgroups, err := makeCgroups(in.cgroup)
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	script := filepath.Join(in.dir, "init.sh")
	if err := os.WriteFile(script, []byte(instanceInit), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(in.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// The console is a pty: systemd and services with StandardOutput=console (cloud-init's
	// final stage) want a terminal there. Its other end is copied to console.log.
	ptm, pts, err := openPTY()
	consolePath := ""
	if err == nil {
		consolePath = pts.Name()
		go func() { _, _ = io.Copy(logf, ptm); _ = ptm.Close(); _ = logf.Close() }()
	} else {
		fmt.Fprintf(logf, "testbed: no console pty (%v)\n", err)
	}
	args := append([]string{script, "outer", in.name, in.rootDir(), in.netns, consolePath}, cgroups...)
	cmd := exec.Command("/bin/sh", args...)
	if pts != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	} else {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	if pts != nil {
		_ = pts.Close() // the child holds it
	}
	if err != nil {
		if ptm != nil {
			_ = ptm.Close()
		} else {
			_ = logf.Close()
		}
		return fmt.Errorf("start: %w", err)
	}
	if ptm == nil {
		defer logf.Close()
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	in.cmd, in.exited, in.booted = cmd, exited, true
	// PID 1 is unshare's child; wait for it to exist and to be systemd.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pid := childOf(cmd.Process.Pid); pid > 0 {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "systemd" {
				in.pid = pid
				link := in.socket()
				_ = os.Remove(link)
				return os.Symlink(fmt.Sprintf("/proc/%d/root/run/docker.sock", pid), link)
			}
		}
		select {
		case <-exited:
			return errors.New("the init script exited before systemd started (see console.log)")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("systemd did not start within 30 s")
		}
	}
}

// waitBooted waits until systemd answers and the instance's engine answers the host; with full,
// also until systemd says the boot finished (running or degraded: every start job of the boot
// done, cloud-init's final stage among them).
func (in *instance) waitBooted(ctx context.Context, wait time.Duration, full bool) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last string
	for {
		out, _ := in.command(ctx, "systemctl", "is-system-running").Output()
		state := strings.TrimSpace(string(out))
		switch {
		case state == "running" || state == "degraded" || state == "starting" && !full:
			err := ping(ctx, in.socket())
			if err == nil {
				return nil
			}
			last = "system " + state + ", engine: " + err.Error()
		default:
			last = "system " + state
		}
		select {
		case <-in.exited:
			return errors.New("systemd exited while booting")
		case <-ctx.Done():
			return fmt.Errorf("not booted within %s (%s)", wait, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// socket is the engine's socket as the host reaches it: docker.sock in the node's directory, a
// link (renewed at every boot) to /run/docker.sock through the root of the instance's systemd.
func (in *instance) socket() string { return filepath.Join(in.dir, "docker.sock") }

// command runs name inside the instance: its namespaces, its root, a clean environment.
func (in *instance) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	in.mu.Lock()
	pid := in.pid
	in.mu.Unlock()
	argv := append([]string{"-t", strconv.Itoa(pid), "-a", "--", "/usr/bin/env", "-i",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "TERM=dumb",
		name}, args...)
	return exec.CommandContext(ctx, "nsenter", argv...)
}

// InstanceCommand runs name with args inside instance node n (its namespaces and root, a clean
// environment), as root on the instance would.
func (b *Bed) InstanceCommand(ctx context.Context, n *Node, name string, args ...string) *exec.Cmd {
	if n.inst == nil {
		return exec.CommandContext(ctx, "false")
	}
	return n.inst.command(ctx, name, args...)
}

// InstanceOutput runs a command inside instance node n and returns its standard output; the
// error carries standard error.
func (b *Bed) InstanceOutput(ctx context.Context, n *Node, name string, args ...string) (string, error) {
	if n.PID() == 0 {
		return "", fmt.Errorf("%s: instance is not running", n.Name)
	}
	var out, errb bytes.Buffer
	cmd := b.InstanceCommand(ctx, n, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s on %s: %w: %s", strings.Join(append([]string{name}, args...), " "), n.Name, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
