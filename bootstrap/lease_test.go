package bootstrap

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
)

// scriptLock is a Lock whose renewals do what the test says.
type scriptLock struct {
	mu       sync.Mutex
	ttl      time.Duration
	renewals int
	fail     error         // returned by Renew when set
	delay    time.Duration // each Renew takes this long (bounded by its context)
	lost     chan struct{} // a discovery.LossNotifier when non-nil
}

func (l *scriptLock) Renew(ctx context.Context) error {
	l.mu.Lock()
	d, fail := l.delay, l.fail
	l.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if fail != nil {
		return fail
	}
	l.renewals++
	return nil
}
func (l *scriptLock) TTL() time.Duration                { return l.ttl }
func (l *scriptLock) Release(ctx context.Context) error { return nil }
func (l *scriptLock) set(f func(l *scriptLock)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l)
}

type notifyingLock struct{ *scriptLock }

func (l notifyingLock) Lost() <-chan struct{} { return l.lost }

func TestLeaseRenewsWhileHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &scriptLock{ttl: 9 * time.Second}
		ls := keep(t.Context(), l, time.Now(), zerolog.New(io.Discard))
		defer ls.Stop()
		time.Sleep(3 * l.ttl)
		synctest.Wait()
		if err := ls.Held(); err != nil {
			t.Fatalf("lease lost after 3 TTLs of working renewals: %v", err)
		}
		if l.renewals < 8 {
			t.Fatalf("%d renewals in 3 TTLs, want about 9 (three per TTL)", l.renewals)
		}
		if err := ls.Fresh(t.Context()); err != nil {
			t.Fatalf("Fresh: %v", err)
		}
	})
}

func TestLeaseLostWhenRenewalSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &scriptLock{ttl: 9 * time.Second}
		ls := keep(t.Context(), l, time.Now(), zerolog.New(io.Discard))
		defer ls.Stop()
		time.Sleep(time.Second)
		l.set(func(l *scriptLock) { l.fail = discovery.ErrLockLost })
		start := time.Now()
		for ls.Held() == nil {
			time.Sleep(100 * time.Millisecond)
		}
		if el := time.Since(start); el > l.ttl/3+time.Second {
			t.Fatalf("loss noticed after %s, want within one renewal period (%s)", el, l.ttl/3)
		}
		l.set(func(l *scriptLock) { l.fail = nil })
		if err := ls.Fresh(t.Context()); !errors.Is(err, discovery.ErrLockLost) {
			t.Fatalf("Fresh after loss = %v; a lost lease must never be used again", err)
		}
	})
}

// TestLeaseRunsOutWhenRenewalsFail: a holder whose renewals fail (cut off, slow provider)
// loses the lease when the time covered by its last good renewal runs out.
func TestLeaseRunsOutWhenRenewalsFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &scriptLock{ttl: 9 * time.Second, fail: errors.New("connection refused")}
		start := time.Now()
		ls := keep(t.Context(), l, start, zerolog.New(io.Discard))
		defer ls.Stop()
		time.Sleep(l.ttl - time.Second)
		if err := ls.Held(); err != nil {
			t.Fatalf("lost before the lease ran out: %v", err)
		}
		time.Sleep(2 * time.Second)
		if err := ls.Held(); !errors.Is(err, discovery.ErrLockLost) {
			t.Fatalf("Held after the lease ran out = %v", err)
		}
	})
}

func TestLeaseFreshRefusesSlowRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &scriptLock{ttl: 9 * time.Second}
		// Taken 5 s ago: less than half of the lease is left, so Fresh must renew first.
		ls := keep(t.Context(), l, time.Now().Add(-5*time.Second), zerolog.New(io.Discard))
		defer ls.Stop()
		l.set(func(l *scriptLock) { l.delay = time.Minute })
		if err := ls.Fresh(t.Context()); !errors.Is(err, discovery.ErrLockLost) {
			t.Fatalf("Fresh with a renewal that never answers = %v, want ErrLockLost", err)
		}
	})
}

// TestLeaseFreshCountsFromTheTake: a lock taken moments ago has more than half its lease
// left, counted from the take's start (itself a compare-and-swap), so Fresh needs no
// renewal; once less than half is left, Fresh renews before it answers.
func TestLeaseFreshCountsFromTheTake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &scriptLock{ttl: 9 * time.Second}
		ls := keep(t.Context(), l, time.Now(), zerolog.New(io.Discard))
		defer ls.Stop()
		if err := ls.Fresh(t.Context()); err != nil {
			t.Fatalf("Fresh right after the take: %v", err)
		}
		if l.renewals != 0 {
			t.Fatalf("%d renewals for a lease taken moments ago, want 0", l.renewals)
		}
		// Taken 5 s ago (a slow look at the registry): 4 s of 9 left, so Fresh renews.
		l2 := &scriptLock{ttl: 9 * time.Second}
		ls2 := keep(t.Context(), l2, time.Now().Add(-5*time.Second), zerolog.New(io.Discard))
		defer ls2.Stop()
		if err := ls2.Fresh(t.Context()); err != nil {
			t.Fatalf("Fresh with a working renewal: %v", err)
		}
		if l2.renewals != 1 {
			t.Fatalf("Fresh with less than half the lease left made %d renewals, want 1", l2.renewals)
		}
	})
}

func TestLeaseNotifierMarksLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := notifyingLock{&scriptLock{ttl: time.Hour, lost: make(chan struct{})}}
		ls := keep(t.Context(), l, time.Now(), zerolog.New(io.Discard))
		defer ls.Stop()
		close(l.lost)
		synctest.Wait()
		if err := ls.Held(); !errors.Is(err, discovery.ErrLockLost) {
			t.Fatalf("Held after the provider reported the loss = %v", err)
		}
	})
}
