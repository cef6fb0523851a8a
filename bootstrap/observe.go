package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// observed is what one round saw of the managers.
type observed struct {
	// answering are the managers (host:port, not this node) that accept a connection.
	answering []string
	// silent are registered managers that do not answer and are not proven gone, with why
	// each counts as possibly alive.
	silent    []swarm.Member
	silentWhy []string
	// membership compares this node's swarm with the answering managers'.
	membership Membership
	// clusterIDs are the cluster ids the answering managers presented.
	clusterIDs []string
}

// observe asks discovery for the managers and each of them who it is; alongside (nil for
// none) starts once discovery named managers, to run while they are probed.
func (b *booter) observe(ctx context.Context, local LocalNode, alongside func()) (observed, error) {
	var o observed
	addrs, err := b.d.Discoverer.Managers(ctx)
	if err != nil {
		if errors.Is(err, discovery.ErrDiscoveryConfig) {
			return o, permanent{err}
		}
		return o, fmt.Errorf("discover managers: %w", err)
	}
	if alongside != nil && len(addrs) > 0 {
		alongside()
	}
	probes := b.probeAll(ctx, addrs)
	ids := map[string]bool{}
	var silent []string
	for _, a := range sortedKeys(probes) {
		p := probes[a]
		if !p.Answers {
			silent = append(silent, a)
			continue
		}
		o.answering = append(o.answering, a)
		if p.ClusterID != "" && !ids[p.ClusterID] {
			ids[p.ClusterID] = true
			o.clusterIDs = append(o.clusterIDs, p.ClusterID)
		}
	}
	switch local.State {
	case StateActive, StatePending, StateError:
		o.membership = b.membership(ctx, local, o.answering, ids)
	case StateInactive:
		if len(o.answering) == 0 && len(silent) > 0 {
			if b.cfg.Role != swarm.RoleManager {
				// Workers never init: they wait either way, and make no API call for it.
				for _, a := range silent {
					o.silent = append(o.silent, swarm.Member{Addr: a})
					o.silentWhy = append(o.silentWhy, a+" does not answer")
				}
				break
			}
			members, err := b.registered(ctx, addrs)
			if err != nil {
				return o, err
			}
			o.silent, o.silentWhy = b.silentAlive(ctx, members, probes)
		}
	}
	return o, nil
}

// registered reads the registry from its source of truth when discovery has one, else takes
// the discovered addresses as registered managers without instance ids.
func (b *booter) registered(ctx context.Context, addrs []string) ([]swarm.Member, error) {
	if r, ok := b.d.Discoverer.(discovery.Registry); ok {
		ms, err := r.Registered(ctx)
		if err != nil {
			if errors.Is(err, discovery.ErrDiscoveryConfig) {
				return nil, permanent{err}
			}
			return nil, fmt.Errorf("read registered managers: %w", err)
		}
		return ms, nil
	}
	ms := make([]swarm.Member, 0, len(addrs))
	for _, a := range addrs {
		ms = append(ms, swarm.Member{Addr: a})
	}
	return ms, nil
}

// silentAlive keeps the registered managers (not this node) that do not answer and that
// nothing proves gone, with the reason for each.
func (b *booter) silentAlive(ctx context.Context, members []swarm.Member, probes map[string]Probe) ([]swarm.Member, []string) {
	var out []swarm.Member
	var why []string
	for _, m := range members {
		addr := b.withPort(memberAddr(m))
		if b.isSelf(addr) || (m.InstanceID != "" && m.InstanceID == b.cfg.Identity.InstanceID) {
			continue
		}
		p, ok := probes[addr]
		if !ok {
			p = b.d.Probe(ctx, addr)
		}
		if p.Answers {
			out = append(out, m)
			why = append(why, addr+" answers")
			continue
		}
		alive, reason := b.alive(ctx, discovery.Holder{InstanceID: m.InstanceID})
		if !alive {
			b.log.Info().Str("manager_addr", addr).Str("instance_id", m.InstanceID).Str("reason", reason).Msg("registered manager is gone: not counted")
			continue
		}
		out = append(out, m)
		why = append(why, fmt.Sprintf("%s does not answer but %s", addr, reason))
	}
	return out, why
}

