package agent

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

// barrier lets each of a set of parties wait until all of them have arrived, failing after a
// deadline: parties that are served one after the other never all arrive.
type barrier struct {
	mu      sync.Mutex
	arrived map[string]bool
	want    int
	all     chan struct{}
}

func newBarrier(parties ...string) *barrier {
	return &barrier{arrived: map[string]bool{}, want: len(parties), all: make(chan struct{})}
}

// arrive marks party as arrived and reports whether all arrived within the deadline.
func (b *barrier) arrive(party string) bool {
	b.mu.Lock()
	if !b.arrived[party] {
		b.arrived[party] = true
		if len(b.arrived) == b.want {
			close(b.all)
		}
	}
	b.mu.Unlock()
	select {
	case <-b.all:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// TestWireReadsAtOnce: the engine check (/version), the node's swarm state (/info) and the
// identity read from instance metadata are made at once: each of them is held until the other
// two have been asked, and fails when they do not come (reads made one after the other).
func TestWireReadsAtOnce(t *testing.T) {
	b := newBarrier("version", "info", "imds")
	sock := filepath.Join(t.TempDir(), "docker.sock")
	held := func(what string) func() string {
		return func() string {
			if !b.arrive(what) {
				return "the " + what + " read came alone"
			}
			return ""
		}
	}
	serveHeldDocker(t, sock, "20.10.24", map[string]func() string{"version": held("version"), "info": held("info")})

	md := imdsfake.New()
	md.Put(imdsfake.Instance{ID: "i-0123456789abcdef0", PrivateIP: "127.0.0.1", AZ: "us-east-1a", Region: "us-east-1", InstanceType: "t3.medium"})
	imdsSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/instance-id") && !b.arrive("imds") {
			http.Error(w, "the identity read came alone", http.StatusInternalServerError)
			return
		}
		md.ServeHTTP(w, r)
	}))
	t.Cleanup(imdsSrv.Close)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imdsSrv.URL)

	spec, err := discovery.Parse("provider=static managers=10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Role: "worker", Region: "us-east-1", TokenStore: "ssm", Cluster: "prod", DockerHost: "unix://" + sock, Spec: spec}
	w, err := wire(t.Context(), cfg, zerolog.Nop(), nil, nil)
	if err != nil {
		t.Fatalf("wire: %v", err)
	}
	defer w.close()
	if w.identity.InstanceID != "i-0123456789abcdef0" {
		t.Fatalf("identity %+v", w.identity)
	}
	if pre, err := w.first.Local(t.Context()); err != nil || pre.State != "inactive" {
		t.Fatalf("first swarm state %+v, %v", pre, err)
	}
}

// TestWireSetsUpDiscoveryDuringTheEngineCheck: the discovery's set-up (here: the AWS
// configuration, whose shared config file it reads) runs while the engine is checked. The
// config file is a named pipe, and the engine answers its version only once the set-up is
// reading it: set up after the check, the check times out.
func TestWireSetsUpDiscoveryDuringTheEngineCheck(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "aws-config")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	sock := filepath.Join(dir, "docker.sock")
	serveHeldDocker(t, sock, "20.10.24", map[string]func() string{"version": func() string {
		// A writer can open the pipe only while a reader has it open.
		deadline := time.Now().Add(5 * time.Second)
		for {
			f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err == nil {
				_, _ = f.WriteString("[default]\n")
				_ = f.Close()
				return ""
			}
			if time.Now().After(deadline) {
				return "nothing read the AWS configuration during the engine check"
			}
			time.Sleep(5 * time.Millisecond)
		}
	}})
	t.Setenv("AWS_CONFIG_FILE", fifo)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")

	spec, err := discovery.Parse("provider=static managers=10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Role: "worker", Identity: "static", InstanceID: "i-1", PrivateIP: "10.0.0.2", Region: "us-east-1",
		TokenStore: "ssm", Cluster: "prod", DockerHost: "unix://" + sock, Spec: spec}
	w, err := wire(t.Context(), cfg, zerolog.Nop(), nil, nil)
	if err != nil {
		t.Fatalf("wire: %v", err)
	}
	defer w.close()
	if w.deps.Tokens == nil || w.aws == nil {
		t.Fatalf("no token store or AWS configuration set up")
	}
}

// serveHeldDocker serves a fake engine (version, API 1.41, an inactive node) on the unix
// socket sock until the test ends; hold["version"] and hold["info"], when set, run before
// those answers, and a message they return is answered as the engine's error instead.
func serveHeldDocker(t *testing.T, sock, version string, hold map[string]func() string) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		answer := func(what, body string) {
			if h := hold[what]; h != nil {
				if msg := h(); msg != "" {
					http.Error(w, `{"message":"`+msg+`"}`, http.StatusInternalServerError)
					return
				}
			}
			_, _ = w.Write([]byte(body))
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			_, _ = w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/version"):
			answer("version", `{"Version":"`+version+`","ApiVersion":"1.41","Os":"linux","Arch":"amd64"}`)
		case strings.HasSuffix(r.URL.Path, "/info"):
			answer("info", `{"Swarm":{"LocalNodeState":"inactive"}}`)
		default:
			http.NotFound(w, r)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}
