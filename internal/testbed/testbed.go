// Package testbed runs real dockerd engines on one machine, each in its own network namespace
// with its own IP and hostname on one bridge, so that tests and the demo can form real swarms.
//
// Bed k (picked with a lock file under /run/swarm-testbed/ so that several beds can run at
// once) uses bridge "swtb<k>", subnet 10.99.<k>.0/24 with the bridge at 10.99.<k>.1, and node i
// (from 1) gets IP 10.99.<k>.(10+i), namespace "swtb<k>n<i>" and its files under
// /tmp/swtb<k>/n<i>/. It needs root.
package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// Image is the reference of the busybox image LoadImage puts into an engine. Its registry
// "localhost:1" refuses at once, so engines use the local copy without network time-outs.
const Image = "localhost:1/busybox:test"

const (
	lockDir    = "/run/swarm-testbed"
	netnsDir   = "/run/netns"
	maxBeds    = 64
	engineWait = 90 * time.Second
)

// tools the bed runs; Available checks them.
var tools = []string{"dockerd", "containerd", "runc", "nsenter", "unshare", "ip", "iptables", "busybox"}

// UnitOnlyEnv, when set (make test-unit), makes every test that needs a real component (engines,
// moto, Consul) skip, saying so: only the unit tests run.
const UnitOnlyEnv = "SWARM_AGENT_TEST_UNIT_ONLY"

// Available reports why real engines cannot run here, or nil when they can.
func Available() error {
	if os.Getenv(UnitOnlyEnv) != "" {
		return errors.New(UnitOnlyEnv + " is set (make test-unit): real engines are not started")
	}
	if os.Geteuid() != 0 {
		return errors.New("testbed needs root (network namespaces, bridges, dockerd)")
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("testbed needs %s in PATH (apt-get install docker.io busybox-static iproute2 iptables)",
			strings.Join(missing, ", "))
	}
	return nil
}

// Options configure Start.
type Options struct {
	// Nodes is the number of engines to start (at least 1).
	Nodes int
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// NoImage skips loading Image into each engine (LoadImage can still do it later).
	NoImage bool
	// EngineArgs are extra dockerd arguments for every engine (e.g. "--label", "k=v").
	EngineArgs []string
	// Instances lists the nodes (by index, from 1) that are instances: systemd as PID 1 over
	// a root file system of their own, booted by BootInstance (instance.go). Start neither
	// starts an engine on them nor boots them.
	Instances []int
}

// NodeLabel is the engine label (dockerd --label) every node carries, its value the node's name.
const NodeLabel = "swarm-testbed.node"

// Bed is a running set of engines. Close tears it down.
type Bed struct {
	Index    int    // k: bridge swtb<k>, subnet 10.99.<k>.0/24
	Bridge   string // swtb<k>
	BridgeIP string // 10.99.<k>.1
	Dir      string // /tmp/swtb<k>
	Nodes    []*Node

	opts   Options
	lock   *os.File
	mu     sync.Mutex
	closed bool
}

// Node is one engine in its own network namespace.
type Node struct {
	Name  string // node<i>, also its hostname
	IP    string // 10.99.<k>.(10+i)
	Netns string // swtb<k>n<i>, under /run/netns
	Host  string // DOCKER_HOST: unix:///tmp/swtb<k>/n<i>/docker.sock
	Dir   string // /tmp/swtb<k>/n<i>: data, exec, pid, log, docker.sock
	Index int    // i, from 1

	veth   string
	inst   *instance // an instance node's systemd, nil for an engine node
	mu     sync.Mutex
	engine *exec.Cmd
	exited chan struct{}
}

// Socket is the engine's unix socket path (for an instance, a link to its /run/docker.sock).
func (n *Node) Socket() string { return filepath.Join(n.Dir, "docker.sock") }

// LogPath is the engine's log file (dockerd stdout and stderr).
func (n *Node) LogPath() string { return filepath.Join(n.Dir, "log") }

// ConfigPath is the engine's own daemon.json (dockerd --config-file): the agent merges its
// engine labels there, as it does into /etc/docker/daemon.json on an instance.
func (n *Node) ConfigPath() string { return filepath.Join(n.Dir, "daemon.json") }

// PIDFile is the engine's pid file (dockerd --pidfile).
func (n *Node) PIDFile() string { return filepath.Join(n.Dir, "pid") }

// NetnsPath is the namespace file that nsenter --net takes.
func (n *Node) NetnsPath() string { return filepath.Join(netnsDir, n.Netns) }

// StartT starts a bed of n nodes for a test, skips the test when engines cannot run here and
// closes the bed when the test ends.
func StartT(t testing.TB, n int) *Bed {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("real docker engines cannot start here: %v", err)
	}
	b, err := Start(t.Context(), Options{Nodes: n})
	if err != nil {
		t.Fatalf("start test bed: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close test bed: %v", err)
		}
	})
	return b
}

// Start picks a free bed index, clears what a crashed run left at that index, builds the bridge
// and the nodes' namespaces and starts their engines concurrently. The engines do not stop when
// ctx ends; only Close stops them. On error everything started is torn down.
func Start(ctx context.Context, opts Options) (*Bed, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if opts.Nodes < 1 {
		return nil, fmt.Errorf("test bed: %d nodes: need at least 1", opts.Nodes)
	}
	k, lock, err := pickIndex()
	if err != nil {
		return nil, err
	}
	return startAt(ctx, opts, k, lock)
}

