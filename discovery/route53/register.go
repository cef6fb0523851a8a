package route53

// Registering and deregistering this manager's A record set.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func (p *Provider) change(ctx context.Context, what string, changes ...types.Change) error {
	_, err := p.api.ChangeResourceRecordSets(ctx, &awsroute53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(p.cfg.ZoneID),
		ChangeBatch:  &types.ChangeBatch{Comment: aws.String("swarm-agent: " + what), Changes: changes},
	})
	for _, c := range changes {
		if rs := c.ResourceRecordSet; rs != nil && rs.Type == types.RRTypeA && sameName(aws.ToString(rs.Name), p.cfg.Name) {
			p.forget() // the managers' record changed, or may have: a kept read no longer says it
			break
		}
	}
	if err != nil {
		return fmt.Errorf("route53: %s in zone %s: %w", what, p.cfg.ZoneID, p.apiErr(err))
	}
	if slices.ContainsFunc(changes, p.isOwnerCreate) {
		p.sawOwner(p.now())
		p.log.Info().Str("record_name", p.cfg.Name).Str("zone_id", p.cfg.ZoneID).Str("cluster", p.cluster()).
			Msg("managers' record claimed for this cluster (owner record created)")
	}
	return nil
}

// isBatchConflict reports whether err is Route 53 refusing a batch because the sets are not
// as it expected (CREATE of an existing set, DELETE of a missing or different one), and not
// because the configuration is wrong (a name outside the zone).
func isBatchConflict(err error) bool {
	return isBatchRefusal(err) && !errors.Is(err, discovery.ErrDiscoveryConfig)
}

// isBatchRefusal reports whether err is an InvalidChangeBatch, in either of its forms.
func isBatchRefusal(err error) bool {
	var icb *types.InvalidChangeBatch
	if errors.As(err, &icb) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "InvalidChangeBatch"
}

func (p *Provider) aSet(m swarm.Member, failover types.ResourceRecordSetFailover, id string) *types.ResourceRecordSet {
	s := &types.ResourceRecordSet{
		Name:            aws.String(p.fqdn()),
		Type:            types.RRTypeA,
		TTL:             aws.Int64(p.cfg.TTL),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(m.Addr)}},
		SetIdentifier:   aws.String(id),
	}
	if failover != "" {
		s.Failover = failover
	} else {
		s.MultiValueAnswer = aws.Bool(true)
	}
	return s
}

func value(s types.ResourceRecordSet) string {
	if len(s.ResourceRecords) != 1 {
		return ""
	}
	return aws.ToString(s.ResourceRecords[0].Value)
}

// Register publishes this manager's address. Multivalue: its own set, keyed by instance id.
// Failover: PRIMARY if there is none, else SECONDARY if there is none, else nothing (failover
// answers at most two). Nothing is written when the record already says the right thing.
// A zone read of this boot younger than a third of the lock TTL stands for the first look
// (a stale one only makes the batch fail, then the record is read again).
func (p *Provider) Register(ctx context.Context, m swarm.Member) error {
	if _, err := netip.ParseAddr(m.Addr); err != nil {
		return fmt.Errorf("route53: register %q: not an IP address", m.Addr)
	}
	r := p.recent(p.cfg.LockTTL / 3)
	for attempt := 0; attempt < 5; attempt++ {
		fresh := r == nil || attempt > 0
		if fresh {
			var err error
			if r, err = p.readZone(ctx); err != nil {
				return err
			}
		}
		claim, err := p.claim(r)
		if err != nil {
			return err
		}
		sets := r.managers
		if !fresh {
			sets = p.withDNSAnswer(r)
		}
		changes, err := p.registration(m, sets)
		if err != nil {
			return err
		}
		if len(changes) == 0 {
			if !fresh {
				r = nil // "already right" only on a fresh read: ask again
				continue
			}
			if claim == nil {
				return nil
			}
			// Registered already (by an older version of the agent): only the claim is due.
			err = p.change(ctx, "claim managers' record for cluster "+p.cluster(), *claim)
			if err == nil || !isBatchConflict(err) {
				return err
			}
			continue // another manager claimed it first: read whose it is
		}
		err = p.change(ctx, "register manager "+m.InstanceID, withClaim(claim, changes)...)
		if err == nil {
			p.logRegistered(m, changes)
			return nil
		}
		if !isBatchConflict(err) {
			return err
		}
		if claim == nil && secondaryTaken(changes, err) {
			// Another manager took SECONDARY first: failover answers two, so this one
			// stays unregistered, as when it finds both taken.
			p.log.Info().Str("manager_addr", m.Addr).Msg("failover record already has PRIMARY and SECONDARY: not registering this manager")
			return nil
		}
		p.log.Debug().Err(err).Msg("record sets changed under us; reading again")
	}
	return fmt.Errorf("route53: register %s in %s: the record sets kept changing", m.Addr, p.cfg.Name)
}

// withDNSAnswer is a kept read's managers' sets, completed by what DNS said since: in
// failover mode, DNS answering the name after the read means a PRIMARY exists, so a read
// without one stands for a PRIMARY of unknown address (the registration then goes for
// SECONDARY instead of a CREATE of PRIMARY that could only fail).
func (p *Provider) withDNSAnswer(r *zoneRead) []types.ResourceRecordSet {
	p.mu.Lock()
	answered := p.dnsAnswered.After(r.at)
	p.mu.Unlock()
	if p.cfg.Mode != ModeFailover || !answered {
		return r.managers
	}
	if primary, _, _ := failoverPair(r.managers); primary != nil {
		return r.managers
	}
	unknown := p.aSet(swarm.Member{Addr: "0.0.0.0"}, types.ResourceRecordSetFailoverPrimary, "primary")
	return append(slices.Clone(r.managers), *unknown)
}

