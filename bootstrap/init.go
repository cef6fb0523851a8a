package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// lockAndInit takes the bootstrap lock, reads the registry again from its source of truth and
// creates the swarm only when no manager that may be alive exists, with a freshly renewed
// lease. The lease is renewed in the background for as long as the work lasts; publishing
// happens only under a lease that is still held.
func (b *booter) lockAndInit(ctx context.Context, res *Result, local LocalNode) (bool, error) {
	if b.d.Locker == nil {
		b.waiting = "a manager (this discovery provider cannot elect the first one)"
		return false, nil
	}
	b.d.Stage("taking the bootstrap lock")
	me := discovery.Holder{InstanceID: b.cfg.Identity.InstanceID, Addr: b.cfg.Identity.PrivateIP}
	ls, err := b.take(ctx, me)
	if err != nil || ls == nil {
		return false, err
	}
	// Release at the end unless this node's swarm exists but is not yet published: then the
	// lock is left to expire (its swarm port answering keeps others from taking it over). A
	// lock handed over with the registration is released already.
	keepLock, handedOver := false, false
	defer func() {
		if handedOver {
			return
		}
		if keepLock {
			ls.Stop()
			b.log.Warn().Msg("leaving the bootstrap lock to expire: this node's swarm exists but is not published")
			return
		}
		if err := ls.Release(ctx); err != nil {
			b.log.Warn().Err(err).Msg("release bootstrap lock (it will expire)")
		}
	}()

	// Look again, from the source of truth: a manager may have finished between our first
	// look and the lock, or be registered and silent. (A provider whose lock was taken by a
	// compare-and-swap conditioned on its own read of the registry answers with that read:
	// an unchanged lock proves no holder registered since; see route53.Provider.Registered.)
	var addrs []string
	if _, ok := b.d.Discoverer.(discovery.Registry); !ok {
		if addrs, err = b.d.Discoverer.Managers(ctx); err != nil {
			return false, fmt.Errorf("discover managers: %w", err)
		}
	}
	members, err := b.registered(ctx, addrs)
	if err != nil {
		return false, err
	}
	addrs = addrs[:0]
	for _, m := range members {
		addrs = append(addrs, memberAddr(m))
	}
	probes := b.probeAll(ctx, addrs)
	var answering []string
	for _, a := range sortedKeys(probes) {
		if probes[a].Answers {
			answering = append(answering, a)
		}
	}
	obs := Observation{Role: b.cfg.Role, Local: local.State, Managers: len(answering) > 0, Lock: LockAcquired}
	var why []string
	if !obs.Managers {
		var silent []swarm.Member
		silent, why = b.silentAlive(ctx, members, probes)
		obs.Registered = len(silent) > 0
	}
	if act := Decide(obs); act != ActInit {
		if obs.Managers {
			b.log.Info().Strs("managers", answering).Msg("a manager appeared while taking the lock; joining instead")
		} else {
			b.lastSilent = strings.Join(why, "; ")
			b.waiting = fmt.Sprintf("registered managers that do not answer on the swarm port and are not proven gone (%s); not creating a second swarm", b.lastSilent)
			b.log.Warn().Strs("registered", why).Msg("holding the bootstrap lock but registered managers may be alive: not initialising")
		}
		return false, nil
	}

	// The fence: init only with a lease just renewed and at least half of it left.
	if err := ls.Fresh(ctx); err != nil {
		b.waiting = "the bootstrap lock (this node's lease was lost before init)"
		b.log.Warn().Err(err).Msg("not initialising: the bootstrap lease is not fresh")
		return false, nil
	}
	b.d.Stage("initialising the swarm")
	b.log.Info().Str("advertise_addr", b.cfg.Identity.PrivateIP).Msg("initialising swarm")
	nodeID, err := b.d.Engine.Init(ctx, InitRequest{
		AdvertiseAddr: b.cfg.Identity.PrivateIP,
		ListenAddr:    "0.0.0.0:" + strconv.Itoa(b.cfg.SwarmPort),
		Autolock:      b.cfg.Autolock,
	})
	if err != nil {
		// The engine may have created the swarm and failed only to answer in time, or the
		// boot's own context may be what ended: ask with a context of its own.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		l, lerr := b.d.Engine.Local(cctx)
		cancel()
		switch {
		case lerr == nil && l.State == StateInactive:
			return false, fmt.Errorf("swarm init: %w", err)
		case lerr != nil || l.State != StateActive:
			keepLock = true
			state := "unknown"
			if lerr == nil {
				state = string(l.State)
			}
			return false, fmt.Errorf("swarm init answered %w and the engine's state is %s: keeping the bootstrap lock", err, state)
		}
		b.log.Warn().Err(err).Msg("swarm init answered with an error but the swarm exists: going on")
	}
	done, err := b.publish(ctx, &ls, me, &local, &handedOver)
	if !done {
		keepLock = true
		return true, err
	}
	if nodeID == "" {
		nodeID = local.NodeID
	}
	res.Action, res.NodeID = ActInit, nodeID
	b.log.Info().Str("node_id", nodeID).Msg("swarm initialised")
	return true, nil
}

