package awsfront

// Route 53's rules for a change batch, with its messages: per set, and for the zone as the batch
// leaves it.

import (
	"cmp"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// sameSet reports whether a DELETE's set matches the current one exactly.
func sameSet(a, b *rrset) bool {
	i64 := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatInt(*p, 10)
	}
	mv := func(p *bool) bool { return p != nil && *p }
	if i64(a.TTL) != i64(b.TTL) || i64(a.Weight) != i64(b.Weight) || a.Failover != b.Failover ||
		a.HealthCheckID != b.HealthCheckID || mv(a.MultiValueAnswer) != mv(b.MultiValueAnswer) ||
		a.Region != b.Region {
		return false
	}
	if (a.Alias == nil) != (b.Alias == nil) {
		return false
	}
	if a.Alias != nil && (normName(a.Alias.DNSName) != normName(b.Alias.DNSName) ||
		a.Alias.HostedZoneID != b.Alias.HostedZoneID || a.Alias.EvaluateTargetHealth != b.Alias.EvaluateTargetHealth) {
		return false
	}
	va, vb := append([]string(nil), a.Values...), append([]string(nil), b.Values...)
	if len(va) != len(vb) {
		return false
	}
	sort.Strings(va)
	sort.Strings(vb)
	for i := range va {
		if va[i] != vb[i] {
			return false
		}
	}
	return true
}

// checkSet applies the per-set rules that AWS rejects before looking at the zone.
func checkSet(s *rrset) string {
	switch {
	case s.Failover != "" && s.Failover != "PRIMARY" && s.Failover != "SECONDARY":
		return fmt.Sprintf("Invalid failover value %q for resource record set %s: must be PRIMARY or SECONDARY", s.Failover, s.describe())
	case s.MultiValueAnswer != nil && *s.MultiValueAnswer && strings.EqualFold(s.Type, "CNAME"):
		return fmt.Sprintf("Multivalue answer routing is not supported for CNAME resource record set %s", s.describe())
	case s.Weight != nil && (*s.Weight < 0 || *s.Weight > 255):
		return fmt.Sprintf("Invalid weight %d for resource record set %s: must be between 0 and 255", *s.Weight, s.describe())
	}
	return ""
}

// identityInput is Route 53's InvalidInput message for a change whose set has a routing policy
// but no SetIdentifier, or a SetIdentifier but no routing policy; "" when neither. Route 53
// answers these as InvalidInput before it looks at the batch ("Invalid request: Missing field
// 'SetIdentifier' in Change with [...]", as reported by boto3 and Ansible users), not as
// InvalidChangeBatch.
func identityInput(action string, s *rrset) string {
	with := fmt.Sprintf("in Change with [Action=%s, Name=%s, Type=%s, SetIdentifier=%s]", action, s.Name, s.Type, cmp.Or(s.SetIdentifier, "null"))
	routed := s.routing() != "simple" && s.routing() != "other"
	switch {
	case routed && s.SetIdentifier == "":
		return "Invalid request: Missing field 'SetIdentifier' " + with
	case s.routing() == "other":
		return "Invalid request: Expected exactly one of [Weight, Region, Failover, GeoLocation, or MultiValueAnswer], but found none " + with
	}
	return ""
}

// zoneApex is the zone's own name, from its SOA set (every zone has one).
func zoneApex(sets []rrset) string {
	for i := range sets {
		if strings.EqualFold(sets[i].Type, "SOA") {
			return fqdn(sets[i].Name)
		}
	}
	return ""
}

// routingKind names a routing policy as Route 53's messages do.
func routingKind(s *rrset) string {
	if s.routing() == "multivalue" {
		return "multivalue answer"
	}
	return s.routing()
}

// batchConflicts checks the sets the batch wrote against the zone as the batch leaves it, with
// Route 53's messages: a CNAME shares its name with no other record; a set without
// SetIdentifier shares its name and type with no other set; sets with identifiers that share a
// name and type share one routing policy; a failover pair has one PRIMARY and one SECONDARY.
// The zone is judged after the whole batch, so a batch that deletes the old set and creates
// its replacement passes in either order.
func batchConflicts(state map[rrKey]*rrset, written []rrKey, zone string) []string {
	isNew := map[rrKey]bool{}
	for _, k := range written {
		isNew[k] = true
	}
	byName := map[string][]rrKey{}
	for k := range state {
		byName[k.name] = append(byName[k.name], k)
	}
	var msgs []string
	seen, judged := map[string]bool{}, map[rrKey]bool{}
	add := func(m string) {
		if !seen[m] {
			seen[m] = true
			msgs = append(msgs, m)
		}
	}
	for _, k := range written {
		s := state[k]
		if s == nil || judged[k] {
			continue // deleted again later in the batch, or already judged
		}
		judged[k] = true
		name := fqdn(k.name)
		var otherType, oldCNAME bool
		var peers []*rrset
		for _, o := range byName[k.name] {
			switch {
			case o == k:
			case o.typ != k.typ:
				otherType = true
				oldCNAME = oldCNAME || (o.typ == "CNAME" && !isNew[o])
			default:
				peers = append(peers, state[o])
			}
		}
		// Wording quoted from Route 53 answers (see the package's conformance test).
		switch {
		case k.typ == "CNAME" && otherType:
			add(fmt.Sprintf("RRSet of type CNAME with DNS name %s is not permitted as it conflicts with other records with the same DNS name in zone %s", name, zone))
		case k.typ != "CNAME" && oldCNAME:
			add(fmt.Sprintf("RRSet of type %s with DNS name %s is not permitted because a conflicting RRSet of type CNAME with the same DNS name already exists in zone %s", k.typ, name, zone))
		}
		if len(peers) == 0 {
			continue
		}
		if s.SetIdentifier == "" {
			add(fmt.Sprintf("RRSet with DNS name %s, type %s cannot be created as other RRSets exist with the same name and type.", name, k.typ))
			continue
		}
		for _, p := range peers {
			if p.routing() != s.routing() {
				add(fmt.Sprintf("RRSet with DNS name %s, type %s, SetIdentifier %s cannot be created because a non %s rrset exists with the same name and type.",
					name, k.typ, s.SetIdentifier, routingKind(s)))
				break
			}
		}
		for _, p := range peers {
			if s.Failover != "" && strings.EqualFold(p.Failover, s.Failover) {
				// AWS's wording for this case is not on record; this follows its latency message
				// ("... and Region Name=eu-west-1 cannot be created because a latency RRSet with
				// the same name, type and region already exists.").
				add(fmt.Sprintf("RRSet with DNS name %s, type %s, SetIdentifier %s, and Failover Type=%s cannot be created because a failover RRSet with the same name, type and failover type already exists.",
					name, k.typ, s.SetIdentifier, strings.ToUpper(s.Failover)))
				break
			}
		}
	}
	return msgs
}

// writeInvalidChangeBatch answers a refused batch as Route 53 does: an ErrorResponse with code
// InvalidChangeBatch whose message lists every reason in brackets, joined by ", ". (Route 53
// once answered <InvalidChangeBatch><Messages>, which botocore cannot read; it no longer does.)
func writeInvalidChangeBatch(c *call, msgs []string) {
	c.writeError(http.StatusBadRequest, "InvalidChangeBatch", "["+strings.Join(msgs, ", ")+"]")
}
