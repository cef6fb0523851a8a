package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// lease keeps a held Lock alive: one goroutine, owned by the lease, renews it three times per
// TTL for as long as the holder works, and marks it lost the moment a renewal says it is no
// longer ours, or when the time covered by the last successful renewal has run out (the
// holder was slow or paused). The holder asks Fresh before every step that must be fenced
// (init, publishing): a lost lease is never used again.
//
// The time left is measured on this process's monotonic clock from the start of the renewal
// request that succeeded, so it never exceeds what other nodes grant (they time the lease on
// their own clocks from the moment they see the renewed record, which is later).
type lease struct {
	lock  discovery.Lock
	ttl   time.Duration
	log   zerolog.Logger
	now   func() time.Time
	lostC <-chan struct{} // from a discovery.LossNotifier, or nil

	rmu sync.Mutex // one renewal at a time: two compare-and-swaps would fence each other out

	mu         sync.Mutex
	validUntil time.Time
	lost       error // non-nil once lost

	stop context.CancelFunc
	done chan struct{}
}

// keep starts keeping l, just acquired at acquiredAt. Stop must be called (Release does).
func keep(ctx context.Context, l discovery.Lock, acquiredAt time.Time, log zerolog.Logger) *lease {
	ls := &lease{lock: l, ttl: l.TTL(), log: log, now: time.Now, done: make(chan struct{})}
	if n, ok := l.(discovery.LossNotifier); ok {
		ls.lostC = n.Lost()
	}
	if ls.ttl > 0 {
		ls.validUntil = acquiredAt.Add(ls.ttl)
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	ls.stop = stop
	if ls.ttl <= 0 {
		close(ls.done)
		return ls
	}
	go ls.run(rctx)
	return ls
}

func (ls *lease) run(ctx context.Context) {
	defer close(ls.done)
	t := time.NewTimer(ls.ttl / 3)
	defer t.Stop()
	for {
		ls.mu.Lock()
		deadline := ls.validUntil
		ls.mu.Unlock()
		left := deadline.Sub(ls.now())
		if left <= 0 {
			ls.markLost(fmt.Errorf("%w: no renewal succeeded within its %s lease (the holder was slow, paused or cut off)", discovery.ErrLockLost, ls.ttl))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ls.lostC:
			ls.markLost(fmt.Errorf("%w: the provider reports the lease gone", discovery.ErrLockLost))
			return
		case <-time.After(left):
			continue // re-check: lost unless a renewal landed meanwhile
		case <-t.C:
		}
		if err := ls.renew(ctx); err != nil {
			if errors.Is(err, discovery.ErrLockLost) || ctx.Err() != nil {
				return
			}
			ls.log.Warn().Err(err).Msg("renew bootstrap lock failed; retrying while the lease lasts")
			t.Reset(ls.ttl / 10)
			continue
		}
		t.Reset(ls.ttl / 3)
	}
}

// renew renews once; on success the lease covers TTL from the request's start.
func (ls *lease) renew(ctx context.Context) error {
	if err := ls.err(); err != nil {
		return err
	}
	ls.rmu.Lock()
	defer ls.rmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err // stopped while waiting for a hand-over
	}
	start := ls.now()
	rctx, cancel := context.WithTimeout(ctx, ls.ttl/3)
	err := ls.lock.Renew(rctx)
	cancel()
	if err != nil {
		if errors.Is(err, discovery.ErrLockLost) {
			ls.markLost(err)
		}
		return err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.lost != nil {
		return ls.lost
	}
	if until := start.Add(ls.ttl); until.After(ls.validUntil) {
		ls.validUntil = until
	}
	return nil
}

func (ls *lease) markLost(err error) {
	ls.mu.Lock()
	first := ls.lost == nil
	if first {
		ls.lost = err
	}
	ls.mu.Unlock()
	if first {
		ls.log.Warn().Err(err).Msg("bootstrap lock lost: this node stops acting on it")
	}
}

func (ls *lease) err() error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.lost == nil && ls.ttl > 0 && !ls.now().Before(ls.validUntil) {
		ls.lost = fmt.Errorf("%w: its %s lease ran out before it was renewed", discovery.ErrLockLost, ls.ttl)
	}
	return ls.lost
}

// Fresh checks that at least half of the lease is left, renewing it first when less is: the
// fence before a step that only the holder may take. The lease counts from the start of the
// last write that succeeded (the take or a renewal: each is a compare-and-swap), so a lock
// taken moments ago is as fresh as one just renewed and costs no renewal. It returns an
// error wrapping ErrLockLost when the lease is gone or too short to trust.
func (ls *lease) Fresh(ctx context.Context) error {
	if ls.ttl <= 0 {
		return nil
	}
	if err := ls.err(); err != nil {
		return err
	}
	if ls.left() >= ls.ttl/2 {
		return nil
	}
	if err := ls.renew(ctx); err != nil {
		if errors.Is(err, discovery.ErrLockLost) {
			return err
		}
		return fmt.Errorf("%w: renewal before acting failed: %w", discovery.ErrLockLost, err)
	}
	if err := ls.err(); err != nil {
		return err
	}
	if left := ls.left(); left < ls.ttl/2 {
		return fmt.Errorf("%w: only %s of the %s lease left after renewing (slow provider)", discovery.ErrLockLost, left.Round(time.Millisecond), ls.ttl)
	}
	return nil
}

// left is how much of the lease remains on this process's clock.
func (ls *lease) left() time.Duration {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.validUntil.Sub(ls.now())
}

// handOver registers m and releases the lock in one atomic step; the lock must be a
// RegisteringLock. Renewals are held off while the step runs and end with it when it
// succeeds; after an error the lease goes on (lost, when the lock was no longer ours).
func (ls *lease) handOver(ctx context.Context, rl discovery.RegisteringLock, m swarm.Member) error {
	if err := ls.err(); err != nil {
		return err
	}
	ls.rmu.Lock()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	err := rl.ReleaseRegistered(rctx, m)
	cancel()
	if err == nil {
		ls.stop() // before renewals may run again: a renewal of a released lock would fail
	} else if errors.Is(err, discovery.ErrLockLost) {
		ls.markLost(err)
	}
	ls.rmu.Unlock()
	if err != nil {
		return err
	}
	<-ls.done
	return nil
}

// Held reports whether the lease is still this holder's, without asking the provider.
func (ls *lease) Held() error { return ls.err() }

// Stop ends the renewals without releasing (the lock then expires by itself).
func (ls *lease) Stop() {
	ls.stop()
	<-ls.done
}

// Release stops the renewals and releases the lock, with its own deadline so that a cancelled
// boot still frees it.
func (ls *lease) Release(ctx context.Context) error {
	ls.Stop()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	return ls.lock.Release(rctx)
}