func memberAddr(m swarm.Member) string {
	if m.Port != 0 {
		return net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))
	}
	return m.Addr
}

// alive tells whether a lock holder or a registered manager may still be alive. Only proof
// counts as gone: its swarm port silent AND EC2 saying its instance is gone (or, without EC2,
// its swarm port silent).
func (b *booter) alive(ctx context.Context, h discovery.Holder) (bool, string) {
	if h.Addr != "" {
		if p := b.d.Probe(ctx, b.withPort(h.Addr)); p.Answers {
			return true, "its swarm port answers"
		}
	}
	if b.d.InstanceGone == nil || h.InstanceID == "" {
		if h.InstanceID == "" && h.Addr == "" {
			return true, "no instance id is recorded to check it against"
		}
		return false, "its swarm port does not answer (no EC2 source to ask)"
	}
	gone, err := b.d.InstanceGone(ctx, h.InstanceID)
	switch {
	case err != nil:
		return true, fmt.Sprintf("EC2 could not say whether instance %s is gone (%v)", h.InstanceID, err)
	case !gone:
		return true, fmt.Sprintf("its instance %s is still running (EC2)", h.InstanceID)
	}
	return false, fmt.Sprintf("its instance %s is gone (EC2) and its swarm port does not answer", h.InstanceID)
}

// membership decides from the managers' certificates whether this node's swarm is the
// cluster's. Proof only: a manager presenting this node's cluster id (or one the engine lists
// as its own remote manager) makes it the same swarm; answering managers that all present
// another id make it foreign; anything else is unproven.
func (b *booter) membership(ctx context.Context, local LocalNode, answering []string, ids map[string]bool) Membership {
	if len(answering) == 0 {
		return MemberUnknown
	}
	mine := local.ClusterID
	if mine == "" {
		mine = local.CertClusterID
	}
	for _, a := range answering {
		if slices.Contains(local.RemoteManagers, a) && (mine == "" || ids[mine] || len(ids) == 0) {
			return MemberSame
		}
	}
	if mine == "" {
		// A worker without its certificate at hand: ask the managers its engine knows.
		for _, a := range local.RemoteManagers {
			if b.isSelf(a) {
				continue
			}
			if p := b.d.Probe(ctx, a); p.ClusterID != "" {
				mine = p.ClusterID
				break
			}
		}
	}
	switch {
	case mine == "" || len(ids) == 0:
		return MemberUnproven
	case ids[mine]:
		return MemberSame
	}
	return MemberForeign
}

// probeAll probes every address (not this node) at once.
func (b *booter) probeAll(ctx context.Context, addrs []string) map[string]Probe {
	var uniq []string
	for _, a := range addrs {
		a = b.withPort(a)
		if !b.isSelf(a) && !slices.Contains(uniq, a) {
			uniq = append(uniq, a)
		}
	}
	res := make([]Probe, len(uniq))
	var wg sync.WaitGroup
	for i, a := range uniq {
		wg.Go(func() { res[i] = b.d.Probe(ctx, a) })
	}
	wg.Wait()
	out := make(map[string]Probe, len(uniq))
	for i, a := range uniq {
		out[a] = res[i]
	}
	return out
}

func (b *booter) isSelf(addr string) bool {
	return addr == net.JoinHostPort(b.cfg.Identity.PrivateIP, strconv.Itoa(b.cfg.SwarmPort))
}

func (b *booter) withPort(a string) string {
	if _, _, err := net.SplitHostPort(a); err == nil {
		return a
	}
	return net.JoinHostPort(strings.Trim(a, "[]"), strconv.Itoa(b.cfg.SwarmPort))
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
