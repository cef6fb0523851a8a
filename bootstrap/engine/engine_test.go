package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/swarm-agent/swarm-agent/bootstrap"
)

func TestParseAndCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"20.10.24", "20.10.0", 1},
		{"20.10.24+dfsg1", "20.10.24", 0},
		{"20.10", "20.10.0", 0},
		{"19.03.15", "20.10.0", -1},
		{"1.41", "1.40", 1},
		{"1.9", "1.40", -1},
		{"v24.0.7-ce", "24.0.7", 0},
		{"27.0.0-rc.1", "26.1.4", 1},
	} {
		t.Run(c.a+" vs "+c.b, func(t *testing.T) {
			a, err := parseVersion(c.a)
			if err != nil {
				t.Fatal(err)
			}
			b, err := parseVersion(c.b)
			if err != nil {
				t.Fatal(err)
			}
			if got := compare(a, b); got != c.want {
				t.Errorf("compare(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
			}
		})
	}
	for _, bad := range []string{"", "latest", "x.1", "."} {
		t.Run("bad "+bad, func(t *testing.T) {
			if v, err := parseVersion(bad); err == nil {
				t.Errorf("parseVersion(%q) = %v, want an error", bad, v)
			}
		})
	}
}

func TestUnreachableSocket(t *testing.T) {
	host := "unix://" + filepath.Join(t.TempDir(), "x.sock")
	e, err := New(host)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for name, call := range map[string]func() error{
		"check": func() error { _, err := e.Check(ctx, ""); return err },
		"local": func() error { _, err := e.Local(ctx); return err },
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			want := "docker engine at " + host + " is not answering: "
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %v, want it to start with %q", err, want)
			}
			if testing.Verbose() {
				t.Log(err)
			}
			if !errors.Is(err, bootstrap.ErrEngineAPI) {
				t.Errorf("errors.Is(%v, ErrEngineAPI) = false", err)
			}
		})
	}
}

// fakeDaemon is a stateful stand-in for dockerd's API on a unix socket: swarm join, info,
// node inspect and update with versions, leave.
type fakeDaemon struct {
	mu sync.Mutex
	// join answers with this error message (joinStatus, default 500) when set; the join then
	// goes on "in the background": after pendingInfos /info calls the state becomes finalState.
	joinErr      string
	joinStatus   int
	pendingInfos int
	finalState   swarmapi.LocalNodeState
	finalErr     string
	infoCalls    int
	inSwarm      bool
	// nodes by id; raceUpdates makes that many updates fail as if another writer won.
	nodes       map[string]*swarmapi.Node
	raceUpdates int
	updates     int
	// services by id; their updates race like the nodes' (raceUpdates) and are counted.
	services map[string]*swarmapi.Service
}

var versionPrefix = regexp.MustCompile(`^/v[0-9.]+`)

