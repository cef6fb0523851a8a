package route53

// The leader's reconcile: making the managers' A record sets say what the swarm says.

import (
	"context"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Reconcile makes the managers' record say what the swarm says (the leader's duty): in
// multivalue mode one set per live manager and none for others; in failover mode PRIMARY on
// the leader and SECONDARY on another live manager (the current SECONDARY when it is still
// live). It writes nothing when the record is already right, and one atomic batch otherwise.
func (p *Provider) Reconcile(ctx context.Context, leader swarm.Member, live []swarm.Member) error {
	r, err := p.readZone(ctx)
	if err != nil {
		return err
	}
	claim, err := p.claim(r)
	if err != nil {
		return err // another cluster's record: this leader's swarm is not what it lists
	}
	var changes []types.Change
	if p.cfg.Mode == ModeFailover {
		changes = p.failoverChanges(r.managers, leader, live)
	} else {
		changes = p.multivalueChanges(r.managers, live)
	}
	if len(changes) == 0 && claim == nil {
		return nil
	}
	if err := p.change(ctx, "reconcile managers' record", withClaim(claim, changes)...); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	p.log.Info().Str("zone_id", p.cfg.ZoneID).Str("record_name", p.cfg.Name).Int("changes", len(changes)).Msg("managers' record reconciled")
	return nil
}

func (p *Provider) multivalueChanges(sets []types.ResourceRecordSet, live []swarm.Member) []types.Change {
	want := map[string]swarm.Member{}
	for _, m := range live {
		if m.InstanceID != "" && m.Addr != "" {
			want[m.InstanceID] = m
		}
	}
	var changes []types.Change
	have := map[string]bool{}
	for _, s := range sets {
		id := aws.ToString(s.SetIdentifier)
		m, ok := want[id]
		if !ok || s.Failover != "" || !aws.ToBool(s.MultiValueAnswer) {
			cp := s
			changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: &cp})
			continue
		}
		have[id] = true
		if value(s) != m.Addr || aws.ToInt64(s.TTL) != p.cfg.TTL {
			changes = append(changes, types.Change{Action: types.ChangeActionUpsert, ResourceRecordSet: p.aSet(m, "", id)})
		}
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if !have[id] {
			changes = append(changes, types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: p.aSet(want[id], "", id)})
		}
	}
	return changes
}

func (p *Provider) failoverChanges(sets []types.ResourceRecordSet, leader swarm.Member, live []swarm.Member) []types.Change {
	primary, secondary, other := failoverPair(sets)
	var changes []types.Change
	for i := range other { // not failover sets: they have no place in this record
		changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: &other[i]})
	}
	isLive := func(addr string) bool {
		return slices.ContainsFunc(live, func(m swarm.Member) bool { return m.Addr == addr })
	}
	wantSecondary := ""
	if secondary != nil && value(*secondary) != leader.Addr && isLive(value(*secondary)) {
		wantSecondary = value(*secondary)
	} else {
		others := []string{}
		for _, m := range live {
			if m.Addr != "" && m.Addr != leader.Addr {
				others = append(others, m.Addr)
			}
		}
		slices.Sort(others)
		if len(others) > 0 {
			wantSecondary = others[0]
		}
	}
	replace := func(cur *types.ResourceRecordSet, role types.ResourceRecordSetFailover, addr string) {
		if cur != nil && value(*cur) == addr && aws.ToInt64(cur.TTL) == p.cfg.TTL {
			return
		}
		if cur != nil {
			changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: cur})
		}
		if addr != "" {
			changes = append(changes, types.Change{Action: types.ChangeActionCreate,
				ResourceRecordSet: p.aSet(swarm.Member{Addr: addr}, role, strings.ToLower(string(role)))})
		}
	}
	replace(primary, types.ResourceRecordSetFailoverPrimary, leader.Addr)
	replace(secondary, types.ResourceRecordSetFailoverSecondary, wantSecondary)
	return changes
}

// failoverPair splits the record's sets into its PRIMARY, its SECONDARY and the sets that
// are not failover sets at all.
func failoverPair(sets []types.ResourceRecordSet) (primary, secondary *types.ResourceRecordSet, other []types.ResourceRecordSet) {
	for i, s := range sets {
		switch s.Failover {
		case types.ResourceRecordSetFailoverPrimary:
			primary = &sets[i]
		case types.ResourceRecordSetFailoverSecondary:
			secondary = &sets[i]
		default:
			other = append(other, s)
		}
	}
	return primary, secondary, other
}
