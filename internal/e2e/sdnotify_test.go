package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// TestIntegrationSystemdNotify runs `swarm-agent run` on a node that is not in a swarm yet,
// as systemd would (Type=notify, WatchdogSec): READY=1 comes only once the node has joined,
// STATUS lines tell the stages, and WATCHDOG=1 pings keep coming while the main loop runs.
func TestIntegrationSystemdNotify(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 1, 1)
	ctx := t.Context()
	manager, worker := c.Bed.Nodes[0], c.Bed.Nodes[1]
	if r := c.Boot(ctx, manager, "manager"); r.Code != 0 {
		t.Fatalf("boot manager: %s", r.Stderr)
	}
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	type msg struct {
		at    time.Time
		text  string
		state string // the worker engine's swarm state when the message arrived
	}
	var (
		mu   sync.Mutex
		msgs []msg
	)
	d := must[*client.Client](t)(c.Docker(worker))
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			text := string(buf[:n])
			state := ""
			if strings.Contains(text, "READY=1") {
				ictx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if info, err := d.Info(ictx, client.InfoOptions{}); err == nil {
					state = string(info.Info.Swarm.LocalNodeState)
				}
				cancel()
			}
			mu.Lock()
			msgs = append(msgs, msg{time.Now(), text, state})
			mu.Unlock()
		}
	}()
	a, err := c.StartRunEnv(ctx, worker, []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=1000000"},
		"--role=worker", "--discovery="+c.Discovery(), "--watch-interval=200ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(10 * time.Second) })
	var ready msg
	waitfor.Until(t, 90*time.Second, "READY=1", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			if strings.Contains(m.text, "READY=1") {
				ready = m
				return nil
			}
		}
		return context.DeadlineExceeded
	})
	if ready.state != "active" {
		t.Fatalf("READY=1 sent while the engine's swarm state was %q, want active (joined)", ready.state)
	}
	// Pings after READY, however slowly a loaded machine lets them come: the wait ends at the
	// third one (about 1.5 s at WatchdogSec=1s) and fails only when they stop.
	pingsAfterReady := func() int {
		pings := 0
		for _, m := range msgs {
			if strings.Contains(m.text, "WATCHDOG=1") && m.at.After(ready.at) {
				pings++
			}
		}
		return pings
	}
	waitfor.Until(t, time.Minute, "3 watchdog pings after READY with WatchdogSec=1s", func() error {
		mu.Lock()
		defer mu.Unlock()
		if n := pingsAfterReady(); n < 3 {
			return fmt.Errorf("%d pings", n)
		}
		return nil
	})
	a.Stop(10 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	var statuses []string
	for _, m := range msgs {
		if strings.HasPrefix(m.text, "STATUS=") {
			statuses = append(statuses, m.text)
		}
	}
	if len(statuses) < 2 || !strings.Contains(strings.Join(statuses, "\n"), "in swarm") {
		t.Errorf("STATUS lines %q: want the stages, ending in swarm", statuses)
	}
	stopping := false
	for _, m := range msgs {
		stopping = stopping || strings.Contains(m.text, "STOPPING=1")
	}
	if !stopping {
		t.Errorf("no STOPPING=1 after SIGTERM")
	}
}