func (f *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := versionPrefix.ReplaceAllString(r.URL.Path, "")
	fail := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
	}
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case path == "/_ping":
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Ostype", "linux")
		_, _ = w.Write([]byte("OK"))
	case path == "/version":
		reply(map[string]any{"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"})
	case path == "/swarm/join" && r.Method == http.MethodPost:
		if f.joinErr != "" {
			fail(cmp.Or(f.joinStatus, http.StatusInternalServerError), f.joinErr)
			return
		}
		f.inSwarm = true
		reply(nil)
	case path == "/info":
		f.infoCalls++
		state := swarmapi.LocalNodeStatePending
		var errText string
		if f.infoCalls > f.pendingInfos {
			state, errText = f.finalState, f.finalErr
		}
		reply(map[string]any{"Swarm": swarmapi.Info{NodeID: "n1", LocalNodeState: state, Error: errText}})
	case path == "/swarm/leave":
		if !f.inSwarm {
			fail(http.StatusServiceUnavailable, "This node is not part of a swarm")
			return
		}
		f.inSwarm = false
	case strings.HasPrefix(path, "/nodes/") && r.Method == http.MethodGet:
		n, ok := f.nodes[strings.TrimPrefix(path, "/nodes/")]
		if !ok {
			fail(http.StatusNotFound, "node not found")
			return
		}
		reply(n)
	case strings.HasPrefix(path, "/nodes/") && strings.HasSuffix(path, "/update"):
		n, ok := f.nodes[strings.TrimSuffix(strings.TrimPrefix(path, "/nodes/"), "/update")]
		if !ok {
			fail(http.StatusNotFound, "node not found")
			return
		}
		f.updates++
		if f.raceUpdates > 0 { // another writer updates first
			f.raceUpdates--
			n.Version.Index++
			n.Spec.Labels["other"] = "writer" + strconv.Itoa(f.raceUpdates)
		}
		v, _ := strconv.ParseUint(r.URL.Query().Get("version"), 10, 64)
		if v != n.Version.Index {
			fail(http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
			return
		}
		var spec swarmapi.NodeSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		n.Spec = spec
		n.Version.Index++
	case path == "/services" && r.Method == http.MethodGet:
		var out []swarmapi.Service
		for _, s := range f.services {
			out = append(out, *s)
		}
		reply(out)
	case strings.HasPrefix(path, "/services/") && r.Method == http.MethodGet:
		s, ok := f.services[strings.TrimPrefix(path, "/services/")]
		if !ok {
			fail(http.StatusNotFound, "service not found")
			return
		}
		reply(s)
	case strings.HasPrefix(path, "/services/") && strings.HasSuffix(path, "/update"):
		s, ok := f.services[strings.TrimSuffix(strings.TrimPrefix(path, "/services/"), "/update")]
		if !ok {
			fail(http.StatusNotFound, "service not found")
			return
		}
		f.updates++
		if f.raceUpdates > 0 {
			f.raceUpdates--
			s.Version.Index++
		}
		v, _ := strconv.ParseUint(r.URL.Query().Get("version"), 10, 64)
		if v != s.Version.Index {
			fail(http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
			return
		}
		var spec swarmapi.ServiceSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		prev := s.Spec
		s.PreviousSpec, s.Spec = &prev, spec
		s.Version.Index++
		reply(swarmapi.ServiceUpdateResponse{})
	default:
		fail(http.StatusNotFound, "page not found: "+r.Method+" "+path)
	}
}

// serve runs f on a unix socket and returns an Engine pointed at it.
func serve(t *testing.T, f *fakeDaemon) *Engine {
	t.Helper()
	e, _ := serveWith(t, f)
	return e
}

// serveWith is serve with Engine options; it also returns the server, to stop it early.
func serveWith(t *testing.T, f *fakeDaemon, opts ...Option) (*Engine, *http.Server) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	e, err := New("unix://"+sock, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.pollEvery = time.Millisecond
	t.Cleanup(func() { _ = e.Close() })
	return e, srv
}

const engineTimeout = "Timeout was reached before node joined. The attempt to join the swarm will continue in the background. Use the \"docker info\" command to see the current swarm status of your node."

func TestJoin(t *testing.T) {
	const token = "SWMTKN-1-secretsecretsecret-abcdef"
	for _, c := range []struct {
		name      string
		f         *fakeDaemon
		ctxWait   time.Duration
		wantErr   string // "" = success
		wantInfos int    // at least this many /info polls
	}{
		{name: "immediate", f: &fakeDaemon{}},
		{name: "timeout then active", f: &fakeDaemon{joinErr: engineTimeout, pendingInfos: 3, finalState: swarmapi.LocalNodeStateActive}, wantInfos: 4},
		{name: "timeout then error", f: &fakeDaemon{joinErr: engineTimeout, pendingInfos: 2, finalState: swarmapi.LocalNodeStateError, finalErr: "manager unreachable"},
			wantErr: "failed: manager unreachable", wantInfos: 3},
		{name: "timeout and still pending when ctx ends", f: &fakeDaemon{joinErr: engineTimeout, pendingInfos: 1 << 30},
			// Long enough for the join call itself on a loaded machine (it once took over
			// 50 ms under load and the deadline hit the join, not the polling).
			ctxWait: 3 * time.Second, wantErr: "state pending", wantInfos: 2},
		{name: "refused with the token in the answer", f: &fakeDaemon{joinErr: "invalid join token " + token},
			wantErr: "invalid join token <redacted>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := serve(t, c.f)
			ctx := t.Context()
			if c.ctxWait > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, c.ctxWait)
				defer cancel()
			}
			err := e.Join(ctx, bootstrap.JoinRequest{RemoteAddrs: []string{"10.0.0.1:2377"}, Token: token, AdvertiseAddr: "10.0.0.2"})
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("Join: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("Join error %v, want it to contain %q", err, c.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), token) {
					t.Errorf("error shows the token: %v", err)
				}
				if !strings.Contains(err.Error(), "join swarm via 10.0.0.1:2377") || !errors.Is(err, bootstrap.ErrEngineAPI) {
					t.Errorf("error %v does not name the operation or match ErrEngineAPI", err)
				}
			}
			if c.f.infoCalls < c.wantInfos {
				t.Errorf("info polled %d times, want at least %d", c.f.infoCalls, c.wantInfos)
			}
		})
	}
}

