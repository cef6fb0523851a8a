package testbed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a helper that runs inside a node (through Bed.Command):
// TESTBED_HELPER=ping|serve|dial|startbed selects what it does.
func TestMain(m *testing.M) {
	if mode := os.Getenv("TESTBED_HELPER"); mode != "" {
		if err := helper(mode, os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(mode, arg string) error {
	host, _ := os.Hostname()
	switch mode {
	case "ping": // answer: hostname, engine's view of itself
		sock := strings.TrimPrefix(os.Getenv("DOCKER_HOST"), "unix://")
		resp, err := unixClient(sock).Get("http://docker/info")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var info struct{ Name string }
		if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
			return err
		}
		fmt.Printf("%s %s\n", host, info.Name)
	case "serve": // accept one connection on arg and write our hostname to it
		ln, err := net.Listen("tcp", arg)
		if err != nil {
			return err
		}
		fmt.Println("listening")
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintf(c, "%s %s\n", host, c.RemoteAddr().(*net.TCPAddr).IP)
	case "dial": // print what the server at arg says
		c, err := net.DialTimeout("tcp", arg, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		fmt.Print(line)
	case "startbed": // start a bed at index arg and exit without closing it, as a crash would
		k, _ := strconv.Atoi(arg)
		lock, err := lockIndex(k)
		if err != nil {
			return err
		}
		if _, err := startAt(context.Background(), Options{Nodes: 1, NoImage: true}, k, lock); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown helper %q", mode)
	}
	return nil
}

// onNode runs the test binary as helper mode inside n.
func onNode(ctx context.Context, b *Bed, n *Node, mode, arg string) *exec.Cmd {
	return b.Command(ctx, n, []string{"TESTBED_HELPER=" + mode}, os.Args[0], "-test.run=^$", arg)
}

func TestAvailableNames(t *testing.T) {
	err := Available()
	if os.Geteuid() != 0 {
		if err == nil || !strings.Contains(err.Error(), "root") {
			t.Fatalf("Available() as uid %d = %v, want an error naming root", os.Geteuid(), err)
		}
		return
	}
	for _, tool := range tools {
		if _, lerr := exec.LookPath(tool); lerr != nil && (err == nil || !strings.Contains(err.Error(), tool)) {
			t.Errorf("%s missing but Available() = %v", tool, err)
		}
	}
}

func TestIsIndexed(t *testing.T) {
	for _, c := range []struct {
		name, prefix string
		want         bool
	}{
		{"swtb1n2", "swtb1n", true},
		{"swtb12n2", "swtb1n", false},
		{"swtb1n", "swtb1n", false},
		{"swtb1n2x", "swtb1n", false},
		{"/swtb3n10", "/swtb3n", true},
	} {
		t.Run(c.name+"/"+c.prefix, func(t *testing.T) {
			if got := isIndexed(c.name, c.prefix); got != c.want {
				t.Errorf("isIndexed(%q, %q) = %v, want %v", c.name, c.prefix, got, c.want)
			}
		})
	}
}

func TestThreeNodes(t *testing.T) {
	b := StartT(t, 3)
	ctx := t.Context()
	t.Run("layout", func(t *testing.T) {
		for i, n := range b.Nodes {
			wantIP := fmt.Sprintf("10.99.%d.%d", b.Index, 11+i)
			if n.IP != wantIP || n.Netns != fmt.Sprintf("swtb%dn%d", b.Index, i+1) {
				t.Errorf("node %d: ip %s netns %s, want %s swtb%dn%d", i, n.IP, n.Netns, wantIP, b.Index, i+1)
			}
			if len(n.Socket()) >= 100 {
				t.Errorf("socket path %q is %d bytes, want < 100", n.Socket(), len(n.Socket()))
			}
		}
	})
	t.Run("each engine answers from inside its namespace", func(t *testing.T) {
		for _, n := range b.Nodes {
			out, err := onNode(ctx, b, n, "ping", "").CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v: %s", n.Name, err, out)
			}
			if got, want := strings.TrimSpace(string(out)), n.Name+" "+n.Name; got != want {
				t.Errorf("%s: helper hostname and engine name = %q, want %q", n.Name, got, want)
			}
		}
	})
	t.Run("nodes reach each other over tcp", func(t *testing.T) {
		for _, pair := range [][2]int{{0, 1}, {1, 2}, {2, 0}} {
			srv, cli := b.Nodes[pair[0]], b.Nodes[pair[1]]
			addr := net.JoinHostPort(srv.IP, "7777")
			s := onNode(ctx, b, srv, "serve", addr)
			stdout, err := s.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(stdout)
			if l, err := r.ReadString('\n'); err != nil || l != "listening\n" {
				t.Fatalf("server on %s: %q %v", srv.Name, l, err)
			}
			out, err := onNode(ctx, b, cli, "dial", addr).CombinedOutput()
			_ = s.Wait()
			if err != nil {
				t.Fatalf("%s dial %s: %v: %s", cli.Name, addr, err, out)
			}
			if got, want := strings.TrimSpace(string(out)), srv.Name+" "+cli.IP; got != want {
				t.Errorf("%s -> %s said %q, want %q", cli.Name, srv.Name, got, want)
			}
		}
	})
	t.Run("image loaded", func(t *testing.T) {
		for _, n := range b.Nodes {
			resp, err := unixClient(n.Socket()).Get("http://docker/images/" + Image + "/json")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: inspect %s: %s", n.Name, Image, resp.Status)
			}
		}
	})
	t.Run("kill and restart keeps data", func(t *testing.T) {
		n := b.Nodes[2]
		if err := b.KillEngine(n); err != nil {
			t.Fatal(err)
		}
		if err := ping(ctx, n.Socket()); err == nil {
			t.Fatal("engine answers after KillEngine")
		}
		if err := b.StartEngine(ctx, n); err != nil {
			t.Fatal(err)
		}
		resp, err := unixClient(n.Socket()).Get("http://docker/images/" + Image + "/json")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("image after restart: %s", resp.Status)
		}
	})
	t.Run("add node", func(t *testing.T) {
		n, err := b.AddNode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("10.99.%d.14", b.Index); n.IP != want || len(b.Nodes) != 4 {
			t.Fatalf("added node ip %s (want %s), %d nodes", n.IP, want, len(b.Nodes))
		}
		out, err := onNode(ctx, b, n, "ping", "").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "node4 node4" {
			t.Fatalf("node4: %v: %s", err, out)
		}
	})
}

