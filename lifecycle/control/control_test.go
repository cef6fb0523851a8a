package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// syncBuffer is a log sink the tests read while servers write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger logs to the test and to buf.
func testLogger(t *testing.T, buf io.Writer) zerolog.Logger {
	w := io.Writer(zerolog.NewTestWriter(t))
	if buf != nil {
		w = io.MultiWriter(w, buf)
	}
	return zerolog.New(w).With().Timestamp().Logger()
}

// startServer serves the control API with the manager certificates in dir in front of sw on
// a local port, and stops it when the test ends, checking that Serve returned nil.
func startServer(t *testing.T, dir string, sw lifecycle.Swarm, logs io.Writer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := &Server{Swarm: sw, Certs: &Certs{Dir: dir}, Log: testLogger(t, logs)}
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// serveRaw serves h over TLS with the certificates in dir (whatever their role), as a
// server posing as a manager would.
func serveRaw(t *testing.T, dir string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: nil}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tls.NewListener(ln, (&Certs{Dir: dir}).serverConfig())) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

func newTestClient(t *testing.T, dir string, addrs ...string) *Client {
	t.Helper()
	c, err := NewClient(&Certs{Dir: dir}, func(context.Context) ([]string, error) { return addrs, nil }, testLogger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 5 * time.Second
	t.Cleanup(c.Close)
	return c
}

// testSwarm is one swarm of the tests: its CA, a manager serving the control API over a fake
// engine with two managers and two workers, and the workers' certificate directories.
type testSwarm struct {
	ca       *testCA
	engine   *fakeSwarm
	addr     string
	mgrDir   string
	w1, w2   string // certificate directories of worker1 and worker2
	logs     *syncBuffer
	original string // the engine's snapshot at the start
}

func newTestSwarm(t *testing.T) *testSwarm {
	t.Helper()
	s := &testSwarm{ca: newTestCA(t), logs: &syncBuffer{}}
	s.engine = newFakeSwarm(node(manager1, "manager"), node(manager2, "manager"), node(worker1, "worker"), node(worker2, "worker"))
	s.engine.tasks = []swarm.Task{
		{ID: "t1", ServiceID: "svc1", NodeID: worker1, Slot: 1, DesiredState: "running", State: "running"},
		{ID: "t2", ServiceID: "svc1", NodeID: worker2, Slot: 2, DesiredState: "running", State: "running"},
		{ID: "t3", ServiceID: "svc2", NodeID: worker1, Slot: 1, DesiredState: "running", State: "running"},
	}
	s.mgrDir = s.ca.writeNode(t, manager1, OUManager, clusterA)
	s.w1 = s.ca.writeNode(t, worker1, OUWorker, clusterA)
	s.w2 = s.ca.writeNode(t, worker2, OUWorker, clusterA)
	s.addr = startServer(t, s.mgrDir, s.engine, s.logs)
	s.original = s.engine.snapshot()
	return s
}

// rawClient is an HTTP client with the given TLS settings, for what Client would not send.
func rawClient(cfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 5 * time.Second}
}

// tlsAs is a correct client configuration for the node whose certificates are in dir.
func tlsAs(t *testing.T, dir string) *tls.Config {
	t.Helper()
	m, err := (&Certs{Dir: dir}).load()
	if err != nil {
		t.Fatal(err)
	}
	return clientConfig(m)
}

