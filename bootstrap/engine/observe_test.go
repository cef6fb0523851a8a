package engine

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/moby/moby/client"
)

// TestErrorObserver: the engine's failed calls reach the observer with their kind and an op
// free of ids; answers (2xx, 404) do not.
func TestErrorObserver(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Api-Version", "1.47")
		_, _ = w.Write([]byte("OK"))
	})
	mux.HandleFunc("/v1.47/nodes/abcdefghijklmnopqrstuvwxy", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"message":"node abcdefghijklmnopqrstuvwxy not found"}`, http.StatusNotFound)
	})
	mux.HandleFunc("/v1.47/nodes", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"message":"This node is not a swarm manager."}`, http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/v1.47/info", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"message":"bad"}`, http.StatusBadRequest)
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	var mu sync.Mutex
	var got []string
	observe := func(op, kind string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, kind+" "+op)
	}
	e, err := New("unix://"+sock, WithErrorObserver(observe))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	ctx := context.Background()
	if _, err := e.Nodes(ctx); err == nil {
		t.Fatal("Nodes: no error from a 503")
	}
	if _, err := e.Node(ctx, "abcdefghijklmnopqrstuvwxy"); !IsNotFound(err) {
		t.Fatalf("Node: %v, want not found", err)
	}
	if _, err := e.c.Info(ctx, client.InfoOptions{}); err == nil {
		t.Fatal("Info: no error from a 400")
	}
	_ = srv.Close()
	if _, err := e.Nodes(ctx); err == nil {
		t.Fatal("Nodes: no error with the engine gone")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"5xx GET /nodes", "4xx GET /info", "unreachable dial"}
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
