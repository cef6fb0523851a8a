package route53

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/swarm-agent/swarm-agent/discovery"
)

// zoneRead is one read of the zone: the managers' A record sets, the owner record (a TXT at
// NAME, listed after NAME's A sets) and the lock's TXT set, which sorts right after them
// (Route 53 lists names with their labels reversed, so the lock "_swarm-agent-lock.NAME" comes
// within NAME's subtree, after NAME itself). One ListResourceRecordSets call returns all three
// in a normal zone.
type zoneRead struct {
	managers []types.ResourceRecordSet
	owner    *types.ResourceRecordSet // the TXT set at NAME (owner.go); nil when there is none
	lock     *types.ResourceRecordSet // nil when there is none
	at       time.Time                // this node's clock
}

// readZone reads the managers' record and the lock in one listing (following pages while
// they stay within NAME's subtree) and keeps the read for the steps that follow it.
func (p *Provider) readZone(ctx context.Context) (*zoneRead, error) {
	in := &awsroute53.ListResourceRecordSetsInput{HostedZoneId: aws.String(p.cfg.ZoneID),
		StartRecordName: aws.String(p.cfg.Name), StartRecordType: types.RRTypeA}
	r := &zoneRead{at: p.now()}
	for {
		res, err := p.api.ListResourceRecordSets(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("route53: list record sets from %s in zone %s: %w", p.cfg.Name, p.cfg.ZoneID, p.apiErr(err))
		}
		past := false
		for _, s := range res.ResourceRecordSets {
			name := aws.ToString(s.Name)
			switch {
			case sameName(name, p.cfg.Name) && s.Type == types.RRTypeA:
				r.managers = append(r.managers, s)
			case sameName(name, p.cfg.Name) && s.Type == types.RRTypeTxt:
				cp := s
				r.owner = &cp
			case sameName(name, p.LockName()) && s.Type == types.RRTypeTxt:
				cp := s
				r.lock = &cp
			case !sameName(name, p.cfg.Name) && !strings.HasSuffix(strings.ToLower(strings.TrimSuffix(name, ".")), "."+p.cfg.Name):
				past = true // left NAME's subtree: the lock cannot come later
			}
			if past || r.lock != nil {
				break
			}
		}
		if past || r.lock != nil || !res.IsTruncated {
			break
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = res.NextRecordName, res.NextRecordType, res.NextRecordIdentifier
	}
	p.mu.Lock()
	p.last, p.pinned = r, false
	p.mu.Unlock()
	return r, nil
}

// recent returns the last zone read when it is younger than maxAge, else nil.
func (p *Provider) recent(maxAge time.Duration) *zoneRead {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil || p.now().Sub(p.last.at) >= maxAge {
		return nil
	}
	return p.last
}

// forget drops the kept zone read.
func (p *Provider) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.pinned = nil, false
}

// apiErr names the two refusals that a configuration error causes (a zone that does not
// exist, a name outside the zone) so that boot stops at once, and marks access refusals.
func (p *Provider) apiErr(err error) error {
	var nz *types.NoSuchHostedZone
	if errors.As(err, &nz) {
		return fmt.Errorf("%w: route53 hosted zone %s not found (zone_id in --discovery): %w", discovery.ErrDiscoveryConfig, p.cfg.ZoneID, err)
	}
	if isBatchRefusal(err) && strings.Contains(batchText(err), "is not permitted in zone") {
		return fmt.Errorf("%w: route53 name=%q is not inside zone %s: %w", discovery.ErrDiscoveryConfig, p.cfg.Name, p.cfg.ZoneID, err)
	}
	return discovery.MarkDenied(err)
}

// batchText is a refused batch's reasons in either form (the Messages form keeps them out of
// Error()).
func batchText(err error) string {
	text := err.Error()
	var icb *types.InvalidChangeBatch
	if errors.As(err, &icb) {
		text += " " + strings.Join(icb.Messages, " ")
	}
	return text
}
