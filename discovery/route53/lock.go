package route53

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// The bootstrap lock is a TXT record set "_swarm-agent-lock.NAME" whose one value is
// "owner=<instance id> addr=<private ip> n=<renewal> expires=<unix seconds>". Route 53 makes
// it atomic: CREATE fails when the set exists, and DELETE-exact plus CREATE in one batch is a
// compare-and-swap. The holder renews by swapping its own value for the next one; a renewal
// whose DELETE no longer matches means the lock was taken over, and the holder stops.
//
// The record is never deleted: a holder that is done swaps its value for a "released" one
// (state=released), in the same atomic batch that registers it when it created the swarm.
// So a lock record found unchanged by a compare-and-swap (CREATE where there was none,
// DELETE-exact of the value read) proves that no holder came and went since it was read,
// and the registry read with it is still what the lock's holders left (see Registered).
//
// Nobody trusts the holder's clock: another node counts the lease from the moment IT first
// saw the current value, on its own clock, and takes an expired lock over only when the
// holder is proven gone (discovery.AliveFunc). "expires" is for people reading the record.

type lockValue struct {
	owner    string
	addr     string
	n        int64
	expires  time.Time
	released bool // state=released: free to take (older agents read it as an expired lock)
}

func (v lockValue) txt() string {
	addr, state := "", ""
	if v.addr != "" {
		addr = " addr=" + v.addr
	}
	if v.released {
		state = " state=released"
	}
	return fmt.Sprintf(`"owner=%s%s n=%d expires=%d%s"`, v.owner, addr, v.n, v.expires.Unix(), state)
}

func parseLockValue(s string) (lockValue, error) {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	var v lockValue
	for f := range strings.FieldsSeq(s) {
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return lockValue{}, fmt.Errorf("lock value %q: field %q is not key=value", s, f)
		}
		switch k {
		case "owner":
			v.owner = val
		case "addr":
			v.addr = val
		case "n":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return lockValue{}, fmt.Errorf("lock value %q: n=%q is not a number", s, val)
			}
			v.n = n
		case "state":
			v.released = val == "released"
		case "expires":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return lockValue{}, fmt.Errorf("lock value %q: expires=%q is not unix seconds", s, val)
			}
			v.expires = time.Unix(n, 0)
		}
	}
	if v.owner == "" || v.expires.IsZero() {
		return lockValue{}, fmt.Errorf("lock value %q: want owner=ID expires=UNIX", s)
	}
	return v, nil
}

func (p *Provider) lockSet(v lockValue) *types.ResourceRecordSet {
	return &types.ResourceRecordSet{
		Name:            aws.String(p.LockName() + "."),
		Type:            types.RRTypeTxt,
		TTL:             aws.Int64(1),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(v.txt())}},
	}
}

// lockSetNow reads the lock's record set; nil when there is none.
func (p *Provider) lockSetNow(ctx context.Context) (*types.ResourceRecordSet, error) {
	r, err := p.readZone(ctx)
	if err != nil {
		return nil, err
	}
	return r.lock, nil
}

// sinceSeen records value as seen now if it differs from the last value seen, and returns
// how long (on this node's clock) the current value has stood unchanged.
func (p *Provider) sinceSeen(val string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if val != p.lockSeen {
		p.lockSeen, p.lockSeenAt = val, now
	}
	return now.Sub(p.lockSeenAt)
}

// unknownLock stands for a lock value this node has not read (its CREATE was refused).
const unknownLock = "?"

// heldNoCall says whether the lock is known to be held by another node for a while yet, so
// that TryLock need not ask Route 53: a value seen held cannot be taken over before it has
// stood LockTTL on this node's clock, and a holder that finishes is found through discovery
// (it registers as it releases). Skipping a read only ever makes taking the lock later.
func (p *Provider) heldNoCall() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lockSeen == "" || !p.now().Before(p.lockNextRead) {
		return nil
	}
	return fmt.Errorf("held by %s, seen %s ago (its lease cannot have run out yet): %w",
		p.lockHolder, p.now().Sub(p.lockSeenAt).Round(time.Second), discovery.ErrLockHeld)
}

// sawHeld remembers who holds the lock and when to look again.
func (p *Provider) sawHeld(who string, next time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lockHolder, p.lockNextRead = who, p.now().Add(next)
}