func TestLeaveWhenNotInSwarm(t *testing.T) {
	f := &fakeDaemon{inSwarm: true}
	e := serve(t, f)
	for i := range 2 {
		if err := e.Leave(t.Context(), true); err != nil {
			t.Fatalf("leave %d: %v", i+1, err)
		}
	}
	if f.inSwarm {
		t.Error("still in swarm after Leave")
	}
}

func TestNodeUpdateRetriesOutOfSequence(t *testing.T) {
	for _, c := range []struct {
		name        string
		races       int
		wantUpdates int
		wantErr     bool
	}{
		{"no race", 0, 1, false},
		{"two lost races", 2, 3, false},
		{"always loses", updateAttempts + 5, updateAttempts, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := &swarmapi.Node{ID: "n1", Spec: swarmapi.NodeSpec{Availability: swarmapi.NodeAvailabilityActive, Role: swarmapi.NodeRoleWorker}}
			n.Version.Index = 7
			n.Spec.Labels = map[string]string{"keep": "me"}
			f := &fakeDaemon{nodes: map[string]*swarmapi.Node{"n1": n}, raceUpdates: c.races}
			e := serve(t, f)
			err := e.SetNodeLabels(t.Context(), "n1", map[string]string{"swarm-agent.instance-id": "i-1"})
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), "update out of sequence") || !strings.Contains(err.Error(), "label node n1") {
					t.Fatalf("error %v, want a give-up naming the node and the conflict", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if f.updates != c.wantUpdates {
				t.Errorf("%d update calls, want %d", f.updates, c.wantUpdates)
			}
			if c.wantErr {
				return
			}
			got := n.Spec.Labels
			if got["keep"] != "me" || got["swarm-agent.instance-id"] != "i-1" || (c.races > 0 && got["other"] == "") {
				t.Errorf("labels after update %v: lost a label", got)
			}
			// the same labels again change nothing
			before := f.updates
			if err := e.SetNodeLabels(t.Context(), "n1", map[string]string{"swarm-agent.instance-id": "i-1"}); err != nil {
				t.Fatal(err)
			}
			if f.updates != before {
				t.Errorf("unchanged labels still sent %d updates", f.updates-before)
			}
		})
	}
}

func TestInvalidArguments(t *testing.T) {
	e := serve(t, &fakeDaemon{nodes: map[string]*swarmapi.Node{}})
	for name, err := range map[string]error{
		"availability": e.SetAvailability(t.Context(), "n1", "drained"),
		"role":         e.SetRole(t.Context(), "n1", "leader"),
		"floor":        func() error { _, err := e.Check(t.Context(), "latest"); return err }(),
	} {
		t.Run(name, func(t *testing.T) {
			if err == nil || !strings.Contains(err.Error(), `"`) {
				t.Errorf("error %v, want one quoting the bad value", err)
			}
		})
	}
	t.Run("missing node", func(t *testing.T) {
		err := e.SetAvailability(t.Context(), "nope", "drain")
		if err == nil || !strings.Contains(err.Error(), "node nope") {
			t.Errorf("error %v, want one naming the node", err)
		}
	})
	t.Run("version", func(t *testing.T) {
		v, err := e.Check(t.Context(), "")
		if err != nil || v.Engine != "20.10.24+dfsg1" || v.API != "1.41" {
			t.Errorf("Check = %+v, %v", v, err)
		}
		if _, err := e.Check(t.Context(), "99.0"); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("older than the required %s", "99.0")) {
			t.Errorf("Check(99.0) error %v", err)
		}
	})
}

func TestUnknownNodeIsNotFound(t *testing.T) {
	f := &fakeDaemon{nodes: map[string]*swarmapi.Node{}}
	e := serve(t, f)
	_, err := e.Node(t.Context(), "nope")
	if !IsNotFound(err) {
		t.Fatalf("Node(unknown) = %v, want IsNotFound", err)
	}
	if IsNotFound(fmt.Errorf("other: %w", errors.New("boom"))) {
		t.Fatal("IsNotFound on an unrelated error")
	}
}

func TestIsNotManager(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{errors.New("Error response from daemon: This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state."), true},
		{errors.New("Error response from daemon: This node is not part of a swarm"), true},
		{errors.New("connection refused"), false},
		{nil, false},
	} {
		if got := IsNotManager(tt.err); got != tt.want {
			t.Errorf("IsNotManager(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
