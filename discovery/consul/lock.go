package consul

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/retry"
)

// maxLockDelay is Consul's ceiling for a session's lock-delay.
const maxLockDelay = 60 * time.Second

// LockKey is the KV key of the bootstrap lock.
func (p *Provider) LockKey() string { return p.cfg.Prefix + "/bootstrap-lock" }

// HolderKey is the KV key naming the last node that held the bootstrap lock and may still be
// acting on it ("owner=<instance id> addr=<ip>"). It outlives the holder's session, so that
// whoever takes the lock after a holder lost its session checks that holder first.
func (p *Provider) HolderKey() string { return p.cfg.Prefix + "/bootstrap-lock-holder" }

// lockDelay is the session's lock-delay: after a holder's session is invalidated nobody may
// take the lock for this long, at least the TTL (Consul's ceiling is 60 s), so that a holder
// that was slow has a whole lease's time to notice the loss before anyone else acts.
func (p *Provider) lockDelay() time.Duration { return min(p.cfg.LockTTL, maxLockDelay) }

// TryLock takes the bootstrap lock for me: a session with the configured TTL, and a KV acquire
// of PREFIX/bootstrap-lock. It returns an error wrapping discovery.ErrLockHeld when another
// session holds the key, or when the last holder (HolderKey) is another node that alive says
// may still be acting on the lock. The lock is a lease: the boot loop renews its session;
// Lost tells at once (a blocking query on the key) when the session is gone.
func (p *Provider) TryLock(ctx context.Context, me discovery.Holder, alive discovery.AliveFunc) (discovery.Lock, error) {
	key := p.LockKey()
	need := "session write and key write on " + key
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	wo := (&api.WriteOptions{}).WithContext(cctx)
	id, _, err := p.c.Session().Create(&api.SessionEntry{
		Name:      "swarm-agent bootstrap lock: " + me.InstanceID,
		TTL:       p.cfg.LockTTL.String(),
		Behavior:  api.SessionBehaviorDelete,
		LockDelay: p.lockDelay(),
	}, wo)
	if err != nil {
		return nil, p.fail("create session for lock "+key, need, err)
	}
	ok, _, err := p.c.KV().Acquire(&api.KVPair{Key: key, Value: []byte(me.InstanceID), Session: id}, wo)
	if err != nil || !ok {
		p.destroySession(ctx, id)
	}
	if err != nil {
		return nil, p.fail("acquire lock "+key, need, err)
	}
	if !ok {
		return nil, fmt.Errorf("consul: acquire lock %s: %s: %w", key, p.holder(cctx, key), discovery.ErrLockHeld)
	}
	l := &lock{p: p, key: key, session: id, me: me, lost: make(chan struct{})}
	if err := p.checkLastHolder(cctx, me, alive); err != nil {
		_ = l.Release(ctx)
		return nil, err
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l.stop, l.done = stop, make(chan struct{})
	go l.watch(rctx)
	p.log.Debug().Str("key", key).Str("owner", me.InstanceID).Msg("bootstrap lock acquired in consul")
	return l, nil
}

// checkLastHolder refuses the lock while the last holder is another node that may be alive,
// and otherwise records me as the holder.
func (p *Provider) checkLastHolder(ctx context.Context, me discovery.Holder, alive discovery.AliveFunc) error {
	hk := p.HolderKey()
	pair, _, err := p.c.KV().Get(hk, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return p.fail("read "+hk, "key read on "+hk, err)
	}
	if pair != nil {
		prev := parseHolder(string(pair.Value))
		if prev.InstanceID != "" && prev.InstanceID != me.InstanceID {
			if ok, why := alive(ctx, prev); ok {
				return fmt.Errorf("consul: the last holder of %s, %s, lost its session but may be alive (%s): %w",
					p.LockKey(), prev.InstanceID, why, discovery.ErrLockHeld)
			}
			p.log.Info().Str("owner", prev.InstanceID).Msg("last bootstrap lock holder is gone: taking the lock")
		}
	}
	v := "owner=" + me.InstanceID + " addr=" + me.Addr
	if _, err := p.c.KV().Put(&api.KVPair{Key: hk, Value: []byte(v)}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return p.fail("write "+hk, "key write on "+hk, err)
	}
	return nil
}

func parseHolder(s string) discovery.Holder {
	var h discovery.Holder
	for f := range strings.FieldsSeq(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "owner":
			h.InstanceID = v
		case "addr":
			h.Addr = v
		}
	}
	return h
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

// lock is a held bootstrap lock. It owns the goroutine that watches its key.
type lock struct {
	p       *Provider
	key     string
	session string
	me      discovery.Holder

	stop     context.CancelFunc // nil until the watch starts
	done     chan struct{}      // closed when watch returns
	lost     chan struct{}      // closed when the session no longer holds the key
	lostOnce sync.Once

	once sync.Once
	err  error
}

// TTL is the session's TTL.
func (l *lock) TTL() time.Duration { return l.p.cfg.LockTTL }

// Lost is closed once the key is no longer held by this lock's session.
func (l *lock) Lost() <-chan struct{} { return l.lost }

func (l *lock) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// Renew renews the session; a session Consul no longer knows means the lock is lost.
func (l *lock) Renew(ctx context.Context) error {
	entry, _, err := l.p.c.Session().Renew(l.session, (&api.WriteOptions{}).WithContext(ctx))
	switch {
	case err != nil && strings.Contains(err.Error(), "404"):
		l.markLost()
		return fmt.Errorf("%w: consul session %s is gone", discovery.ErrLockLost, l.session)
	case err != nil:
		return l.p.fail("renew session of lock "+l.key, "session write", err)
	case entry == nil:
		l.markLost()
		return fmt.Errorf("%w: consul session %s is gone", discovery.ErrLockLost, l.session)
	}
	return nil
}

// watch follows the lock key with blocking queries and marks the lock lost the moment the key
// is gone or held by another session.
func (l *lock) watch(ctx context.Context) {
	defer close(l.done)
	var index uint64
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx)
		pair, meta, err := l.p.c.KV().Get(l.key, q)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !retry.Sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if pair == nil || pair.Session != l.session {
			l.markLost()
			return
		}
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
	}
}

// stopWatching ends the watch without releasing anything, as if the holder had died.
func (l *lock) stopWatching() {
	if l.stop != nil {
		l.stop()
		<-l.done
	}
}

// Release stops the watch, clears the holder key if it names this node, releases the key (no
// lock-delay for the next holder) and destroys the session. Releasing twice does nothing.
func (l *lock) Release(ctx context.Context) error {
	l.once.Do(func() {
		l.stopWatching()
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		wo := (&api.WriteOptions{}).WithContext(ctx)
		var errs []error
		hk := l.p.HolderKey()
		if pair, _, err := l.p.c.KV().Get(hk, (&api.QueryOptions{}).WithContext(ctx)); err == nil && pair != nil &&
			parseHolder(string(pair.Value)).InstanceID == l.me.InstanceID {
			if _, _, err := l.p.c.KV().DeleteCAS(pair, wo); err != nil {
				errs = append(errs, l.p.fail("clear "+hk, "key write on "+hk, err))
			}
		}
		if _, _, err := l.p.c.KV().Release(&api.KVPair{Key: l.key, Value: []byte(l.me.InstanceID), Session: l.session}, wo); err != nil {
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