// secondaryTaken reports whether err refused a lone CREATE of SECONDARY because one exists.
func secondaryTaken(changes []types.Change, err error) bool {
	return len(changes) == 1 && changes[0].Action == types.ChangeActionCreate &&
		changes[0].ResourceRecordSet.Failover == types.ResourceRecordSetFailoverSecondary &&
		strings.Contains(batchText(err), "already exists")
}

// registration is the batch that registers m given the managers' record sets; none when
// they already say the right thing.
func (p *Provider) registration(m swarm.Member, sets []types.ResourceRecordSet) ([]types.Change, error) {
	if p.cfg.Mode == ModeFailover {
		return p.registerFailover(m, sets)
	}
	return p.registerMultivalue(m, sets)
}

func (p *Provider) logRegistered(m swarm.Member, changes []types.Change) {
	ev := p.log.Info().Str("manager_addr", m.Addr).Str("zone_id", p.cfg.ZoneID).Str("record_name", p.cfg.Name)
	if last := changes[len(changes)-1].ResourceRecordSet; last.Failover != "" {
		ev.Str("failover", string(last.Failover)).Msg("registered manager (failover)")
		return
	}
	ev.Msg("registered manager (multivalue)")
}

func (p *Provider) registerMultivalue(m swarm.Member, sets []types.ResourceRecordSet) ([]types.Change, error) {
	var changes []types.Change
	for _, s := range sets {
		if s.Failover != "" || s.SetIdentifier == nil {
			return nil, fmt.Errorf("%w: route53 mode=multivalue but %s has %s sets: use mode=failover or remove them",
				discovery.ErrDiscoveryConfig, p.cfg.Name, routing(s))
		}
		id := aws.ToString(s.SetIdentifier)
		if id == m.InstanceID {
			if value(s) == m.Addr && aws.ToInt64(s.TTL) == p.cfg.TTL && aws.ToBool(s.MultiValueAnswer) {
				return nil, nil
			}
			continue
		}
		if value(s) == m.Addr {
			// Another instance's set with our address: a dead predecessor whose IP was reused.
			cp := s
			changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: &cp})
		}
	}
	return append(changes, types.Change{Action: types.ChangeActionUpsert, ResourceRecordSet: p.aSet(m, "", m.InstanceID)}), nil
}

func routing(s types.ResourceRecordSet) string {
	switch {
	case s.Failover != "":
		return "failover"
	case aws.ToBool(s.MultiValueAnswer):
		return "multivalue"
	case s.Weight != nil:
		return "weighted"
	case s.SetIdentifier == nil:
		return "simple"
	}
	return "other routing"
}

func (p *Provider) registerFailover(m swarm.Member, sets []types.ResourceRecordSet) ([]types.Change, error) {
	primary, secondary, other := failoverPair(sets)
	if len(other) > 0 {
		return nil, fmt.Errorf("%w: route53 mode=failover but %s has %s sets: use mode=multivalue or remove them",
			discovery.ErrDiscoveryConfig, p.cfg.Name, routing(other[0]))
	}
	if (primary != nil && value(*primary) == m.Addr) || (secondary != nil && value(*secondary) == m.Addr) {
		return nil, nil
	}
	var role types.ResourceRecordSetFailover
	switch {
	case primary == nil:
		role = types.ResourceRecordSetFailoverPrimary
	case secondary == nil:
		role = types.ResourceRecordSetFailoverSecondary
	default:
		p.log.Info().Str("manager_addr", m.Addr).Msg("failover record already has PRIMARY and SECONDARY: not registering this manager")
		return nil, nil
	}
	// CREATE, not UPSERT: two managers racing for PRIMARY cannot overwrite each other.
	set := p.aSet(m, role, strings.ToLower(string(role)))
	return []types.Change{{Action: types.ChangeActionCreate, ResourceRecordSet: set}}, nil
}

// Deregister withdraws this manager's address. In failover mode a PRIMARY that leaves hands
// PRIMARY to the SECONDARY in the same atomic batch.
func (p *Provider) Deregister(ctx context.Context, m swarm.Member) error {
	for attempt := 0; attempt < 5; attempt++ {
		r, err := p.readZone(ctx)
		if err != nil {
			return err
		}
		if err := p.checkRead(r); err != nil {
			return err // another cluster's record: nothing of it is this manager's to delete
		}
		sets := r.managers
		var changes []types.Change
		primary, secondary, _ := failoverPair(sets)
		for _, s := range sets {
			mine := value(s) == m.Addr || (s.Failover == "" && aws.ToString(s.SetIdentifier) == m.InstanceID)
			if mine {
				cp := s
				changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: &cp})
			}
		}
		if len(changes) == 0 {
			return nil
		}
		if primary != nil && value(*primary) == m.Addr && secondary != nil && value(*secondary) != m.Addr {
			// Promote the SECONDARY: delete it and create it again as PRIMARY.
			changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: secondary})
			promoted := p.aSet(swarm.Member{Addr: value(*secondary)}, types.ResourceRecordSetFailoverPrimary, "primary")
			promoted.TTL = secondary.TTL
			changes = append(changes, types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: promoted})
		}
		err = p.change(ctx, "deregister manager "+m.InstanceID, changes...)
		if err == nil {
			p.log.Info().Str("manager_addr", m.Addr).Str("zone_id", p.cfg.ZoneID).Msg("deregistered manager")
			return nil
		}
		if !isBatchConflict(err) {
			return err
		}
	}
	return fmt.Errorf("route53: deregister %s from %s: the record sets kept changing", m.Addr, p.cfg.Name)
}