// TryLock takes the bootstrap lock for me, or returns an error wrapping discovery.ErrLockHeld
// naming the holder: while its value changed within the lock TTL (as this node saw it), or
// while alive says the holder of an unrenewed lock may be alive. It reads the zone once (the
// managers' record and the lock together) and takes the lock with one compare-and-swap
// conditioned on what it read; while a lock seen held cannot have expired yet it asks
// nothing.
func (p *Provider) TryLock(ctx context.Context, me discovery.Holder, alive discovery.AliveFunc) (discovery.Lock, error) {
	if err := p.heldNoCall(); err != nil {
		return nil, err
	}
	r, err := p.readZone(ctx)
	if err != nil {
		return nil, err
	}
	// Another cluster's lock is not this node's to take: refused before any write. A name
	// that nobody owns yet is claimed in the batch that takes the lock.
	claim, err := p.claim(r)
	if err != nil {
		return nil, err
	}
	l, err := p.tryLock(ctx, me, alive, r.lock, claim)
	if err != nil {
		return nil, err
	}
	// Only a lock taken from a released value pins the read for Registered: a release is
	// written in the same batch as the registration, so nothing registered by a holder can
	// be missing from it. A record that was absent proves less: an agent of an older version
	// (or a person) deletes it, so the lock taker reads the registry again.
	pin := false
	if r.lock != nil {
		v, perr := parseLockValue(value(*r.lock))
		pin = perr == nil && v.released
	}
	p.mu.Lock()
	p.lockSeen, p.lockHolder = "", ""
	p.pinned = pin && p.last == r
	p.mu.Unlock()
	return l, nil
}

func (p *Provider) tryLock(ctx context.Context, me discovery.Holder, alive discovery.AliveFunc, cur *types.ResourceRecordSet, claim *types.Change) (*lock, error) {
	if cur == nil {
		mine := p.nextValue(me, 0)
		err := p.change(ctx, "take bootstrap lock", withClaim(claim, []types.Change{{Action: types.ChangeActionCreate, ResourceRecordSet: p.lockSet(mine)}})...)
		if err == nil {
			p.log.Debug().Str("owner", me.InstanceID).Msg("bootstrap lock created")
			return &lock{p: p, v: mine, me: me}, nil
		}
		if !isBatchConflict(err) {
			return nil, err
		}
		// Another node created it since the read (or claimed the name, which is no less a
		// reason to look again later): its value is not known here, so its lease is timed
		// from the next read; that read comes after a third of the TTL.
		p.sinceSeen(unknownLock)
		p.sawHeld("another node (it created the lock first)", p.cfg.LockTTL/3)
		return nil, fmt.Errorf("another node took the bootstrap lock first: %w", discovery.ErrLockHeld)
	}
	held, perr := parseLockValue(value(*cur))
	switch {
	case perr == nil && held.owner == me.InstanceID:
		// Ours from an earlier run of this node (it restarted), or released by it: take it.
		return p.swap(ctx, *cur, p.nextValue(me, held.n+1), claim)
	case perr == nil && held.released:
		return p.swap(ctx, *cur, p.nextValue(me, held.n+1), claim)
	}
	standing := p.sinceSeen(value(*cur))
	who := "an unreadable lock record"
	if perr == nil {
		who = held.owner
		if held.addr != "" {
			who += " (" + held.addr + ")"
		}
	}
	if standing < p.cfg.LockTTL {
		p.sawHeld(who, p.cfg.LockTTL-standing)
		return nil, fmt.Errorf("held by %s, renewed within the last %s: %w", who, p.cfg.LockTTL, discovery.ErrLockHeld)
	}
	if perr != nil {
		p.log.Warn().Err(perr).Msg("bootstrap lock record is unreadable and unchanged for a whole lock TTL: replacing it")
	} else {
		if ok, why := alive(ctx, discovery.Holder{InstanceID: held.owner, Addr: held.addr}); ok {
			p.sawHeld(who, p.cfg.LockTTL/3)
			return nil, fmt.Errorf("held by %s, not renewed for %s, but the holder may be alive (%s): %w",
				held.owner, standing.Round(time.Second), why, discovery.ErrLockHeld)
		}
		p.log.Info().Str("owner", held.owner).Dur("unrenewed_for", standing).Msg("bootstrap lock expired and its holder is gone: taking it over")
	}
	return p.swap(ctx, *cur, p.nextValue(me, 0), claim)
}

func (p *Provider) nextValue(me discovery.Holder, n int64) lockValue {
	return lockValue{owner: me.InstanceID, addr: me.Addr, n: n, expires: p.now().Add(p.cfg.LockTTL).Truncate(time.Second)}
}

