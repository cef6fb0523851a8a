package consul

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/swarm-agent/swarm-agent/bootstrap"
)

// lockDelay is the session's lock-delay: after a holder's session is invalidated (its TTL ran
// out) nobody may take the lock for this long. It is short because a holder that lost its
// session cannot init a swarm anyway, and a dead holder should block the cluster for no more
// than about twice the TTL (Consul may wait up to 2*TTL before it expires a session).
const lockDelay = time.Second

// LockKey is the KV key of the bootstrap lock.
func (p *Provider) LockKey() string { return p.cfg.Prefix + "/bootstrap-lock" }

// TryLock takes the bootstrap lock for owner: a session with the configured TTL, and a KV
// acquire of PREFIX/bootstrap-lock holding owner. It returns an error wrapping
// bootstrap.ErrLockHeld when another session holds the key. While held, the session is renewed
// by a goroutine that Release stops; a holder that dies loses the lock when its session expires.
func (p *Provider) TryLock(ctx context.Context, owner string) (bootstrap.Lock, error) {
	key := p.LockKey()
	need := "session write and key write on " + key
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	wo := (&api.WriteOptions{}).WithContext(cctx)
	id, _, err := p.c.Session().Create(&api.SessionEntry{
		Name:      "swarm-agent bootstrap lock: " + owner,
		TTL:       p.cfg.LockTTL.String(),
		Behavior:  api.SessionBehaviorDelete,
		LockDelay: lockDelay,
	}, wo)
	if err != nil {
		return nil, p.fail("create session for lock "+key, need, err)
	}
	ok, _, err := p.c.KV().Acquire(&api.KVPair{Key: key, Value: []byte(owner), Session: id}, wo)
	if err != nil || !ok {
		p.destroySession(ctx, id)
	}
	if err != nil {
		return nil, p.fail("acquire lock "+key, need, err)
	}
	if !ok {
		return nil, fmt.Errorf("consul: acquire lock %s: %s: %w", key, p.holder(cctx, key), bootstrap.ErrLockHeld)
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l := &lock{p: p, key: key, session: id, owner: owner, stop: stop, done: make(chan struct{})}
	go l.renew(rctx)
	p.log.Debug().Str("key", key).Str("owner", owner).Msg("bootstrap lock acquired in consul")
	return l, nil
}

// holder describes who holds key, for the error of a failed acquire.
func (p *Provider) holder(ctx context.Context, key string) string {
	pair, _, err := p.c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	switch {
	case err != nil || pair == nil:
		return "held by another session"
	case pair.Session == "":
		return fmt.Sprintf("%s released it or lost its session moments ago (lock-delay)", pair.Value)
	}
	return fmt.Sprintf("held by %s", pair.Value)
}

func (p *Provider) destroySession(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	if _, err := p.c.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		p.log.Warn().Err(err).Msg("destroy consul session (it will expire)")
	}
}

// lock is a held bootstrap lock. It owns the goroutine that renews its session.
type lock struct {
	p       *Provider
	key     string
	session string
	owner   string
	stop    context.CancelFunc
	done    chan struct{} // closed when renew returns

	once sync.Once
	err  error
}

// renew keeps the session alive until ctx ends or the session is gone. It renews three times
// per TTL, so that one failed renewal does not lose the lock.
func (l *lock) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.p.cfg.LockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, callTimeout)
		entry, _, err := l.p.c.Session().Renew(l.session, (&api.WriteOptions{}).WithContext(rctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.p.log.Warn().Err(err).Str("key", l.key).Msg("renew bootstrap lock session; will retry")
		case entry == nil:
			l.p.log.Warn().Str("key", l.key).Msg("bootstrap lock session expired: the lock is lost")
			return
		}
	}
}

// stopRenewing ends the renewal without releasing anything, as if the holder had died.
func (l *lock) stopRenewing() {
	l.stop()
	<-l.done
}

// Release stops the renewal, releases the key (no lock-delay for the next holder) and destroys
// the session. Releasing twice does nothing.
func (l *lock) Release(ctx context.Context) error {
	l.once.Do(func() {
		l.stopRenewing()
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		wo := (&api.WriteOptions{}).WithContext(ctx)
		var errs []error
		if _, _, err := l.p.c.KV().Release(&api.KVPair{Key: l.key, Value: []byte(l.owner), Session: l.session}, wo); err != nil {
			errs = append(errs, l.p.fail("release lock "+l.key, "key write on "+l.key, err))
		}
		// Destroying the session also deletes the key if the release above failed.
		if _, err := l.p.c.Session().Destroy(l.session, wo); err != nil {
			errs = append(errs, l.p.fail("destroy session of lock "+l.key, "session write", err))
		}
		l.err = errors.Join(errs...)
		if l.err == nil {
			l.p.log.Debug().Str("key", l.key).Msg("bootstrap lock released in consul")
		}
	})
	return l.err
}