// startAt starts a bed at index k whose lock the caller holds.
func startAt(ctx context.Context, opts Options, k int, lock *os.File) (_ *Bed, err error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	b := &Bed{
		Index:    k,
		Bridge:   fmt.Sprintf("swtb%d", k),
		BridgeIP: fmt.Sprintf("10.99.%d.1", k),
		Dir:      fmt.Sprintf("/tmp/swtb%d", k),
		opts:     opts,
		lock:     lock,
	}
	defer func() {
		if err != nil {
			if cerr := b.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
			}
		}
	}()
	if err := b.teardown(); err != nil {
		return nil, fmt.Errorf("test bed %d: clear leftovers of an earlier run: %w", k, err)
	}
	b.logf("test bed %d: bridge %s %s/24, %d nodes", k, b.Bridge, b.BridgeIP, opts.Nodes)
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("test bed %d: %w", k, err)
	}
	if err := b.setupBridge(ctx); err != nil {
		return nil, err
	}
	for i := 1; i <= opts.Nodes; i++ {
		n, err := b.newNode(ctx, i)
		if err != nil {
			return nil, err
		}
		if slices.Contains(opts.Instances, i) {
			n.inst = &instance{name: n.Name, dir: n.Dir, netns: n.NetnsPath(), cgroup: n.Netns}
		}
		b.Nodes = append(b.Nodes, n)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range b.Nodes {
		g.Go(func() error { return b.bringUp(gctx, n) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return b, nil
}

// bringUp starts n's engine and loads the image unless the options say not to. Instance nodes
// wait for BootInstance.
func (b *Bed) bringUp(ctx context.Context, n *Node) error {
	if n.inst != nil {
		return nil
	}
	if err := b.StartEngine(ctx, n); err != nil {
		return err
	}
	if b.opts.NoImage {
		return nil
	}
	return b.LoadImage(ctx, n)
}

// AddNode adds one more node to a running bed and starts its engine.
func (b *Bed) AddNode(ctx context.Context) (*Node, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errors.New("test bed is closed")
	}
	i := len(b.Nodes) + 1
	n, err := b.newNode(ctx, i)
	if err == nil {
		b.Nodes = append(b.Nodes, n)
	}
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := b.bringUp(ctx, n); err != nil {
		return nil, err
	}
	return n, nil
}

// Command runs name inside n's network namespace, with n's hostname and DOCKER_HOST set to n's
// engine; env is added to the current environment. Use it to run the agent or a test binary
// "on" the node.
func (b *Bed) Command(ctx context.Context, n *Node, env []string, name string, args ...string) *exec.Cmd {
	argv := append([]string{"--net=" + n.NetnsPath(), "--", "unshare", "--uts", "--",
		"sh", "-c", `hostname "$0" && exec "$@"`, n.Name, name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	cmd.Env = append(append(os.Environ(), "DOCKER_HOST="+n.Host), env...)
	return cmd
}

// pickIndex takes the first free bed index: a lock file under /run/swarm-testbed/ held with
// flock for the bed's life. A crashed holder's lock goes away with its process.
func pickIndex() (int, *os.File, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return 0, nil, fmt.Errorf("test bed lock dir: %w", err)
	}
	for k := 1; k < maxBeds; k++ {
		f, err := lockIndex(k)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		return k, f, nil
	}
	return 0, nil, fmt.Errorf("test bed: all %d bed indexes under %s are in use", maxBeds-1, lockDir)
}

// lockIndex takes the lock of bed index k without waiting (EWOULDBLOCK when held).
func lockIndex(k int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(lockDir, strconv.Itoa(k)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("test bed lock %d: %w", k, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("test bed lock %d: %w", k, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

func (b *Bed) setupBridge(ctx context.Context) error {
	steps := [][]string{
		{"ip", "link", "add", b.Bridge, "type", "bridge"},
		{"ip", "addr", "add", b.BridgeIP + "/24", "dev", b.Bridge},
		{"ip", "link", "set", b.Bridge, "up"},
		// FORWARD's policy can be DROP once any dockerd ran; bridged traffic may pass it.
		{"iptables", "-w", "-I", "FORWARD", "-i", b.Bridge, "-o", b.Bridge, "-j", "ACCEPT"},
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return fmt.Errorf("test bed %d: bridge: %w", b.Index, err)
		}
	}
	return nil
}

// newNode creates node i's namespace, veth pair and directory; its engine is not started.
func (b *Bed) newNode(ctx context.Context, i int) (*Node, error) {
	if i < 1 || 10+i > 254 {
		return nil, fmt.Errorf("test bed %d: node %d: at most 244 nodes", b.Index, i)
	}
	n := &Node{
		Name:  fmt.Sprintf("node%d", i),
		IP:    fmt.Sprintf("10.99.%d.%d", b.Index, 10+i),
		Netns: fmt.Sprintf("swtb%dn%d", b.Index, i),
		Dir:   filepath.Join(b.Dir, fmt.Sprintf("n%d", i)),
		Index: i,
		veth:  fmt.Sprintf("swtb%dv%d", b.Index, i),
	}
	n.Host = "unix://" + n.Socket()
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	in := func(args ...string) []string { return append([]string{"ip", "-n", n.Netns}, args...) }
	steps := [][]string{
		{"ip", "netns", "add", n.Netns},
		{"ip", "link", "add", n.veth, "type", "veth", "peer", "name", "eth0", "netns", n.Netns},
		{"ip", "link", "set", n.veth, "master", b.Bridge},
		{"ip", "link", "set", n.veth, "up"},
		in("addr", "add", n.IP+"/24", "dev", "eth0"),
		in("link", "set", "eth0", "up"),
		in("link", "set", "lo", "up"),
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return nil, fmt.Errorf("node %s (%s): %w", n.Name, n.Netns, err)
		}
	}
	return n, nil
}

func (b *Bed) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(b.opts.Log, format+"\n", args...)
}

// run runs a command and returns its output in the error.
func run(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// tail returns the last lines of the file at path.
func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