// take tries the lock once; (nil, nil) means it is held elsewhere (b.waiting says by whom).
func (b *booter) take(ctx context.Context, me discovery.Holder) (*lease, error) {
	start := time.Now()
	lock, err := b.d.Locker.TryLock(ctx, me, b.alive)
	if errors.Is(err, discovery.ErrLockHeld) {
		b.log.Info().Err(err).Msg("bootstrap lock held elsewhere; waiting")
		b.waiting = "the node holding the bootstrap lock to create the swarm (" + err.Error() + ")"
		if b.lastSilent != "" {
			// What this boot last found in the registry is the reason it cannot init itself.
			b.waiting = fmt.Sprintf("registered managers that do not answer on the swarm port and are not proven gone (%s; the bootstrap lock is now held elsewhere: %v); not creating a second swarm", b.lastSilent, err)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("take bootstrap lock: %w", err)
	}
	b.log.Info().Dur("ttl", lock.TTL()).Msg("bootstrap lock acquired")
	return keep(ctx, lock, start, b.log), nil
}

// publish registers the new swarm's manager and publishes its tokens, retrying, each attempt
// under a held lease (retaken when it was lost: the swarm port answering keeps others off).
// Until this manager is findable nobody else can see the swarm, so the lock is not released
// before; if the boot ends first, the lock is left to expire. Where the lock can register
// the manager as it is released (RegisteringLock), the tokens are published first and the
// registration and the release are one atomic step (handedOver says it happened): the swarm
// is findable exactly from the moment its lock is free, and joiners find its tokens ready.
func (b *booter) publish(ctx context.Context, ls **lease, me discovery.Holder, local *LocalNode, handedOver *bool) (bool, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = b.cfg.PollMin, b.cfg.PollMax
	for attempt := 1; ; attempt++ {
		var err error
		if (*ls).Held() != nil {
			var nl *lease
			nl, err = b.take(ctx, me)
			switch {
			case err == nil && nl == nil:
				err = fmt.Errorf("%w: retaking it to publish: %s", discovery.ErrLockLost, b.waiting)
			case err == nil:
				(*ls).Stop()
				*ls = nl
			}
		}
		if err == nil {
			*local, err = b.d.Engine.Local(ctx)
			if err != nil {
				err = fmt.Errorf("read local swarm state after init: %w", err)
			} else {
				err = b.publishRegistered(ctx, *ls, *local, handedOver)
			}
		}
		if err == nil {
			return true, nil
		}
		b.log.Warn().Err(err).Int("attempt", attempt).Msg("swarm initialised but not yet published: retrying while holding the bootstrap lock")
		if !retryable(err) {
			return false, err
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("swarm initialised but not published before the boot ended (the bootstrap lock is left to expire): %w", err)
		case <-time.After(bo.NextBackOff()):
		}
	}
}

// publishRegistered runs afterJoin's steps for the manager that created the swarm, handing
// the lock over with the registration where the lock can.
func (b *booter) publishRegistered(ctx context.Context, ls *lease, local LocalNode, handedOver *bool) error {
	rl, ok := ls.lock.(discovery.RegisteringLock)
	if !ok || b.d.Registrar == nil || !local.IsManager {
		return b.afterJoin(ctx, local)
	}
	if err := b.publishAndLabel(ctx, local); err != nil {
		return err
	}
	b.d.Stage("registering in discovery and releasing the bootstrap lock")
	if err := ls.handOver(ctx, rl, b.member()); err != nil {
		return fmt.Errorf("register manager and release the bootstrap lock: %w", err)
	}
	*handedOver = true
	return nil
}
