package consul

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"
)

// consulBinary is the real Consul agent that tools/consul/build.sh builds.
func consulBinary(t *testing.T) string {
	t.Helper()
	if os.Getenv("SWARM_AGENT_TEST_UNIT_ONLY") != "" {
		t.Skip("SWARM_AGENT_TEST_UNIT_ONLY is set (make test-unit): no Consul agent is started")
	}
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "..", "bin", "consul")
	if p := os.Getenv("SWARM_AGENT_TEST_CONSUL"); p != "" {
		bin = p
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no Consul agent at %s (run tools/consul/build.sh): %v", bin, err)
	}
	return bin
}

// testAgent is a real Consul agent in -dev mode on free loopback ports.
type testAgent struct {
	Addr       string // host:port of the HTTP API
	Management string // the initial management token, when ACLs are on
	Node       string // the agent's node name
}

// startConsul starts a dev agent whose configuration adds hcl (may be empty), waits until it has
// a leader and its own node is in the catalog (sessions need it: before that Consul answers
// "Missing node registration") and, with ACLs, until the management token works; it kills the
// agent at cleanup.
// management is the initial management token that hcl configures, or "".
func startConsul(t *testing.T, hcl, management string) testAgent {
	t.Helper()
	return startConsulOn(t, 0, hcl, management)
}

// startConsulOn is startConsul with the HTTP API on httpPort (0: a free one).
func startConsulOn(t *testing.T, httpPort int, hcl, management string) testAgent {
	t.Helper()
	bin := consulBinary(t)
	// The api client reads these when a Config leaves them empty: keep the host's out.
	for _, env := range []string{EnvHTTPToken, EnvTokenFile, EnvAddr, EnvCAFile, EnvCertFile, EnvKeyFile, EnvTLSServer} {
		t.Setenv(env, "")
	}
	dir := t.TempDir()
	ports := freePorts(t, 4)
	if httpPort != 0 {
		ports[0] = httpPort
	}
	node := "test-" + strconv.Itoa(ports[0])
	args := []string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-node", node,
		"-http-port", strconv.Itoa(ports[0]), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]),
		// Sessions as short as 1s, so that lock expiry tests take seconds; production keeps 10s.
		"-hcl", `session_ttl_min = "1s"`,
	}
	if hcl != "" {
		cfg := filepath.Join(dir, "extra.hcl")
		if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-config-file", cfg)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start consul: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("consul agent output:\n%s", out.tail(60))
		}
	})

	a := testAgent{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), Management: management, Node: node}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if a.ready() {
			return a
		}
		select {
		case <-exited:
			t.Fatalf("consul agent exited before it was ready:\n%s", out.tail(60))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("consul agent not ready after 60s:\n%s", out.tail(60))
		}
	}
}

func (a testAgent) ready() bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + a.Addr + "/v1/status/leader")
	if err != nil {
		return false
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || strings.Trim(strings.TrimSpace(b.String()), `"`) == "" {
		return false
	}
	if a.Management != "" {
		req, _ := http.NewRequest("GET", "http://"+a.Addr+"/v1/acl/token/self", nil)
		req.Header.Set("X-Consul-Token", a.Management)
		resp, err = c.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			return false
		}
	}
	req, _ := http.NewRequest("GET", "http://"+a.Addr+"/v1/catalog/node/"+a.Node, nil)
	if a.Management != "" {
		req.Header.Set("X-Consul-Token", a.Management)
	}
	resp, err = c.Do(req)
	if err != nil {
		return false
	}
	b.Reset()
	_, _ = b.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == 200 && strings.TrimSpace(b.String()) != "null"
}

// client is a raw api client for test set-up, with token (may be "").
func (a testAgent) client(t *testing.T, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: a.Addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// provider builds a Provider on the agent for cluster "prod" with lockTTL and token.
func (a testAgent) provider(t *testing.T, lockTTL time.Duration, token string) *Provider {
	t.Helper()
	p, err := New(Config{Service: DefaultService, Scheme: "http", Address: a.Addr, Token: Secret(token),
		LockTTL: lockTTL, Prefix: "swarm-agent/prod", Port: DefaultPort}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

// freePorts returns n distinct TCP ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// swarmPort is a TCP listener that stands in for a manager's swarm port. It accepts and closes
// connections until Close.
type swarmPort struct {
	l    net.Listener
	Port int
	done chan struct{}
}

func listenSwarmPort(t *testing.T) *swarmPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &swarmPort{l: l, Port: l.Addr().(*net.TCPAddr).Port, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

func (s *swarmPort) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Close stops listening and waits for the accept loop; it may be called twice.
func (s *swarmPort) Close() {
	_ = s.l.Close()
	<-s.done
}

// eventually polls cond every 250ms until it returns "" or timeout passes, then fails with
// cond's last complaint.
func eventually(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
