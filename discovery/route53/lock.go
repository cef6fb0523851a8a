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
)

// The bootstrap lock is a TXT record set "_swarm-agent-lock.NAME" whose one value is
// "owner=<instance id> addr=<private ip> n=<renewal> expires=<unix seconds>". Route 53 makes
// it atomic: CREATE fails when the set exists, and DELETE-exact plus CREATE in one batch is a
// compare-and-swap. The holder renews by swapping its own value for the next one; a renewal
// whose DELETE no longer matches means the lock was taken over, and the holder stops.
//
// Nobody trusts the holder's clock: another node counts the lease from the moment IT first
// saw the current value, on its own clock, and takes an expired lock over only when the
// holder is proven gone (discovery.AliveFunc). "expires" is for people reading the record.

type lockValue struct {
	owner   string
	addr    string
	n       int64
	expires time.Time
}

func (v lockValue) txt() string {
	addr := ""
	if v.addr != "" {
		addr = " addr=" + v.addr
	}
	return fmt.Sprintf(`"owner=%s%s n=%d expires=%d"`, v.owner, addr, v.n, v.expires.Unix())
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
	sets, err := p.sets(ctx, p.LockName(), types.RRTypeTxt)
	if err != nil || len(sets) == 0 {
		return nil, err
	}
	return &sets[0], nil
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

// TryLock takes the bootstrap lock for me, or returns an error wrapping discovery.ErrLockHeld
// naming the holder: while its value changed within the lock TTL (as this node saw it), or
// while alive says the holder of an unrenewed lock may be alive.
func (p *Provider) TryLock(ctx context.Context, me discovery.Holder, alive discovery.AliveFunc) (discovery.Lock, error) {
	mine := p.nextValue(me, 0)
	err := p.change(ctx, "take bootstrap lock", types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: p.lockSet(mine)})
	if err == nil {
		p.log.Debug().Str("owner", me.InstanceID).Msg("bootstrap lock created")
		return &lock{p: p, v: mine, me: me}, nil
	}
	if !isBatchConflict(err) {
		return nil, err
	}
	cur, err := p.lockSetNow(ctx)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		// Released between our CREATE and our read: let the next round try again.
		return nil, fmt.Errorf("bootstrap lock changed while taking it: %w", discovery.ErrLockHeld)
	}
	held, perr := parseLockValue(value(*cur))
	if perr == nil && held.owner == me.InstanceID {
		// Ours from an earlier run of this node (it restarted): take it over.
		return p.swap(ctx, *cur, p.nextValue(me, held.n+1))
	}
	standing := p.sinceSeen(value(*cur))
	if standing < p.cfg.LockTTL {
		who := "an unreadable lock record"
		if perr == nil {
			who = held.owner
			if held.addr != "" {
				who += " (" + held.addr + ")"
			}
		}
		return nil, fmt.Errorf("held by %s, renewed within the last %s: %w", who, p.cfg.LockTTL, discovery.ErrLockHeld)
	}
	if perr != nil {
		p.log.Warn().Err(perr).Msg("bootstrap lock record is unreadable and unchanged for a whole lock TTL: replacing it")
	} else {
		if ok, why := alive(ctx, discovery.Holder{InstanceID: held.owner, Addr: held.addr}); ok {
			return nil, fmt.Errorf("held by %s, not renewed for %s, but the holder may be alive (%s): %w",
				held.owner, standing.Round(time.Second), why, discovery.ErrLockHeld)
		}
		p.log.Info().Str("owner", held.owner).Dur("unrenewed_for", standing).Msg("bootstrap lock expired and its holder is gone: taking it over")
	}
	return p.swap(ctx, *cur, p.nextValue(me, 0))
}

func (p *Provider) nextValue(me discovery.Holder, n int64) lockValue {
	return lockValue{owner: me.InstanceID, addr: me.Addr, n: n, expires: p.now().Add(p.cfg.LockTTL).Truncate(time.Second)}
}

// swap replaces exactly cur with mine in one batch; losing the race means the lock is held.
func (p *Provider) swap(ctx context.Context, cur types.ResourceRecordSet, mine lockValue) (discovery.Lock, error) {
	err := p.change(ctx, "take over bootstrap lock",
		types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: &cur},
		types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: p.lockSet(mine)})
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
		if !isBatchConflict(err) {
			return err
		}
		cur, rerr := l.p.lockSetNow(ctx)
		if rerr != nil {
			return errors.Join(err, rerr)
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

// Release deletes exactly the lock this node wrote; if it was taken over, the DELETE does not
// match and the other node's lock stays.
func (l *lock) Release(ctx context.Context) error {
	err := l.p.change(ctx, "release bootstrap lock", types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: l.p.lockSet(l.v)})
	if err != nil && isBatchConflict(err) {
		l.p.log.Warn().Msg("bootstrap lock was no longer ours at release")
		return nil
	}
	return err
}