// swap replaces exactly cur with mine in one batch (with the claim of the name, if any);
// losing the race means the lock is held.
func (p *Provider) swap(ctx context.Context, cur types.ResourceRecordSet, mine lockValue, claim *types.Change) (*lock, error) {
	err := p.change(ctx, "take over bootstrap lock", withClaim(claim, []types.Change{
		{Action: types.ChangeActionDelete, ResourceRecordSet: &cur},
		{Action: types.ChangeActionCreate, ResourceRecordSet: p.lockSet(mine)}})...)
	if err == nil {
		return &lock{p: p, v: mine, me: discovery.Holder{InstanceID: mine.owner, Addr: mine.addr}}, nil
	}
	if isBatchConflict(err) {
		return nil, fmt.Errorf("another node took the bootstrap lock first: %w", discovery.ErrLockHeld)
	}
	return nil, err
}

type lock struct {
	p  *Provider
	me discovery.Holder
	v  lockValue // the value this holder last wrote
}

// TTL is the lease's length.
func (l *lock) TTL() time.Duration { return l.p.cfg.LockTTL }

// Renew swaps this holder's value for the next one. When the DELETE no longer matches, the
// record is read: still this instance's (an earlier renewal applied although its answer was
// lost) means renewed; anything else means the lock is lost.
func (l *lock) Renew(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		next := l.p.nextValue(l.me, l.v.n+1)
		err := l.p.change(ctx, "renew bootstrap lock",
			types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: l.p.lockSet(l.v)},
			types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: l.p.lockSet(next)})
		if err == nil {
			l.v = next
			return nil
		}
		cur, err := l.afterRefusal(ctx, err)
		if err != nil {
			return err
		}
		if cur != nil && attempt == 0 {
			if held, perr := parseLockValue(value(*cur)); perr == nil && held.owner == l.me.InstanceID {
				l.v = held
				continue
			}
		}
		return fmt.Errorf("%w: the lock record is no longer this node's", discovery.ErrLockLost)
	}
}

// afterRefusal reads the lock record after Route 53 refused a batch of this holder's; any
// other error comes back as it is.
func (l *lock) afterRefusal(ctx context.Context, err error) (*types.ResourceRecordSet, error) {
	if !isBatchConflict(err) {
		return nil, err
	}
	cur, rerr := l.p.lockSetNow(ctx)
	if rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	return cur, nil
}

// Release swaps exactly the lock this node wrote for a released value (never a DELETE: see
// the top of this file); if it was taken over, the swap does not match and the other node's
// lock stays.
func (l *lock) Release(ctx context.Context) error {
	err := l.p.change(ctx, "release bootstrap lock", l.releaseChanges()...)
	if err != nil && isBatchConflict(err) {
		l.p.log.Warn().Msg("bootstrap lock was no longer ours at release")
		return nil
	}
	return err
}

func (l *lock) releaseChanges() []types.Change {
	done := l.v
	done.n++
	done.expires = l.p.now().Truncate(time.Second)
	done.released = true
	return []types.Change{
		{Action: types.ChangeActionDelete, ResourceRecordSet: l.p.lockSet(l.v)},
		{Action: types.ChangeActionCreate, ResourceRecordSet: l.p.lockSet(done)},
	}
}

// ReleaseRegistered registers m and releases the lock in one atomic batch: the new swarm
// becomes findable at the moment its lock is given up, never before and never after. It
// starts from this boot's latest zone read; when Route 53 refuses the batch it reads again:
// a lock still this node's means only the registration part was stale, so it registers on
// its own and then releases; a lock no longer this node's gives an error wrapping
// discovery.ErrLockLost and changes nothing.
func (l *lock) ReleaseRegistered(ctx context.Context, m swarm.Member) error {
	var sets []types.ResourceRecordSet
	var claim *types.Change
	if r := l.p.recent(l.p.cfg.LockTTL); r != nil {
		sets = r.managers
		var err error
		if claim, err = l.p.claim(r); err != nil {
			return err
		}
	}
	reg, err := l.p.registration(m, sets)
	if err != nil {
		return err
	}
	err = l.p.change(ctx, "register manager "+m.InstanceID+" and release bootstrap lock", withClaim(claim, append(reg, l.releaseChanges()...))...)
	if err == nil {
		if len(reg) > 0 {
			l.p.logRegistered(m, reg)
		}
		return nil
	}
	cur, err := l.afterRefusal(ctx, err)
	if err != nil {
		return err
	}
	if cur == nil || value(*cur) != l.v.txt() {
		return fmt.Errorf("%w: the lock record is no longer this node's at release", discovery.ErrLockLost)
	}
	if err := l.p.Register(ctx, m); err != nil {
		return err
	}
	return l.Release(ctx)
}
