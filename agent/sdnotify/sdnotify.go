// Package sdnotify tells systemd how the agent is doing (READY, STATUS, STOPPING) and feeds its
// watchdog only while the agent's main loop shows signs of life. It is the only package that
// imports go-systemd.
package sdnotify

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages to the socket named by NOTIFY_SOCKET. Every method is a
// no-op when the agent does not run under systemd (NOTIFY_SOCKET unset). A Notifier is safe
// for concurrent use.
type Notifier struct {
	enabled  bool
	watchdog time.Duration // WATCHDOG_USEC, 0 when systemd does not watch us
	stale    time.Duration // Run stops pinging once Alive is older than this
	now      func() time.Time
	alive    atomic.Int64 // unix nanoseconds of the last Alive
	ready    atomic.Bool  // Ready was sent: the watchdog covers the agent from then on
}

// New reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. It fails only when WATCHDOG_USEC or
// WATCHDOG_PID is malformed. The main loop counts as alive from this moment.
func New() (*Notifier, error) {
	n := &Notifier{now: time.Now}
	n.enabled = envSocket() != ""
	if n.enabled {
		d, err := daemon.SdWatchdogEnabled(false)
		if err != nil {
			return nil, fmt.Errorf("systemd watchdog settings: %w", err)
		}
		n.watchdog = d
	}
	n.stale = n.watchdog
	n.Alive()
	return n, nil
}

// Enabled reports whether systemd listens (NOTIFY_SOCKET is set).
func (n *Notifier) Enabled() bool { return n.enabled }

// WatchdogInterval is WATCHDOG_USEC, or 0 when systemd does not watch the agent.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog }

// SetStale changes how old the last Alive may be before Run stops feeding the watchdog. It
// defaults to the watchdog interval itself; call it before Run.
func (n *Notifier) SetStale(d time.Duration) {
	if d > 0 {
		n.stale = d
	}
}

// Ready tells systemd that start-up is finished: the node is in the swarm and the agent watches
// its lifecycle. The watchdog is fed from then on (while Alive is fresh).
func (n *Notifier) Ready() error {
	n.Alive()
	n.ready.Store(true)
	return n.send(daemon.SdNotifyReady)
}

// Status sets the one-line status that `systemctl status` shows.
func (n *Notifier) Status(s string) error { return n.send("STATUS=" + s) }

// Stopping tells systemd that the agent is shutting down (draining may follow).
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Alive records that the main loop made progress. Call it from the loop itself (each boot
// attempt, each lifecycle poll), never from a goroutine of its own: its purpose is to stop when
// the loop hangs.
func (n *Notifier) Alive() { n.alive.Store(n.now().UnixNano()) }

// Run feeds the watchdog (WATCHDOG=1 every half WATCHDOG_USEC) from Ready on, for as long as the
// main loop calls Alive; once the last Alive is older than the stale limit it sends nothing more,
// so systemd kills and restarts the agent. Nothing is sent before Ready: a ping arms systemd's
// watchdog at once, and start-up (a boot that waits minutes for the first manager, a drain
// resumed instead of a boot) is TimeoutStartSec's to bound, as systemd intends (the watchdog
// "is activated when the start-up is completed"). It returns nil at once when systemd does not
// watch the agent, and when ctx ends; it returns an error only if the socket refuses a ping.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.enabled || n.watchdog <= 0 {
		return nil
	}
	t := time.NewTicker(n.watchdog / 2)
	defer t.Stop()
	for {
		if n.fresh() {
			if err := n.send(daemon.SdNotifyWatchdog); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (n *Notifier) fresh() bool {
	if !n.ready.Load() {
		return false
	}
	last := time.Unix(0, n.alive.Load())
	return n.now().Sub(last) < n.stale
}

func (n *Notifier) send(state string) error {
	if !n.enabled {
		return nil
	}
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %s to %s: %w", stateName(state), envSocket(), err)
	}
	return nil
}

// stateName is the message's key (READY, STATUS, ...), so errors never echo a status text.
func stateName(state string) string {
	for i := range len(state) {
		if state[i] == '=' {
			return state[:i]
		}
	}
	return state
}

func envSocket() string { return os.Getenv("NOTIFY_SOCKET") }