func TestRefusesOutsiders(t *testing.T) {
	s := newTestSwarm(t)
	other := newTestCA(t) // another swarm's CA
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.pem)
	withCert := func(dir string) *tls.Config {
		m, err := (&Certs{Dir: dir}).read()
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: pool, ServerName: OUManager, Certificates: []tls.Certificate{m.pair}}
	}
	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no client certificate", &tls.Config{RootCAs: pool, ServerName: OUManager}},
		{"certificate of another swarm's CA", withCert(other.writeNode(t, worker1, OUWorker, clusterA))},
		{"manager certificate of another swarm's CA", withCert(other.writeNode(t, manager1, OUManager, clusterA))},
		{"same CA, another cluster", withCert(s.ca.writeNode(t, worker1, OUWorker, clusterB))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The handshake must fail: with the bare TLS client (no HTTP) the error surfaces at
			// the latest on the first read, as TLS 1.3 checks the client's certificate after the
			// client's side of the handshake is done.
			conn, err := tls.Dial("tcp", s.addr, tt.cfg)
			if err == nil {
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = conn.Write([]byte("GET /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n"))
				if err == nil {
					_, err = conn.Read(make([]byte, 1))
				}
				conn.Close()
			}
			if err == nil {
				t.Fatal("the server answered")
			}
			if !strings.Contains(err.Error(), "tls") {
				t.Errorf("error %v, want a TLS refusal", err)
			}
			// Through HTTP, every kind of request fails the same way, and nothing changes.
			for _, req := range []struct{ method, path, body string }{
				{"GET", "/v1/nodes", ""},
				{"POST", "/v1/nodes/" + worker1 + "/availability", `{"availability":"drain"}`},
				{"DELETE", "/v1/nodes/" + worker1, ""},
				{"DELETE", "/v1/nodes/" + worker1 + "?force=true", ""},
			} {
				r, _ := http.NewRequest(req.method, "https://"+s.addr+req.path, strings.NewReader(req.body))
				resp, err := rawClient(tt.cfg).Do(r)
				if err == nil {
					resp.Body.Close()
					t.Fatalf("%s %s answered %s", req.method, req.path, resp.Status)
				}
			}
			if got := s.engine.snapshot(); got != s.original {
				t.Errorf("engine changed:\n%s\nwas\n%s", got, s.original)
			}
		})
	}
	if !strings.Contains(s.logs.String(), "TLS handshake error") {
		t.Error("the refused handshakes were not logged")
	}
}

