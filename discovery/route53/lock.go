package route53

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/swarm-agent/swarm-agent/bootstrap"
)

// The bootstrap lock is a TXT record set "_swarm-agent-lock.NAME" whose one value is
// "owner=<instance id> expires=<unix seconds>". Route 53 makes it atomic: CREATE fails when
// the set exists, and DELETE-exact plus CREATE in one batch is a compare-and-swap, so an
// expired lock is taken over by exactly one node. Holders' clocks are assumed to agree within
// a small fraction of the lock TTL (NTP, as on EC2).

type lockValue struct {
	owner   string
	expires time.Time
}

func (v lockValue) txt() string {
	return fmt.Sprintf(`"owner=%s expires=%d"`, v.owner, v.expires.Unix())
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

// TryLock takes the bootstrap lock for owner, or returns bootstrap.ErrLockHeld (wrapped,
// naming the holder) while another node holds an unexpired lock.
func (p *Provider) TryLock(ctx context.Context, owner string) (bootstrap.Lock, error) {
	mine := lockValue{owner: owner, expires: p.now().Add(p.cfg.LockTTL).Truncate(time.Second)}
	err := p.change(ctx, "take bootstrap lock", types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: p.lockSet(mine)})
	if err == nil {
		p.log.Debug().Str("owner", owner).Msg("bootstrap lock created")
		return &lock{p: p, v: mine}, nil
	}
	if !isBatchConflict(err) {
		return nil, err
	}
	sets, err := p.sets(ctx, p.LockName(), types.RRTypeTxt)
	if err != nil {
		return nil, err
	}
	if len(sets) == 0 {
		// Released between our CREATE and our read: let the next round try again.
		return nil, fmt.Errorf("bootstrap lock changed while taking it: %w", bootstrap.ErrLockHeld)
	}
	cur := sets[0]
	held, perr := parseLockValue(value(cur))
	if perr == nil && held.owner == owner {
		// Ours from an earlier run of this node (e.g. it restarted): take it over.
		return p.swap(ctx, cur, mine)
	}
	if perr == nil && p.now().Before(held.expires) {
		return nil, fmt.Errorf("held by %s until %s: %w", held.owner, held.expires.UTC().Format(time.RFC3339), bootstrap.ErrLockHeld)
	}
	if perr != nil {
		p.log.Warn().Err(perr).Msg("bootstrap lock record is unreadable: replacing it")
	} else {
		p.log.Info().Str("owner", held.owner).Time("expired", held.expires).Msg("bootstrap lock expired: taking it over")
	}
	return p.swap(ctx, cur, mine)
}

// swap replaces exactly cur with mine in one batch; losing the race means the lock is held.
func (p *Provider) swap(ctx context.Context, cur types.ResourceRecordSet, mine lockValue) (bootstrap.Lock, error) {
	err := p.change(ctx, "take over bootstrap lock",
		types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: &cur},
		types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: p.lockSet(mine)})
	if err == nil {
		return &lock{p: p, v: mine}, nil
	}
	if isBatchConflict(err) {
		return nil, fmt.Errorf("another node took the bootstrap lock first: %w", bootstrap.ErrLockHeld)
	}
	return nil, err
}

type lock struct {
	p *Provider
	v lockValue
}

// Release deletes exactly the lock this node wrote; if it expired and another node took it
// over, the DELETE does not match and the other node's lock stays.
func (l *lock) Release(ctx context.Context) error {
	err := l.p.change(ctx, "release bootstrap lock", types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: l.p.lockSet(l.v)})
	if err != nil && isBatchConflict(err) {
		l.p.log.Warn().Msg("bootstrap lock was no longer ours at release (it had expired)")
		return nil
	}
	return err
}
