// Package locktest is the contract every bootstrap lock provider passes (Route 53, Consul,
// static): one suite, run by each provider's tests against its real backend, so that the
// providers cannot drift apart again.
package locktest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/discovery"
)

// Env describes a provider under test.
type Env struct {
	// TTL is the lock TTL the providers are configured with.
	TTL time.Duration
	// Margin bounds how long past TTL a dead holder's lock may still stand (Consul: the
	// server may take up to 2 TTL to expire a session, then the lock-delay).
	Margin time.Duration
	// Namespace returns a constructor of nodes sharing one fresh lock (so that cases run in
	// parallel): each call of node is another node, with its own memory, whose clock runs
	// skew behind real time (providers that never read the holder's clock may ignore skew).
	Namespace func(t *testing.T) (node func(skew time.Duration) discovery.Locker)
}

func dead(context.Context, discovery.Holder) (bool, string)  { return false, "proven gone (test)" }
func alive(context.Context, discovery.Holder) (bool, string) { return true, "alive (test)" }

func holder(id string) discovery.Holder { return discovery.Holder{InstanceID: id, Addr: "192.0.2.1"} }

// Run runs the contract.
func Run(t *testing.T, env Env) {
	t.Run("renewal keeps the lock across three TTLs", func(t *testing.T) {
		t.Parallel()
		renewedAgainst(t, env, 0)
	})
	t.Run("a holder whose clock runs 20s behind cannot be displaced while it renews", func(t *testing.T) {
		t.Parallel()
		renewedAgainst(t, env, 20*time.Second)
	})
	t.Run("a dead holder's lock is taken over within TTL plus margin, and the old holder learns it lost", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		node := env.Namespace(t)
		h, other := node(0), node(0)
		l := take(t, h, "i-holder")
		if err := l.Renew(ctx); err != nil {
			t.Fatalf("renew: %v", err)
		}
		last := time.Now()
		var got discovery.Lock
		for got == nil {
			nl, err := other.TryLock(ctx, holder("i-other"), dead)
			switch {
			case err == nil:
				got = nl
			case !errors.Is(err, discovery.ErrLockHeld):
				t.Fatalf("TryLock: %v", err)
			case time.Since(last) > env.TTL+env.Margin:
				t.Fatalf("a dead holder's lock still stands %s after its last renewal (TTL %s, margin %s): %v",
					time.Since(last).Round(time.Millisecond), env.TTL, env.Margin, err)
			}
			sleep(t, env.TTL/10)
		}
		el := time.Since(last)
		if el < env.TTL-time.Second {
			t.Fatalf("lock taken over %s after the holder's last renewal, before its TTL %s", el, env.TTL)
		}
		t.Logf("taken over %s after the last renewal", el.Round(time.Millisecond))
		// The old holder learns at its next renewal (and at once where the provider watches).
		if n, ok := l.(discovery.LossNotifier); ok {
			select {
			case <-n.Lost():
			case <-time.After(env.TTL / 3):
				t.Fatalf("the provider did not report the lost lease within one renewal period (%s)", env.TTL/3)
			}
		}
		if err := l.Renew(ctx); !errors.Is(err, discovery.ErrLockLost) {
			t.Fatalf("renewal of a lock taken over = %v, want ErrLockLost", err)
		}
		// Its late release leaves the new holder's lock alone.
		if err := l.Release(ctx); err != nil {
			t.Fatalf("late release: %v", err)
		}
		if err := got.Renew(ctx); err != nil {
			t.Fatalf("new holder's renewal after the old holder's late release: %v", err)
		}
		if _, err := node(0).TryLock(ctx, holder("i-third"), dead); !errors.Is(err, discovery.ErrLockHeld) {
			t.Fatalf("third node while the new holder holds: %v, want ErrLockHeld", err)
		}
		if err := got.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a live holder's lock is never taken over", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		node := env.Namespace(t)
		h, other := node(0), node(0)
		l := take(t, h, "i-holder")
		defer func() { _ = l.Release(context.WithoutCancel(ctx)) }()
		deadline := time.Now().Add(2*env.TTL + env.Margin)
		for time.Now().Before(deadline) {
			nl, err := other.TryLock(ctx, holder("i-other"), alive)
			if err == nil {
				_ = nl.Release(ctx)
				t.Fatalf("a holder that alive says is alive was displaced after %s", time.Since(deadline.Add(-2*env.TTL-env.Margin)))
			}
			if !errors.Is(err, discovery.ErrLockHeld) {
				t.Fatalf("TryLock: %v", err)
			}
			sleep(t, env.TTL/5)
		}
	})
	t.Run("exactly one of many racing nodes takes a free lock", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		node := env.Namespace(t)
		type res struct {
			l   discovery.Lock
			err error
		}
		out := make(chan res, 6)
		for i := range 6 {
			n := node(0)
			go func() {
				l, err := n.TryLock(ctx, holder("i-racer"+string(rune('a'+i))), dead)
				out <- res{l, err}
			}()
		}
		var won []discovery.Lock
		for range 6 {
			r := <-out
			switch {
			case r.err == nil:
				won = append(won, r.l)
			case !errors.Is(r.err, discovery.ErrLockHeld):
				t.Fatalf("TryLock: %v", r.err)
			}
		}
		if len(won) != 1 {
			t.Fatalf("%d nodes took the lock, want exactly 1", len(won))
		}
		if err := won[0].Release(ctx); err != nil {
			t.Fatal(err)
		}
		l := take(t, node(0), "i-after")
		_ = l.Release(ctx)
	})
}

// renewedAgainst: a holder (clock skew behind) renews three times per TTL for three TTLs;
// another node, told the holder is dead, tries all along and never gets the lock.
func renewedAgainst(t *testing.T, env Env, skew time.Duration) {
	ctx := t.Context()
	node := env.Namespace(t)
	h, other := node(skew), node(0)
	l := take(t, h, "i-holder")
	defer func() { _ = l.Release(context.WithoutCancel(ctx)) }()
	end := time.Now().Add(3 * env.TTL)
	next := time.Now().Add(env.TTL / 3)
	for time.Now().Before(end) {
		if time.Now().After(next) {
			if err := l.Renew(ctx); err != nil {
				t.Fatalf("renew: %v", err)
			}
			next = time.Now().Add(env.TTL / 3)
		}
		if nl, err := other.TryLock(ctx, holder("i-other"), dead); err == nil {
			_ = nl.Release(ctx)
			t.Fatalf("a renewed lock (holder clock %s behind) was taken over", skew)
		} else if !errors.Is(err, discovery.ErrLockHeld) {
			t.Fatalf("TryLock: %v", err)
		}
		sleep(t, env.TTL/10)
	}
}

func take(t *testing.T, l discovery.Locker, id string) discovery.Lock {
	t.Helper()
	lk, err := l.TryLock(t.Context(), holder(id), dead)
	if err != nil {
		t.Fatalf("TryLock(%s): %v", id, err)
	}
	if lk.TTL() <= 0 {
		t.Fatalf("TTL() = %s for a lease provider", lk.TTL())
	}
	return lk
}

func sleep(t *testing.T, d time.Duration) {
	select {
	case <-time.After(d):
	case <-t.Context().Done():
	}
}