func TestNodeChangesOnlyItself(t *testing.T) {
	s := newTestSwarm(t)
	s.engine.setState(worker2, "down") // removable, were it allowed
	s.original = s.engine.snapshot()
	c := newTestClient(t, s.w1, s.addr)
	ctx := t.Context()
	tests := []struct {
		name string
		do   func() error
	}{
		{"drain another worker", func() error { return c.SetAvailability(ctx, worker2, "drain") }},
		{"drain a manager", func() error { return c.SetAvailability(ctx, manager1, "drain") }},
		{"activate another node", func() error { return c.SetAvailability(ctx, worker2, "active") }},
		{"label another node", func() error {
			return c.SetNodeLabels(ctx, worker2, map[string]string{swarm.LabelLeaving: "2026-01-01T00:00:00Z"})
		}},
		{"remove another node", func() error { return c.RemoveNode(ctx, worker2, false) }},
		{"remove a node that does not exist", func() error { return c.RemoveNode(ctx, "nosuchnode", false) }},
		{"remove itself by force", func() error { return c.RemoveNode(ctx, worker1, true) }},
		{"promote itself", func() error { return c.SetRole(ctx, worker1, "manager") }},
		{"label itself outside the agent's labels", func() error {
			return c.SetNodeLabels(ctx, worker1, map[string]string{"node.labels.secure": "true"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if !errors.Is(err, lifecycle.ErrNotAllowed) {
				t.Fatalf("error %v, want lifecycle.ErrNotAllowed", err)
			}
			if errors.Is(err, lifecycle.ErrNoSuchNode) {
				t.Errorf("error %v also matches ErrNoSuchNode", err)
			}
			if got := s.engine.snapshot(); got != s.original {
				t.Errorf("engine changed:\n%s\nwas\n%s", got, s.original)
			}
		})
	}
	if ch := s.engine.changes(); len(ch) > 0 {
		t.Errorf("engine calls %v, want none", ch)
	}

	// The answer itself: 403 with a JSON error naming both nodes.
	resp, body := rawDo(t, tlsAs(t, s.w1), "POST", s.addr, "/v1/nodes/"+worker2+"/availability", `{"availability":"drain"}`)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("answer %s %s, want 403 application/json", resp.Status, resp.Header.Get("Content-Type"))
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Code != codeNotAllowed || !strings.Contains(eb.Error, worker1) || !strings.Contains(eb.Error, worker2) {
		t.Errorf("error body %s (%v), want code %s naming %s and %s", body, err, codeNotAllowed, worker1, worker2)
	}
}

func rawDo(t *testing.T, cfg *tls.Config, method, addr, path, body string) (*http.Response, []byte) {
	t.Helper()
	r, err := http.NewRequest(method, "https://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rawClient(cfg).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// TestWorkerDrainsItself is a worker's whole way out through the control API: read, label,
// drain, wait for its tasks, leave (its certificate files go), have its node removed.
func TestWorkerDrainsItself(t *testing.T) {
	s := newTestSwarm(t)
	c := newTestClient(t, s.w1, s.addr)
	ctx := t.Context()

	n, err := c.Node(ctx, worker1)
	if err != nil {
		t.Fatal(err)
	}
	if n.ID != worker1 || n.Role != "worker" || n.Availability != "active" || n.Hostname != "host-w1" {
		t.Errorf("Node(self) = %+v", n)
	}
	if n, err := c.Node(ctx, manager2); err != nil || n.Role != "manager" {
		t.Errorf("Node(%s) = %+v, %v: any member may read any node", manager2, n, err)
	}
	if _, err := c.Node(ctx, "nosuchnode"); !errors.Is(err, lifecycle.ErrNoSuchNode) {
		t.Errorf("Node(unknown) error %v, want ErrNoSuchNode", err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 4 {
		t.Fatalf("Nodes() = %d nodes, %v; want 4", len(nodes), err)
	}
	tasks, err := c.Tasks(ctx, worker1, "")
	if err != nil || len(tasks) != 2 {
		t.Fatalf("Tasks(self) = %+v, %v; want 2", tasks, err)
	}
	if tasks[0] != s.engine.tasks[0] {
		t.Errorf("task %+v, want %+v", tasks[0], s.engine.tasks[0])
	}
	if tasks, err := c.Tasks(ctx, "", "svc1"); err != nil || len(tasks) != 2 {
		t.Errorf("Tasks(svc1) = %+v, %v; want 2", tasks, err)
	}
	if tasks, err := c.Tasks(ctx, worker2, "svc2"); err != nil || len(tasks) != 0 {
		t.Errorf("Tasks(worker2, svc2) = %+v, %v; want none", tasks, err)
	}

	since := "2026-03-01T10:00:00Z"
	if err := c.SetNodeLabels(ctx, worker1, map[string]string{swarm.LabelLeaving: since}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetAvailability(ctx, worker1, "drain"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetAvailability(ctx, worker1, "drained"); err == nil || errors.Is(err, lifecycle.ErrNotAllowed) {
		t.Errorf("SetAvailability(drained) error %v, want a bad request", err)
	}
	n, err = c.Node(ctx, worker1)
	if err != nil {
		t.Fatal(err)
	}
	if n.Availability != "drain" || n.Labels[swarm.LabelLeaving] != since {
		t.Errorf("after drain: %+v", n)
	}

	// Removal while the node is still up is refused, and says why.
	err = c.RemoveNode(ctx, worker1, false)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusConflict || se.Code != codeNotDown || !strings.Contains(err.Error(), "not down") {
		t.Fatalf("RemoveNode(self, up) error %v, want 409 %s", err, codeNotDown)
	}
	if errors.Is(err, lifecycle.ErrNotAllowed) || errors.Is(err, lifecycle.ErrNoSuchNode) {
		t.Errorf("RemoveNode(self, up) error %v matches a sentinel the drain would not retry", err)
	}
	if _, err := s.engine.Node(ctx, worker1); err != nil {
		t.Fatalf("the node went: %v", err)
	}

	// It leaves: the engine deletes its certificates, the managers see it down.
	if err := os.RemoveAll(s.w1); err != nil {
		t.Fatal(err)
	}
	s.engine.setState(worker1, "down")
	c.Close() // no connection left from before
	if err := c.RemoveNode(ctx, worker1, false); err != nil {
		t.Fatalf("RemoveNode(self, down) after leaving: %v", err)
	}
	if _, err := c.Node(ctx, worker1); !errors.Is(err, lifecycle.ErrNoSuchNode) {
		t.Errorf("Node(self) after removal: %v, want ErrNoSuchNode", err)
	}
	if err := c.RemoveNode(ctx, worker1, false); !errors.Is(err, lifecycle.ErrNoSuchNode) {
		t.Errorf("RemoveNode(self) again: %v, want ErrNoSuchNode", err)
	}

	want := []string{
		"labels " + worker1 + " map[" + swarm.LabelLeaving + ":" + since + "]",
		"availability " + worker1 + " drain",
		"remove " + worker1 + " force=false",
	}
	if got := s.engine.changes(); !slices.Equal(got, want) {
		t.Errorf("engine calls\n got %q\nwant %q", got, want)
	}
	// The server logged who asked, by the certificate's CN.
	if logs := s.logs.String(); !strings.Contains(logs, `"node_id":"`+worker1+`","action":"remove-node"`) {
		t.Errorf("server log lacks the removal by %s:\n%s", worker1, logs)
	}
}

func TestClientRefusesFalseManagers(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	workerDir := ca.writeNode(t, worker1, OUWorker, clusterA)
	var hits atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		writeJSON(w, http.StatusOK, node(worker1, "worker"))
	})
	tests := []struct {
		name string
		dir  string // the server's certificates
		want string
	}{
		{"a worker posing as a manager", ca.writeNode(t, worker2, OUWorker, clusterA), "not swarm-manager"},
		{"a worker whose certificate names swarm-manager", forged(t, ca), "is a swarm-worker, not a swarm-manager"},
		{"a manager of another cluster", ca.writeNode(t, manager1, OUManager, clusterB), "cluster " + clusterB},
		{"a manager of another swarm's CA", other.writeNode(t, manager1, OUManager, clusterA), "unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serveRaw(t, tt.dir, h)
			c := newTestClient(t, workerDir, addr)
			_, err := c.Node(t.Context(), worker1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Node() error %v, want a refusal naming %q", err, tt.want)

			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("a false manager got %d requests", n)
	}
	// The same handler behind a real manager's certificate is accepted.
	c := newTestClient(t, workerDir, serveRaw(t, ca.writeNode(t, manager1, OUManager, clusterA), h))
	if _, err := c.Node(t.Context(), worker1); err != nil {
		t.Fatalf("Node() from a true manager: %v", err)
	}
}

// forged writes a worker certificate that, unlike swarm's, carries the DNS name
// swarm-manager: the client must still refuse it for its OU.
func forged(t *testing.T, ca *testCA) string {
	dir := t.TempDir()
	certPEM, keyPEM := ca.issueHosts(t, worker2, OUWorker, clusterA, []string{OUManager, OUWorker, worker2})
	writeAtomic(t, filepath.Join(dir, RootCAFile), ca.pem)
	writeAtomic(t, filepath.Join(dir, NodeKeyFile), keyPEM)
	writeAtomic(t, filepath.Join(dir, NodeCertFile), certPEM)
	return dir
}

// TestRotation rewrites the manager's and the worker's files with new key pairs: new
// connections use them, without a restart.
func TestRotation(t *testing.T) {
	s := newTestSwarm(t)
	c := newTestClient(t, s.w1, s.addr)
	leafOf := func(dir string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, NodeCertFile))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		return b.Bytes
	}
	served := func() []byte {
		conn, err := tls.Dial("tcp", s.addr, tlsAs(t, s.w1))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	before := served()
	if !bytes.Equal(before, leafOf(s.mgrDir)) {
		t.Fatal("the server does not serve its file's certificate")
	}
	if _, err := c.Nodes(t.Context()); err != nil {
		t.Fatal(err)
	}

	s.ca.rewrite(t, s.mgrDir, manager1, OUManager, clusterA)
	s.ca.rewrite(t, s.w1, worker1, OUWorker, clusterA)
	after := served()
	if bytes.Equal(after, before) || !bytes.Equal(after, leafOf(s.mgrDir)) {
		t.Fatal("the server did not pick up its rotated certificate")
	}
	c.Close()
	if err := c.SetAvailability(t.Context(), worker1, "drain"); err != nil {
		t.Fatalf("drain with rotated certificates on both sides: %v", err)
	}
	if n, err := s.engine.Node(t.Context(), worker1); err != nil || n.Availability != "drain" {
		t.Errorf("node after drain: %+v, %v", n, err)
	}
}

func TestManagersInTurn(t *testing.T) {
	s := newTestSwarm(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	c := newTestClient(t, s.w1, deadAddr, s.addr)
	if _, err := c.Node(t.Context(), worker1); err != nil {
		t.Fatalf("with the first manager down: %v", err)
	}

	// A 5xx moves on; a refusal does not.
	var second atomic.Int32
	failing := serveRaw(t, s.mgrDir, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusBadGateway, code: codeSwarm, msg: "This node is not a swarm manager."})
	}))
	refusing := serveRaw(t, s.mgrDir, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notAllowed("no"))
	}))
	counting := serveRaw(t, s.mgrDir, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		second.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	c = newTestClient(t, s.w1, failing, counting)
	if err := c.SetAvailability(t.Context(), worker1, "drain"); err != nil || second.Load() != 1 {
		t.Errorf("after a 502: %v, second manager asked %d times; want it asked once", err, second.Load())
	}
	c = newTestClient(t, s.w1, refusing, counting)
	if err := c.SetAvailability(t.Context(), worker1, "drain"); !errors.Is(err, lifecycle.ErrNotAllowed) || second.Load() != 1 {
		t.Errorf("after a 403: %v, second manager asked %d times; want ErrNotAllowed and no second try", err, second.Load())
	}

	// Nobody answers: the error names what was tried.
	c = newTestClient(t, s.w1, deadAddr, failing)
	err = c.SetAvailability(t.Context(), worker1, "drain")
	if err == nil || !strings.Contains(err.Error(), deadAddr) || !strings.Contains(err.Error(), failing) || !strings.Contains(err.Error(), "not a swarm manager") {
		t.Errorf("error %v, want it to name %s and %s and the last answer", err, deadAddr, failing)
	}
	if errors.Is(err, lifecycle.ErrNotAllowed) || errors.Is(err, lifecycle.ErrNoSuchNode) {
		t.Errorf("error %v matches a sentinel", err)
	}

	// No managers, or no way to find them.
	none, err := NewClient(&Certs{Dir: s.w1}, func(context.Context) ([]string, error) { return nil, nil }, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.Nodes(t.Context()); err == nil || !strings.Contains(err.Error(), "no manager address") {
		t.Errorf("without managers: %v", err)
	}
	broken, err := NewClient(&Certs{Dir: s.w1}, func(context.Context) ([]string, error) { return nil, errors.New("lookup failed") }, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broken.Nodes(t.Context()); err == nil || !strings.Contains(err.Error(), "lookup failed") {
		t.Errorf("with a failing lookup: %v", err)
	}
	if _, err := NewClient(&Certs{Dir: t.TempDir()}, func(context.Context) ([]string, error) { return nil, nil }, zerolog.Nop()); err == nil {
		t.Error("NewClient without certificates succeeded")
	}
}

func TestServerAnswers(t *testing.T) {
	s := newTestSwarm(t)
	cfg := tlsAs(t, s.w1)
	tests := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/v1/nodes", "", 200, ""},
		{"GET", "/v1/nodes/" + worker2, "", 200, ""},
		{"GET", "/v1/nodes/nosuchnode", "", 404, codeNoSuchNode},
		{"GET", "/v1/tasks?node=" + worker1, "", 200, ""},
		{"GET", "/v1/services", "", 404, codeNotFound},
		{"GET", "/", "", 404, codeNotFound},
		{"PUT", "/v1/nodes/" + worker1, "", 405, codeMethod},
		{"POST", "/v1/nodes/" + worker1 + "/role", `{"role":"manager"}`, 403, codeNotAllowed},
		{"POST", "/v1/nodes/" + worker1 + "/availability", `{"availability":"drain","force":true}`, 400, codeBadRequest},
		{"POST", "/v1/nodes/" + worker1 + "/labels", `{"labels":{"swarm-agent.x":"` + strings.Repeat("a", maxBody) + `"}}`, 413, codeTooLarge},
		{"DELETE", "/v1/nodes/" + worker1 + "?force=true", "", 403, codeNotAllowed},
		{"DELETE", "/v1/nodes/" + worker1 + "?force=yes", "", 400, codeBadRequest},
		{"DELETE", "/v1/nodes/" + worker1, "", 409, codeNotDown},
		{"DELETE", "/v1/nodes/" + worker1 + "%2F..%2F" + worker2, "", 400, codeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path[:min(len(tt.path), 40)], func(t *testing.T) {
			resp, body := rawDo(t, cfg, tt.method, s.addr, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %s (%s), want %d", resp.Status, body, tt.status)
			}
			if tt.code == "" {
				if !json.Valid(body) {
					t.Errorf("answer %q is not JSON", body)
				}
				return
			}
			var eb errorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Code != tt.code || eb.Error == "" {
				t.Errorf("error body %s (%v), want code %s and a message", body, err, tt.code)
			}
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	if got := s.engine.snapshot(); got != s.original {
		t.Errorf("engine changed:\n%s\nwas\n%s", got, s.original)
	}
}

// blockingSwarm holds Nodes calls until released.
type blockingSwarm struct {
	*fakeSwarm
	entered chan struct{}
	release chan struct{}
}

func (b *blockingSwarm) Nodes(ctx context.Context) ([]swarm.Node, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return b.fakeSwarm.Nodes(ctx)
}

func TestServeStops(t *testing.T) {
	ca := newTestCA(t)
	mgr := ca.writeNode(t, manager1, OUManager, clusterA)
	wrk := ca.writeNode(t, worker1, OUWorker, clusterA)

	t.Run("fails at once without certificates, closing the listener", func(t *testing.T) {
		for _, dir := range []string{t.TempDir(), wrk} {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			err = (&Server{Swarm: newFakeSwarm(), Certs: &Certs{Dir: dir}, Log: zerolog.Nop()}).Serve(t.Context(), ln)
			if err == nil {
				t.Fatal("Serve succeeded")
			}
			if dir == wrk && !strings.Contains(err.Error(), "only managers") {
				t.Errorf("Serve with a worker certificate: %v", err)
			}
			if _, aerr := ln.Accept(); aerr == nil {
				t.Error("listener still open")
			}
		}
	})

	t.Run("lets a request in flight finish", func(t *testing.T) {
		sw := &blockingSwarm{fakeSwarm: newFakeSwarm(node(worker1, "worker")), entered: make(chan struct{}), release: make(chan struct{})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		served := make(chan error, 1)
		go func() {
			served <- (&Server{Swarm: sw, Certs: &Certs{Dir: mgr}, Log: testLogger(t, nil)}).Serve(ctx, ln)
		}()
		c := newTestClient(t, wrk, ln.Addr().String())
		answered := make(chan error, 1)
		go func() {
			_, err := c.Nodes(context.Background())
			answered <- err
		}()
		<-sw.entered
		cancel()
		select {
		case err := <-served:
			t.Fatalf("Serve returned with a request in flight: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		close(sw.release)
		if err := <-answered; err != nil {
			t.Errorf("request in flight: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			t.Error("still listening after Serve returned")
		}
	})
}

// TestMaintenanceSelf: a worker drains itself ahead of a reboot event under its own mark and
// makes itself active again after it; it may neither mark a drain someone else made nor make
// itself active without its mark, nor set the leader's impaired mark.
func TestMaintenanceSelf(t *testing.T) {
	s := newTestSwarm(t)
	c := newTestClient(t, s.w1, s.addr)
	c2 := newTestClient(t, s.w2, s.addr)
	ctx := t.Context()
	mark := map[string]string{swarm.LabelMaintenance: "instance-event-0d59937288b749b32"}

	if err := c.SetAvailability(ctx, worker1, "active"); !errors.Is(err, lifecycle.ErrNotAllowed) {
		t.Fatalf("active without a mark: %v, want ErrNotAllowed", err)
	}
	if err := c.SetNodeLabels(ctx, worker1, mark); err != nil {
		t.Fatalf("mark while active: %v", err)
	}
	if err := c.SetAvailability(ctx, worker1, "drain"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetNodeLabels(ctx, worker1, mark); err != nil {
		t.Fatalf("mark again while drained under the mark: %v", err)
	}
	if err := c.SetAvailability(ctx, worker1, "active"); err != nil {
		t.Fatalf("active again under its own mark: %v", err)
	}
	if err := c.SetNodeLabels(ctx, worker1, map[string]string{swarm.LabelMaintenance: ""}); err != nil {
		t.Fatalf("take the mark away: %v", err)
	}
	if err := c.SetNodeLabels(ctx, worker1, map[string]string{swarm.LabelImpaired: "2027-01-01T00:00:00Z"}); !errors.Is(err, lifecycle.ErrNotAllowed) {
		t.Fatalf("the leader's impaired mark: %v, want ErrNotAllowed", err)
	}
	if err := c.SetAvailability(ctx, worker1, "pause"); !errors.Is(err, lifecycle.ErrNotAllowed) {
		t.Fatalf("pause: %v, want ErrNotAllowed", err)
	}

	// An operator drains worker2: it may not put a mark on that drain, nor undo it.
	s.engine.update(worker2, func(n *swarm.Node) { n.Availability = "drain" })
	if err := c2.SetNodeLabels(ctx, worker2, mark); !errors.Is(err, lifecycle.ErrNotAllowed) {
		t.Fatalf("mark on an operator's drain: %v, want ErrNotAllowed", err)
	}
	if err := c2.SetAvailability(ctx, worker2, "active"); !errors.Is(err, lifecycle.ErrNotAllowed) {
		t.Fatalf("undo an operator's drain: %v, want ErrNotAllowed", err)
	}
	// Nor may worker1 make worker2 active.
	if err := c.SetAvailability(ctx, worker2, "active"); !errors.Is(err, lifecycle.ErrNotAllowed) {
		t.Fatalf("another node: %v, want ErrNotAllowed", err)
	}
	want := []string{
		"labels " + worker1 + " map[" + swarm.LabelMaintenance + ":instance-event-0d59937288b749b32]",
		"availability " + worker1 + " drain",
		"labels " + worker1 + " map[" + swarm.LabelMaintenance + ":instance-event-0d59937288b749b32]",
		"availability " + worker1 + " active",
		"labels " + worker1 + " map[" + swarm.LabelMaintenance + ":]",
	}
	if got := s.engine.changes(); !slices.Equal(got, want) {
		t.Errorf("engine calls\n got %q\nwant %q", got, want)
	}
}
