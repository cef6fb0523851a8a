package dnsfake

// A zone's answers: names, wildcards, negative answers with the SOA.

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// zone is one zone's record sets indexed for a query.
type zone struct {
	apex  string
	opts  Options
	soa   *dns.SOA
	names map[string]map[uint16][]RecordSet // canonical name -> type -> sets
}

func buildZone(z Zone, sets []RecordSet, opts Options) (*zone, error) {
	out := &zone{apex: dns.CanonicalName(z.Name), opts: opts, names: make(map[string]map[uint16][]RecordSet)}
	for _, rs := range sets {
		name := dns.CanonicalName(rs.Name)
		t, ok := dns.StringToType[strings.ToUpper(rs.Type)]
		if !ok {
			return nil, fmt.Errorf("record set %s: unknown type %q", rs.Name, rs.Type)
		}
		if !dns.IsSubDomain(out.apex, name) {
			continue
		}
		byType := out.names[name]
		if byType == nil {
			byType = make(map[uint16][]RecordSet)
			out.names[name] = byType
		}
		byType[t] = append(byType[t], rs)
	}
	apex := out.names[out.apex]
	if apex == nil {
		apex = make(map[uint16][]RecordSet)
		out.names[out.apex] = apex
	}
	if len(apex[dns.TypeNS]) == 0 {
		apex[dns.TypeNS] = []RecordSet{{Name: out.apex, Type: "NS", TTL: defaultNSTTL, Values: []string{defaultNS}}}
	}
	soaSet := RecordSet{Name: out.apex, Type: "SOA", TTL: defaultSOATTL, Values: []string{defaultSOA}}
	if got := apex[dns.TypeSOA]; len(got) > 0 && len(got[0].Values) > 0 {
		soaSet = got[0]
	}
	rr, err := toRR(out.apex, dns.TypeSOA, soaSet.TTL, soaSet.Values[0])
	if err != nil {
		return nil, err
	}
	soa, ok := rr.(*dns.SOA)
	if !ok {
		return nil, fmt.Errorf("zone %s: SOA value %q is not an SOA", out.apex, soaSet.Values[0])
	}
	if opts.SOATTL != 0 {
		soa.Hdr.Ttl = opts.SOATTL
	}
	if opts.SOAMinimum != 0 {
		soa.Minttl = opts.SOAMinimum
	}
	out.soa = soa
	apex[dns.TypeSOA] = []RecordSet{soaSet}
	return out, nil
}

// resolve fills resp with the answer for name and qtype, following CNAMEs inside the zone.
func (z *zone) resolve(resp *dns.Msg, name string, qtype uint16) error {
	for range maxCNAMEChain {
		cname := dns.CanonicalName(name)
		byType, exists := z.names[cname]
		if !exists {
			if !z.hasDescendant(cname) {
				resp.Rcode = dns.RcodeNameError
			}
			resp.Ns = []dns.RR{z.negativeSOA()}
			return nil
		}
		if qtype == dns.TypeANY {
			for _, t := range slices.Sorted(maps.Keys(byType)) {
				if err := z.appendSets(resp, name, t, byType[t]); err != nil {
					return err
				}
			}
			return nil
		}
		if sets := byType[qtype]; len(sets) > 0 {
			n := len(resp.Answer)
			if err := z.appendSets(resp, name, qtype, sets); err != nil {
				return err
			}
			if len(resp.Answer) == n {
				resp.Ns = []dns.RR{z.negativeSOA()}
			}
			return nil
		}
		if sets := byType[dns.TypeCNAME]; len(sets) > 0 {
			n := len(resp.Answer)
			if err := z.appendSets(resp, name, dns.TypeCNAME, sets); err != nil {
				return err
			}
			if len(resp.Answer) == n {
				break
			}
			target := resp.Answer[len(resp.Answer)-1].(*dns.CNAME).Target
			if !dns.IsSubDomain(z.apex, dns.CanonicalName(target)) {
				return nil // the resolver follows targets outside the zone
			}
			name = target
			continue
		}
		break
	}
	// The name exists without the asked type: NOERROR with no answer (NODATA).
	resp.Ns = []dns.RR{z.negativeSOA()}
	return nil
}

// hasDescendant reports whether name is an empty non-terminal: it has no sets but a name
// below it does, so it exists (RFC 8020) and gets NODATA rather than NXDOMAIN.
func (z *zone) hasDescendant(name string) bool {
	for n := range z.names {
		if n != name && dns.IsSubDomain(name, n) {
			return true
		}
	}
	return false
}

// negativeSOA is the SOA for the authority section of a negative answer: its TTL is the
// smaller of the SOA's TTL and its MINIMUM, the time resolvers cache the negative answer.
func (z *zone) negativeSOA() dns.RR {
	soa := dns.Copy(z.soa).(*dns.SOA)
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	return soa
}

func (z *zone) appendSets(resp *dns.Msg, owner string, t uint16, sets []RecordSet) error {
	if t == dns.TypeSOA {
		resp.Answer = append(resp.Answer, withOwner(dns.Copy(z.soa), owner))
		return nil
	}
	for _, rs := range z.route(sets) {
		for _, v := range rs.Values {
			rr, err := toRR(owner, t, rs.TTL, v)
			if err != nil {
				return err
			}
			resp.Answer = append(resp.Answer, rr)
		}
	}
	return nil
}

func withOwner(rr dns.RR, owner string) dns.RR {
	rr.Header().Name = owner
	return rr
}

func toRR(owner string, t uint16, ttl int64, value string) (dns.RR, error) {
	ttl = max(0, min(ttl, 1<<31-1))
	rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", dns.Fqdn(owner), ttl, dns.TypeToString[t], value))
	if err != nil {
		return nil, fmt.Errorf("record %s %s value %q: %w", owner, dns.TypeToString[t], value, err)
	}
	if rr == nil || rr.Header().Rrtype != t {
		return nil, fmt.Errorf("record %s %s value %q: not a %s record", owner, dns.TypeToString[t], value, dns.TypeToString[t])
	}
	return rr, nil
}
