package sdnotify

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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

// drain returns every message that arrives within d.
func drain(ch <-chan string, d time.Duration) []string {
	var got []string
	timeout := time.After(d)
	for {
		select {
		case m := <-ch:
			got = append(got, m)
		case <-timeout:
			return got
		}
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
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := n.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Run blocked %v without a socket, want immediate return", el)
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
	got := drain(ch, 200*time.Millisecond)
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
			select {
			case m := <-ch:
				if m != s.want {
					t.Errorf("got %q, want %q", m, s.want)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("no message after %s, want %q", s.name, s.want)
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
// then pings while the main loop calls Alive, none once it no longer does.
func TestWatchdogFollowsLiveness(t *testing.T) {
	ch := listen(t)
	const wd = 100 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(wd/time.Microsecond)))
	t.Setenv("WATCHDOG_PID", "")
	n, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()

	// Start-up: no ping before READY=1, however alive the agent is (a ping would arm systemd's
	// watchdog during a boot that may wait minutes for the first manager).
	for range 6 {
		n.Alive()
		time.Sleep(wd / 2)
	}
	if got := count(drain(ch, 10*time.Millisecond), "WATCHDOG=1"); got != 0 {
		t.Fatalf("%d WATCHDOG=1 before Ready, want none", got)
	}
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}

	// The main loop is alive for 600 ms: about 12 pings at wd/2.
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
	alive := drain(ch, 600*time.Millisecond)
	close(stopLoop)
	<-loopDone
	if got := count(alive, "WATCHDOG=1"); got < 6 {
		t.Errorf("while alive: %d WATCHDOG=1 in 600ms at interval %v, want >= 6 (got %q)", got, wd/2, alive)
	}

	// The loop hangs: after at most one stale period (wd) plus a tick, no ping may follow.
	drain(ch, wd+wd/2+50*time.Millisecond)
	hung := drain(ch, 500*time.Millisecond)
	if got := count(hung, "WATCHDOG=1"); got != 0 {
		t.Errorf("after the main loop stopped: %d WATCHDOG=1, want 0 (got %q)", got, hung)
	}

	// The loop recovers: pings resume.
	n.Alive()
	if got := count(drain(ch, wd), "WATCHDOG=1"); got == 0 {
		t.Error("after Alive again: no WATCHDOG=1, want pings to resume")
	}

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
