package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/notify"
)

// TestIntegrationDrainNotifies: `run --notify-url` on a worker that is scaled in posts
// drain_started and then drain_finished (result completed, its instance and node) to the
// operator's webhook, from inside the node's network namespace, and the drain completes its
// lifecycle action as without a webhook.
func TestIntegrationDrainNotifies(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 1, 1)
	ctx := t.Context()
	worker := c.Bed.Nodes[1]
	var mu sync.Mutex
	var events []notify.Event
	ln, err := net.Listen("tcp", c.Bed.BridgeIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev notify.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Errorf("webhook body %q: %v", b, err)
		}
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	bootAll(t, c, 1)
	url := fmt.Sprintf("--notify-url=http://%s/hooks/T0/secret", ln.Addr())
	agents := startRuns(t, c, c.Bed.Nodes, "--watch-interval=300ms", url)
	id := c.InstanceID(worker)
	if err := c.Front.StartScaleIn(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 3*time.Minute, "drain_finished posted by the worker", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			if ev.Event == notify.DrainFinished {
				return nil
			}
		}
		return fmt.Errorf("posts so far: %+v", events)
	})
	mu.Lock()
	got := append([]notify.Event(nil), events...)
	mu.Unlock()
	if len(got) != 2 || got[0].Event != notify.DrainStarted || got[1].Event != notify.DrainFinished {
		t.Fatalf("posts %+v, want drain_started then drain_finished", got)
	}
	for _, ev := range got {
		if ev.InstanceID != id || ev.Kind != "scale-in" || ev.Cluster == "" {
			t.Errorf("post %+v: want instance %s, kind scale-in, the cluster", ev, id)
		}
	}
	if got[1].Result != "completed" || got[1].NodeID == "" || got[1].Error != "" {
		t.Errorf("drain_finished %+v, want result completed with the node id", got[1])
	}
	if a, ok := c.Front.LifecycleAction(id); !ok || a.Result != "CONTINUE" || a.Completions != 1 {
		t.Errorf("lifecycle action %+v, want one CONTINUE", a)
	}
	if code := agents[worker.Name].Code(); code != 0 {
		t.Errorf("the worker's run exited %d after its drain, want 0", code)
	}
}
