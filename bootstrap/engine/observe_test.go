package engine

import (
	"net/http"
	"slices"
	"sync"
	"testing"

	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/swarm-agent/swarm-agent/bootstrap"
)

// TestErrorObserver: the engine's failed calls reach the observer with their kind and an op
// free of ids; answers (2xx, 404) do not.
func TestErrorObserver(t *testing.T) {
	var mu sync.Mutex
	var got []string
	observe := func(op, kind string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, kind+" "+op)
	}
	f := &fakeDaemon{nodes: map[string]*swarmapi.Node{}, joinErr: "invalid join token", joinStatus: http.StatusBadRequest}
	e, srv := serveWith(t, f, WithErrorObserver(observe))
	ctx := t.Context()
	if _, err := e.Node(ctx, "abcdefghijklmnopqrstuvwxy"); !IsNotFound(err) {
		t.Fatalf("Node: %v, want not found", err)
	}
	if err := e.Join(ctx, bootstrap.JoinRequest{RemoteAddrs: []string{"10.0.0.1:2377"}, Token: "SWMTKN-1-x"}); err == nil {
		t.Fatal("Join: no error from a 400")
	}
	f.mu.Lock()
	f.joinErr, f.joinStatus = "rpc error: code = Unavailable desc = all SubConns are in TransientFailure", 0
	f.mu.Unlock()
	if err := e.Join(ctx, bootstrap.JoinRequest{RemoteAddrs: []string{"10.0.0.1:2377"}, Token: "SWMTKN-1-x"}); err == nil {
		t.Fatal("Join: no error from a 500")
	}
	_ = srv.Close()
	if _, err := e.Node(ctx, "abcdefghijklmnopqrstuvwxy"); err == nil {
		t.Fatal("Node: no error with the engine gone")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"4xx POST /swarm/join", "5xx POST /swarm/join", "unreachable dial"}
	if !slices.Equal(got, want) {
		t.Fatalf("observed %q, want %q", got, want)
	}
}

func TestOpOf(t *testing.T) {
	for path, want := range map[string]string{
		"/v1.47/nodes/3x8ab0c2k9d7e6f5g4h3j2k1l/update": "POST /nodes/{id}/update",
		"/v1.47/swarm/join":                             "POST /swarm/join",
		"/_ping":                                        "POST /_ping",
		"/v1.47/services/web":                           "POST /services/{id}",
	} {
		r, _ := http.NewRequest(http.MethodPost, "http://docker"+path, nil)
		if got := opOf(r); got != want {
			t.Errorf("opOf(%s) = %q, want %q", path, got, want)
		}
	}
}
