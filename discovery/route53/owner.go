package route53

// The owner record: the cluster the managers' record belongs to.
//
// Two clusters given one name= (a copy-paste in Terraform) would otherwise mix without a word:
// one cluster's managers registering into the other's record, its nodes finding the other's
// managers or lock, its leader replacing the other's sets. So a name belongs to one cluster: a
// simple TXT set at NAME itself, "swarm-agent cluster=<cluster>", created with CREATE (Route 53
// refuses a CREATE of an existing set, so the first writer wins) in the same batch as the first
// write of a manager of that cluster: its take of the bootstrap lock, its registration, or the
// leader's reconcile. A node of another cluster refuses the name before writing anything, with
// an error wrapping discovery.ErrOtherCluster (and ErrDiscoveryConfig).
//
// It costs no call: Route 53 lists a name's sets by type, so the TXT at NAME comes after NAME's
// A sets and before the lock's subtree, in the one listing that reads both (readZone). Routing
// policy is judged per name and type: a simple TXT beside failover or multivalue A sets is
// accepted (only a CNAME shares its name with nothing). Older agents ignore it (they keep only
// NAME's A sets and the lock of what they list, and write nothing else).
//
// A zone whose record an older agent made has no owner: the first manager of this version that
// writes to it claims it for its cluster (never deleting or changing anything else). Nodes
// find the owner over DNS as well (a TXT query, no API call): a worker refuses another
// cluster's name from DNS alone, a manager confirms through the API what DNS does not prove.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// ownerTTL is the owner record's TTL: it changes only by hand.
const ownerTTL = 60

// DefaultCluster stands for an empty Config.Cluster: the agent's --cluster default.
const DefaultCluster = "default"

func (p *Provider) cluster() string {
	if p.cfg.Cluster == "" {
		return DefaultCluster
	}
	return p.cfg.Cluster
}

// OwnerValue is the owner record's value (TXT presentation format) for cluster.
func OwnerValue(cluster string) string { return `"swarm-agent cluster=` + cluster + `"` }

func (p *Provider) ownerSet() *types.ResourceRecordSet {
	return &types.ResourceRecordSet{
		Name:            aws.String(p.fqdn()),
		Type:            types.RRTypeTxt,
		TTL:             aws.Int64(ownerTTL),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(OwnerValue(p.cluster()))}},
	}
}

// isOwnerCreate reports whether c creates the owner record of NAME.
func (p *Provider) isOwnerCreate(c types.Change) bool {
	rs := c.ResourceRecordSet
	return c.Action == types.ChangeActionCreate && rs != nil && rs.Type == types.RRTypeTxt && sameName(aws.ToString(rs.Name), p.cfg.Name)
}

