package testbed

// An instance's processes: power off, kill, reboot, finding systemd's children, its console
// and its cgroups.

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// PowerOff shuts instance node n down as `systemctl poweroff` does (systemd stops every unit,
// then PID 1 exits), waiting up to grace before it kills what is left.
func (b *Bed) PowerOff(ctx context.Context, n *Node, grace time.Duration) error {
	if n.inst == nil {
		return fmt.Errorf("%s is not an instance node", n.Name)
	}
	return n.inst.powerOff(ctx, grace)
}

func (in *instance) powerOff(ctx context.Context, grace time.Duration) error {
	in.mu.Lock()
	running, pid, exited := in.runningLocked(), in.pid, in.exited
	in.mu.Unlock()
	if !running {
		return nil
	}
	// SIGRTMIN+4 asks systemd for poweroff.target (systemd.1, "Signals").
	_ = syscall.Kill(pid, syscall.Signal(34+4))
	var err error
	select {
	case <-exited:
	case <-time.After(grace):
		err = fmt.Errorf("still running %s after the poweroff request: killed", grace)
	case <-ctx.Done():
		err = ctx.Err()
	}
	in.kill()
	return err
}

// kill ends the instance at once, as pulling its power cord would.
func (in *instance) kill() {
	in.mu.Lock()
	cmd, pid, exited := in.cmd, in.pid, in.exited
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	// PID 1's death ends every process of its PID namespace; unshare dies with it.
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// KillInstance ends instance node n at once (a power cut): no unit is stopped.
func (b *Bed) KillInstance(n *Node) {
	if n.inst != nil {
		n.inst.kill()
	}
}

// Reboot powers instance node n off (as `systemctl poweroff`) and boots it again over the same
// root file system: what the last boot wrote stays, /run starts empty.
func (b *Bed) Reboot(ctx context.Context, n *Node) error {
	if err := b.PowerOff(ctx, n, 2*time.Minute); err != nil {
		return fmt.Errorf("reboot %s: %w", n.Name, err)
	}
	return b.BootInstance(ctx, n, InstanceConfig{})
}

// childOf returns the pid of a child of parent, or 0.
func childOf(parent int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
	if err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			pid, _ := strconv.Atoi(f[0])
			return pid
		}
		return 0
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid(pid) == parent {
			return pid
		}
	}
	return 0
}

// ppid reads the parent pid from /proc/PID/stat.
func ppid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// openPTY opens a pseudo terminal pair: the master and the slave's file.
func openPTY() (*os.File, *os.File, error) {
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptm.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		ptm.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptm.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		ptm.Close()
		return nil, nil, fmt.Errorf("pty number: %w", e)
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	pts, err := os.OpenFile(name, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ptm.Close()
		return nil, nil, err
	}
	return ptm, pts, nil
}

// makeCgroups creates the cgroup name at the root of every cgroup hierarchy mounted under
// /sys/fs/cgroup (cgroup v1 controllers, systemd's named hierarchy, the unified one) and returns
// their directories; the instance joins each, then gets a cgroup namespace rooted there, so
// that its systemd manages a tree of its own. Bed teardown removes them (removeCgroups) and
// kills what runs in them (killMatching).
func makeCgroups(name string) ([]string, error) {
	var dirs []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		// cgroup v2 only: one hierarchy; hand the controllers down to the instance.
		d := filepath.Join("/sys/fs/cgroup", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		if ctrl, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control"); err == nil {
			for _, c := range strings.Fields(string(ctrl)) {
				_ = os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+"+c), 0)
			}
		}
		return []string{d}, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		line := s.Text()
		fields := strings.Fields(line)
		_, post, ok := strings.Cut(line, " - ")
		if !ok || len(fields) < 5 {
			continue
		}
		fstype := strings.Fields(post)[0]
		mp := unescape(fields[4])
		if (fstype != "cgroup" && fstype != "cgroup2") || filepath.Dir(mp) != "/sys/fs/cgroup" || fields[3] != "/" {
			continue
		}
		d := filepath.Join(mp, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		// A new cpuset cgroup has no cpus or memory nodes until given some: its parent's.
		for _, k := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(mp, k)); err == nil {
				if err := os.WriteFile(filepath.Join(d, k), v, 0); err != nil {
					return nil, fmt.Errorf("%s: %w", filepath.Join(d, k), err)
				}
			}
		}
		dirs = append(dirs, d)
	}
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup hierarchy mounted under /sys/fs/cgroup")
	}
	return dirs, s.Err()
}