// residue lists what of bed k still exists: processes mentioning its directory, namespaces,
// links, the directory itself.
func residue(t *testing.T, k int, pids []int) []string {
	t.Helper()
	var left []string
	for _, p := range pids {
		if alive(p) {
			left = append(left, fmt.Sprintf("pid %d", p))
		}
	}
	dir := fmt.Sprintf("/tmp/swtb%d/", k)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cl, []byte(dir)) {
			left = append(left, "process "+e.Name()+": "+string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))
		}
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(out)) {
		if isIndexed(f, fmt.Sprintf("swtb%dn", k)) {
			left = append(left, "netns "+f)
		}
	}
	links, err := linkNames(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l == fmt.Sprintf("swtb%d", k) || isIndexed(l, fmt.Sprintf("swtb%dv", k)) {
			left = append(left, "link "+l)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		left = append(left, "dir "+dir)
	}
	if out, _ := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); bytes.Contains(out, []byte(fmt.Sprintf("-i swtb%d -o swtb%d ", k, k))) {
		left = append(left, "iptables rule")
	}
	return left
}

func enginePids(t *testing.T, b *Bed) []int {
	t.Helper()
	var pids []int
	for _, n := range b.Nodes {
		for _, f := range []string{filepath.Join(n.Dir, "pid"), filepath.Join(n.Dir, "exec", "containerd", "containerd.pid")} {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatalf("%s: %v", n.Name, err)
			}
			p, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil || !alive(p) {
				t.Fatalf("%s: %s holds %q, not a live pid", n.Name, f, data)
			}
			pids = append(pids, p)
		}
	}
	return pids
}

func TestCloseLeavesNothing(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("real docker engines cannot start here: %v", err)
	}
	// Two beds at once: distinct indexes and subnets, both answer.
	b1, err := Start(t.Context(), Options{Nodes: 1, NoImage: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b1.Close() })
	b2, err := Start(t.Context(), Options{Nodes: 2, NoImage: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close() })
	if b1.Index == b2.Index || b1.BridgeIP == b2.BridgeIP {
		t.Fatalf("two beds share index %d / bridge %s", b1.Index, b1.BridgeIP)
	}
	for _, b := range []*Bed{b1, b2} {
		for _, n := range b.Nodes {
			if err := ping(t.Context(), n.Socket()); err != nil {
				t.Fatalf("bed %d %s: %v", b.Index, n.Name, err)
			}
		}
	}
	for _, b := range []*Bed{b1, b2} {
		pids := enginePids(t, b)
		if err := b.Close(); err != nil {
			t.Fatalf("close bed %d: %v", b.Index, err)
		}
		if left := residue(t, b.Index, pids); len(left) > 0 {
			t.Errorf("bed %d left after Close: %v", b.Index, left)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close of bed %d: %v", b.Index, err)
		}
	}
}

func TestStartClearsCrashedRun(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("real docker engines cannot start here: %v", err)
	}
	// Find a free index, give it up to a helper process that starts a bed there and exits
	// without closing it, then start our own bed at that index.
	k, lock, err := pickIndex()
	if err != nil {
		t.Fatal(err)
	}
	lock.Close()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$", strconv.Itoa(k))
	cmd.Env = append(os.Environ(), "TESTBED_HELPER=startbed")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper bed at %d: %v: %s", k, err, out)
	}
	pids := enginePids(t, &Bed{Nodes: []*Node{{Name: "node1", Dir: fmt.Sprintf("/tmp/swtb%d/n1", k)}}})
	lock, err = lockIndex(k)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		t.Skipf("bed index %d was taken by another process meanwhile", k)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := startAt(t.Context(), Options{Nodes: 1, NoImage: true}, k, lock)
	if err != nil {
		t.Fatalf("start over a crashed bed: %v", err)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("pid %d of the crashed bed still runs", p)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if left := residue(t, k, nil); len(left) > 0 {
		t.Errorf("left after Close: %v", left)
	}
}