// txtText is a TXT value's text: Route 53 holds it as quoted character-strings ("a" "b"),
// which DNS clients concatenate; an unquoted value is taken as it is.
func txtText(v string) string {
	v = strings.TrimSpace(v)
	if !strings.HasPrefix(v, `"`) {
		return v
	}
	var b strings.Builder
	in, esc := false, false
	for _, r := range v {
		switch {
		case esc:
			b.WriteRune(r)
			esc = false
		case r == '\\' && in:
			esc = true
		case r == '"':
			in = !in
		case in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// owner is what the TXT set at NAME says.
type owner struct {
	others  []string // clusters other than this node's that it names
	mine    bool     // it names this node's cluster
	foreign bool     // it holds a value that is not an owner record's (someone else's TXT)
}

// ownerOf reads texts (a TXT set's texts, from the API or DNS).
func (p *Provider) ownerOf(texts []string) owner {
	var o owner
	for _, t := range texts {
		f := strings.Fields(t)
		if len(f) == 0 || f[0] != "swarm-agent" {
			o.foreign = true
			continue
		}
		named := false
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			if k != "cluster" || v == "" {
				continue
			}
			named = true
			switch {
			case v == p.cluster():
				o.mine = true
			case !slices.Contains(o.others, v):
				o.others = append(o.others, v)
			}
		}
		if !named {
			o.foreign = true
		}
	}
	slices.Sort(o.others)
	return o
}

// ownerInRead is the owner record of a zone read.
func (p *Provider) ownerInRead(r *zoneRead) owner {
	if r.owner == nil {
		return owner{}
	}
	var texts []string
	for _, v := range r.owner.ResourceRecords {
		texts = append(texts, txtText(aws.ToString(v.Value)))
	}
	return p.ownerOf(texts)
}

// otherClusterErr is the refusal of a name that another cluster owns: one line naming both
// clusters and the fix.
func (p *Provider) otherClusterErr(others []string) error {
	q := make([]string, len(others))
	for i, c := range others {
		q[i] = fmt.Sprintf("%q", c)
	}
	return fmt.Errorf("%w: %w: route53 name=%s in zone %s belongs to cluster %s (its owner record, TXT %s, says so) and this node is in cluster %q (--cluster): give each cluster its own name= in --discovery",
		discovery.ErrDiscoveryConfig, discovery.ErrOtherCluster, p.cfg.Name, p.cfg.ZoneID, strings.Join(q, " and "), p.cfg.Name, p.cluster())
}

// checkRead refuses a zone read whose owner record names another cluster, before anything is
// taken from it, and remembers one that names this cluster.
func (p *Provider) checkRead(r *zoneRead) error {
	o := p.ownerInRead(r)
	if len(o.others) > 0 {
		return p.otherClusterErr(o.others)
	}
	if o.mine {
		p.sawOwner(r.at)
	}
	return nil
}

// claim judges a zone read's owner record before a write: an error wrapping ErrOtherCluster
// when the name is another cluster's (nothing may be written); the CREATE of this cluster's
// owner record when nobody owns the name yet (to go in the write's own batch); nil when it is
// this cluster's, when this node saw it (in DNS, or created it) after the read began, or when
// a TXT set that is not an owner record stands at NAME (said once; nothing is claimed over
// someone else's record).
func (p *Provider) claim(r *zoneRead) (*types.Change, error) {
	if err := p.checkRead(r); err != nil {
		return nil, err
	}
	o := p.ownerInRead(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case o.mine:
		return nil, nil
	case o.foreign:
		if !p.ownerWarned {
			p.ownerWarned = true
			p.log.Warn().Str("record_name", p.cfg.Name).Str("zone_id", p.cfg.ZoneID).
				Msg("a TXT record that swarm-agent did not write stands at the managers' name: it cannot record which cluster owns the name, so another cluster given this name by mistake would not be refused")
		}
		return nil, nil
	case !p.ownerSeen.IsZero() && !p.ownerSeen.Before(r.at):
		return nil, nil // seen or created after the read began: a CREATE could only fail
	}
	if len(r.managers) > 0 && !p.claimSaid {
		p.claimSaid = true
		p.log.Info().Str("record_name", p.cfg.Name).Str("cluster", p.cluster()).
			Msg("the managers' record has no owner record (an older version made it): claiming it for this cluster")
	}
	return &types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: p.ownerSet()}, nil
}

// withClaim puts the owner record's CREATE, if any, in front of changes.
func withClaim(claim *types.Change, changes []types.Change) []types.Change {
	if claim == nil {
		return changes
	}
	return append([]types.Change{*claim}, changes...)
}

// sawOwner records that the owner record named this cluster at (or after) at.
func (p *Provider) sawOwner(at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ownerOK = true
	if at.After(p.ownerSeen) {
		p.ownerSeen = at
	}
}

// checkOwner runs before the managers DNS named are used: it refuses a name that another
// cluster owns. Once this cluster's ownership is confirmed it asks nothing more. DNS first
// (the owner record answers a TXT query: no API call). A worker goes by DNS alone: without an
// owner record in DNS it goes on (the join token protects it: another swarm refuses it) and
// looks again after api_every. A manager reads the zone through the API when DNS does not say
// this cluster (another cluster in DNS may be a stale answer, none a cached negative one); the
// read is kept, so a registration that follows reads nothing more.
func (p *Provider) checkOwner(ctx context.Context) error {
	p.mu.Lock()
	skip := p.ownerOK || p.now().Before(p.ownerNext)
	p.mu.Unlock()
	if skip {
		return nil
	}
	asked := p.now()
	o := p.dnsOwner(ctx)
	if o.mine && len(o.others) == 0 {
		p.sawOwner(asked)
		return nil
	}
	if p.cfg.Role != swarm.RoleManager {
		if len(o.others) > 0 {
			return p.otherClusterErr(o.others)
		}
	} else {
		r, err := p.readZone(ctx)
		if err != nil {
			return err
		}
		if err := p.checkRead(r); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.ownerNext = p.now().Add(p.cfg.APIEvery)
	p.mu.Unlock()
	return nil
}

// dnsOwner asks DNS for the owner record; no answer (none, or a failure) reads as no owner.
func (p *Provider) dnsOwner(ctx context.Context) owner {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	texts, err := p.resolver.LookupTXT(ctx, p.fqdn())
	if err != nil {
		p.log.Debug().Err(err).Str("record_name", p.cfg.Name).Msg("no owner record in DNS")
		return owner{}
	}
	return p.ownerOf(texts)
}
