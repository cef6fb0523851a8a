package agent

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

// fakeDockerSocket serves just enough of the Engine API on a unix socket for the agent's
// Docker check to pass (ping and version), so that what comes after it can be tested
// without an engine.
func fakeDockerSocket(t *testing.T, version string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	serveFakeDocker(t, sock, version)
	return "unix://" + sock
}

// serveFakeDocker serves the fake engine on the unix socket sock until the test ends.
func serveFakeDocker(t *testing.T, sock, version string) {
	t.Helper()
	serveHeldDocker(t, sock, version, nil)
}

func TestRunBadInputAfterDocker(t *testing.T) {
	dir := t.TempDir()
	// A port nothing listens on: instance metadata is absent.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadIMDS := "http://" + ln.Addr().String()
	_ = ln.Close()
	base := []string{"--config-file=", "--status-file=" + filepath.Join(dir, "st.json"), "--persist=false", "--wait=5s"}
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		wantMsg  string
	}{
		{"imds absent", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1",
			"--docker-host=" + fakeDockerSocket(t, "20.10.24")},
			[]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + deadIMDS}, ExitIMDS, "instance metadata"},
		{"docker too old", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1",
			"--docker-host=" + fakeDockerSocket(t, "19.03.1"), "--identity=static", "--instance-id=i-1", "--private-ip=10.0.0.2"},
			nil, ExitDocker, "older than the required"},
		{"bad config file line", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1"},
			[]string{"SWARM_AGENT_ROLLE=worker"}, ExitUsage, "SWARM_AGENT_ROLLE: unknown setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append(append([]string{}, tt.args...), base...)
			code := run(context.Background(), env{stdout: &out, stderr: &errb, environ: tt.env, readFile: os.ReadFile}, args)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errb.String())
			}
			last := lastLine(errb.String())
			if !strings.HasPrefix(last, "swarm-agent: ") || !strings.Contains(last, tt.wantMsg) {
				t.Errorf("last stderr line %q, want \"swarm-agent: ...%s...\"", last, tt.wantMsg)
			}
		})
	}
}

// TestRunIMDSInvalid: instance metadata whose identity is not of AWS's shapes (an AZ with
// shell syntax, a zone of another region, a 10 KB instance type) stops boot with exit code 4
// and one bounded line naming the metadata path, before anything reaches labels or daemon.json.
func TestRunIMDSInvalid(t *testing.T) {
	good := imdsfake.Instance{ID: "i-0123456789abcdef0", PrivateIP: "127.0.0.1", AZ: "us-east-1a", Region: "us-east-1", InstanceType: "t3.medium"}
	tests := []struct {
		name    string
		set     func(*imdsfake.Instance)
		wantMsg string
	}{
		{"zone with shell syntax", func(in *imdsfake.Instance) { in.AZ = "us-east-1a$(reboot)" }, "imds placement/availability-zone: answered"},
		{"zone of another region", func(in *imdsfake.Instance) { in.Region = "eu-west-1" }, "want a zone of eu-west-1"},
		{"region with a newline", func(in *imdsfake.Instance) { in.Region = "us-east-1\nx" }, "imds placement/region: answered"},
		{"10 KB instance type", func(in *imdsfake.Instance) { in.InstanceType = strings.Repeat("m", 10000) }, "imds instance-type: answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := good
			tt.set(&in)
			s := imdsfake.New()
			s.Put(in)
			srv := httptest.NewServer(s)
			defer srv.Close()
			t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
			dir := t.TempDir()
			var out, errb bytes.Buffer
			args := []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--docker-host=" + fakeDockerSocket(t, "20.10.24"),
				"--config-file=", "--status-file=" + filepath.Join(dir, "st.json"), "--persist=false", "--wait=5s", "--daemon-config=" + filepath.Join(dir, "daemon.json")}
			code := run(t.Context(), env{stdout: &out, stderr: &errb, readFile: os.ReadFile}, args)
			if code != ExitIMDS {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitIMDS, showValue(errb.String()))
			}
			last := lastLine(errb.String())
			if !strings.HasPrefix(last, "swarm-agent: ") || !strings.Contains(last, tt.wantMsg) || len(last) > 300 {
				t.Errorf("last stderr line %s, want one of at most 300 bytes with %q", showValue(last), tt.wantMsg)
			}
			if _, err := os.Stat(filepath.Join(dir, "daemon.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("daemon.json written from invalid metadata (%v)", err)
			}
		})
	}
}

// TestBootStartsAStoppedEngine: an engine that does not answer is started (systemd's
// docker.service in production, a stand-in here) and waited for before boot goes on.
func TestBootStartsAStoppedEngine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadIMDS := "http://" + ln.Addr().String()
	_ = ln.Close()
	saved := startEngine
	t.Cleanup(func() { startEngine = saved })
	tests := []struct {
		name     string
		start    func(sock string) func(context.Context) (bool, error)
		wantCode int
		wantMsg  string
		calls    int
	}{
		{"started, then answers", func(sock string) func(context.Context) (bool, error) {
			return func(context.Context) (bool, error) {
				go func() { time.Sleep(1500 * time.Millisecond); serveFakeDocker(t, sock, "20.10.24") }()
				return true, nil
			}
		}, ExitIMDS, "instance metadata", 1},
		{"no systemd to start it", func(string) func(context.Context) (bool, error) {
			return func(context.Context) (bool, error) { return false, nil }
		}, ExitDocker, "not answering", 1},
		{"start fails", func(string) func(context.Context) (bool, error) {
			return func(context.Context) (bool, error) { return false, errors.New("unit docker.service not found") }
		}, ExitDocker, "starting docker.service: unit docker.service not found", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "docker.sock")
			calls := 0
			inner := tt.start(sock)
			startEngine = func(ctx context.Context) (bool, error) { calls++; return inner(ctx) }
			var out, errb bytes.Buffer
			args := []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--docker-host=unix://" + sock,
				"--config-file=", "--status-file=" + filepath.Join(dir, "st.json"), "--persist=false", "--wait=5s"}
			code := run(context.Background(), env{stdout: &out, stderr: &errb,
				environ: []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + deadIMDS}, readFile: os.ReadFile}, args)
			if code != tt.wantCode || calls != tt.calls {
				t.Fatalf("exit %d after %d start(s), want %d after %d; stderr:\n%s", code, calls, tt.wantCode, tt.calls, errb.String())
			}
			if last := lastLine(errb.String()); !strings.Contains(last, tt.wantMsg) {
				t.Errorf("last line %q, want it to contain %q", last, tt.wantMsg)
			}
		})
	}
}
