package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// listen opens a real unixgram socket, points NOTIFY_SOCKET at it and returns the channel of
// datagrams it receives.
func listen(t *testing.T) <-chan string {
	t.Helper()
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return ch
}

// msgWait bounds every wait for a datagram that must come: generous, since a loaded machine
// may take seconds to schedule the sender or the reader, and a wait that succeeds costs nothing.
const msgWait = 30 * time.Second

// next returns the next datagram, failing after msgWait.
func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(msgWait):
		t.Fatalf("no datagram within %s", msgWait)
		return ""
	}
}

// fence sends a marker datagram to the socket and returns what arrived before it: the socket
// delivers in order, so every datagram sent before the call is in the result.
func fence(t *testing.T, ch <-chan string) []string {
	t.Helper()
	const marker = "FENCE=1"
	conn, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(marker)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m := next(t, ch)
		if m == marker {
			return got
		}
		got = append(got, m)
	}
}

func count(msgs []string, want string) int {
	n := 0
	for _, m := range msgs {
		if m == want {
			n++
		}
	}
	return n
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "1000")
	n, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if n.Enabled() {
		t.Error("Enabled() = true without NOTIFY_SOCKET")
	}
	for name, f := range map[string]func() error{
		"Ready": n.Ready, "Stopping": n.Stopping, "Status": func() error { return n.Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s: %v, want nil", name, err)
		}
	}
	// Run must return on its own: a Run that blocked would return only when ctx ends.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := n.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Errorf("Run blocked until its context ended without a socket, want immediate return")
	}
}

func TestReadyStatusStopping(t *testing.T) {
	ch := listen(t)
	t.Setenv("WATCHDOG_USEC", "")
	n, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	if err := n.Status("joining swarm via 10.0.1.5:2377"); err != nil {
		t.Fatalf("Status: %v", err)
	}
	got := fence(t, ch)
	if want := []string{"STATUS=joining swarm via 10.0.1.5:2377"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("before Ready got %q, want %q", got, want)
	}
	steps := []struct {
		name string
		call func() error
		want string
	}{
		{"ready", n.Ready, "READY=1"},
		{"status", func() error { return n.Status("watching lifecycle") }, "STATUS=watching lifecycle"},
		{"stopping", n.Stopping, "STOPPING=1"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := s.call(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if got := fence(t, ch); len(got) != 1 || got[0] != s.want {
				t.Errorf("after %s got %q, want %q", s.name, got, s.want)
			}
		})
	}
}

func TestSendErrorNamesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent")
	t.Setenv("NOTIFY_SOCKET", path)
	n, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = n.Status("secret-looking status")
	if err == nil {
		t.Fatal("Status to a missing socket: nil error")
	}
	if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "secret-looking") {
		t.Errorf("error %q: want the socket path and not the status text", err)
	}
}

func TestWatchdogSettings(t *testing.T) {
	tests := []struct {
		name    string
		usec    string
		pid     string
		want    time.Duration
		wantErr bool
	}{
		{name: "unset", want: 0},
		{name: "set", usec: "60000000", want: 60 * time.Second},
		{name: "our pid", usec: "2000000", pid: strconv.Itoa(os.Getpid()), want: 2 * time.Second},
		{name: "another pid", usec: "2000000", pid: "1", want: 0},
		{name: "malformed", usec: "sixty", wantErr: true},
		{name: "negative", usec: "-5", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listen(t)
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			n, err := New()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New with WATCHDOG_USEC=%q: nil error", tt.usec)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := n.WatchdogInterval(); got != tt.want {
				t.Errorf("WatchdogInterval() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWatchdogFollowsLiveness runs the real loop against a real socket: no ping before Ready,
// then pings while the main loop calls Alive, none once it no longer does, and pings again
// once it does. The clock Run reads is the real one plus a skew the test sets, so that "the
// last Alive is stale" happens when the test says, not when a loaded machine happens to
// schedule the loop; each check waits on the loop's own readings of the clock and fences the
// socket, so no answer depends on how fast the machine is.
func TestWatchdogFollowsLiveness(t *testing.T) {
	ch := listen(t)
	const wd = 100 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(wd/time.Microsecond)))
	t.Setenv("WATCHDOG_PID", "")
	n, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if n.stale != wd {
		t.Fatalf("stale limit %v, want the watchdog interval %v by default", n.stale, wd)
	}
	const stale = time.Hour // the skew below, not the machine's speed, makes Alive stale
	n.SetStale(stale)
	var skew, reads atomic.Int64
	n.now = func() time.Time {
		reads.Add(1)
		return time.Now().Add(time.Duration(skew.Load()))
	}
	// looked waits until Run has read the clock twice more: every ping decided before the
	// call has been sent by then (Run decides and sends in turn). Alive reads the clock too,
	// so call it only while nothing else calls Alive.
	looked := func(what string) {
		t.Helper()
		from := reads.Load()
		waitfor.Every(t, msgWait, time.Millisecond, what, func() error {
			if got := reads.Load() - from; got < 2 {
				return fmt.Errorf("%d readings", got)
			}
			return nil
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()

	// Start-up: no ping before READY=1, however alive the agent is (a ping would arm systemd's
	// watchdog during a boot that may wait minutes for the first manager).
	// Run does not read the clock before Ready, so this is a window of observation (a few
	// ticks), which a correct loop passes however slow the machine.
	for range 6 {
		n.Alive()
		time.Sleep(wd / 2)
	}
	if got := count(fence(t, ch), "WATCHDOG=1"); got != 0 {
		t.Fatalf("%d WATCHDOG=1 before Ready, want none", got)
	}
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}

	// The main loop is alive: pings come, one per wd/2 tick.
	stopLoop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopLoop:
				return
			case <-tk.C:
				n.Alive()
			}
		}
	}()
	var alive []string
	for count(alive, "WATCHDOG=1") < 6 {
		alive = append(alive, next(t, ch))
	}
	close(stopLoop)
	<-loopDone
	if got := count(alive, "READY=1") + count(alive, "WATCHDOG=1"); got != len(alive) {
		t.Errorf("while alive: %q, want READY=1 and pings only", alive)
	}

	// The loop hangs: its last Alive is now older than the stale limit; once Run has looked
	// at the clock again, no ping may follow, however many times it looks.
	skew.Store(int64(2 * stale))
	looked("Run to see the stale Alive")
	fence(t, ch) // pings decided before the hang
	for range 3 {
		looked("Run to look while the loop hangs")
	}
	if hung := fence(t, ch); count(hung, "WATCHDOG=1") != 0 {
		t.Errorf("after the main loop stopped: %q, want no WATCHDOG=1", hung)
	}

	// The loop recovers: pings resume.
	n.Alive()
	if m := next(t, ch); m != "WATCHDOG=1" {
		t.Errorf("after Alive again: %q, want pings to resume", m)
	}

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(msgWait):
		t.Fatal("Run did not return after cancel")
	}
}
