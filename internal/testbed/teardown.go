package testbed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Close stops every engine (and its containerd, shims and containers), removes the
// namespaces, veths, bridge, iptables rule, cgroups and directories, and frees the bed index.
// It is idempotent and works after a failed test or a half-done Start.
func (b *Bed) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var wg sync.WaitGroup
	for _, n := range b.Nodes {
		wg.Go(func() {
			n.stopEngine(5 * time.Second)
			if n.inst != nil {
				n.inst.kill()
			}
		})
	}
	wg.Wait()
	err := b.teardown()
	if b.lock != nil {
		_ = b.lock.Close() // releases the flock
		b.lock = nil
	}
	if err != nil {
		return fmt.Errorf("close test bed %d: %w", b.Index, err)
	}
	b.logf("test bed %d: closed", b.Index)
	return nil
}

// teardown removes everything bed index k may own, whether this process made it or a crashed
// earlier run did: processes, mounts, namespaces, links, the iptables rule, cgroups, files.
func (b *Bed) teardown() error {
	var errs []error
	if err := killMatching(b.Dir+"/", fmt.Sprintf("/swtb%dn", b.Index)); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(b.Dir + "/"); err != nil {
		errs = append(errs, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := fmt.Sprintf("swtb%dn", b.Index)
	if ents, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range ents {
			if isIndexed(e.Name(), prefix) {
				if err := run(ctx, "ip", "netns", "delete", e.Name()); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if links, err := linkNames(ctx); err != nil {
		errs = append(errs, err)
	} else {
		vprefix := fmt.Sprintf("swtb%dv", b.Index)
		for _, l := range links {
			if isIndexed(l, vprefix) || l == b.Bridge {
				// deleting a namespace takes its veth pair with it, sometimes just now
				if err := run(ctx, "ip", "link", "delete", l); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
					errs = append(errs, err)
				}
			}
		}
	}
	for range 10 { // remove every copy of the rule
		if exec.CommandContext(ctx, "iptables", "-w", "-D", "FORWARD", "-i", b.Bridge, "-o", b.Bridge, "-j", "ACCEPT").Run() != nil {
			break
		}
	}
	removeCgroups(prefix)
	if err := os.RemoveAll(b.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", b.Dir, err))
	}
	return errors.Join(errs...)
}

// isIndexed reports whether name is prefix followed by digits only (swtb1n2 but not swtb12n2).
func isIndexed(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

// killMatching SIGKILLs every process whose command line mentions dir (dockerd, containerd,
// shims) or whose cgroup path contains cg (the containers, under --cgroup-parent), and waits
// until they are gone.
func killMatching(dir, cg string) error {
	self := os.Getpid()
	var pids []int
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cgroup, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if bytes.Contains(cmdline, []byte(dir)) || cgMatch(cgroup, cg) {
			pids = append(pids, pid)
		}
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range pids {
		for alive(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d survived SIGKILL", p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// cgMatch reports whether a /proc/<pid>/cgroup text has a path starting with cg<digits>.
func cgMatch(cgroup []byte, cg string) bool {
	for _, line := range strings.Split(string(cgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(parts[2], "/"), "/")
		if isIndexed("/"+first, cg) {
			return true
		}
	}
	return false
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after the ")" that closes the command name
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || i+2 >= len(data) || data[i+2] != 'Z'
}

// unmountUnder lazily unmounts every mount point below dir, deepest first (overlay layers,
// netns bind mounts of swarm networks, dockerd's own mounts).
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(unescape(fields[4]), dir) {
			points = append(points, unescape(fields[4]))
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescape undoes mountinfo's octal escapes (\040 for space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// linkNames lists the host's network interfaces.
func linkNames(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "-o", "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip link show: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// "12: swtb1v1@if2: <BROADCAST,..."
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
		names = append(names, name)
	}
	return names, nil
}

// removeCgroups removes the per-node cgroup trees that --cgroup-parent made (cgroup v1 and v2).
func removeCgroups(prefix string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && isIndexed(e.Name(), prefix) {
				removeTree(filepath.Join(root, e.Name()))
			}
		}
	}
}

// removeCgroup removes the cgroup tree name (exactly) at the root of every hierarchy.
func removeCgroup(name string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		if fi, err := os.Stat(filepath.Join(root, name)); err == nil && fi.IsDir() {
			removeTree(filepath.Join(root, name))
		}
	}
}

// removeTree rmdirs a cgroup directory after its children (cgroup files cannot be unlinked).
func removeTree(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			removeTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = syscall.Rmdir(dir)
}
