package dnsfake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// memSource is a stateful in-memory Source, like the front's view of Route 53.
type memSource struct {
	mu    sync.Mutex
	zones []Zone
	sets  map[string][]RecordSet // by zone ID
	err   error
	calls int
}

func newMemSource(zones ...Zone) *memSource {
	return &memSource{zones: zones, sets: make(map[string][]RecordSet)}
}

func (m *memSource) Zones(context.Context) ([]Zone, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.err != nil {
		return nil, m.err
	}
	return slices.Clone(m.zones), nil
}

func (m *memSource) RecordSets(_ context.Context, zoneID string) ([]RecordSet, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	return slices.Clone(m.sets[zoneID]), nil
}

// upsert replaces the set with the same (name, type, SetIdentifier) or adds it.
func (m *memSource) upsert(zoneID string, rs RecordSet) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sets := m.sets[zoneID]
	for i, old := range sets {
		if strings.EqualFold(dns.Fqdn(old.Name), dns.Fqdn(rs.Name)) && old.Type == rs.Type && old.SetIdentifier == rs.SetIdentifier {
			sets[i] = rs
			return
		}
	}
	m.sets[zoneID] = append(sets, rs)
}

func (m *memSource) setErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// health is a stateful set of unhealthy health check IDs.
type health struct {
	mu        sync.Mutex
	unhealthy map[string]bool
}

func (h *health) set(id string, healthy bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.unhealthy == nil {
		h.unhealthy = map[string]bool{}
	}
	h.unhealthy[id] = !healthy
}

func (h *health) Healthy(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.unhealthy[id]
}

const zoneID = "Z0SWARM"

func start(t *testing.T, src Source, opts Options) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", src, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func query(t *testing.T, s *Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	r, _, err := c.ExchangeContext(t.Context(), m, s.Addr())
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return r
}

// rdata gives the answer's record data (no owner, TTL or class), sorted.
func rdata(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header().String()
		out = append(out, strings.TrimPrefix(rr.String(), h))
	}
	sort.Strings(out)
	return out
}

func w(n int64) *int64 { return &n }

func simpleSource() *memSource {
	src := newMemSource(Zone{ID: zoneID, Name: "swarm.internal"})
	for _, rs := range []RecordSet{
		{Name: "managers.swarm.internal.", Type: "A", TTL: 10, Values: []string{"10.0.1.5", "10.0.2.6"}},
		{Name: "managers.swarm.internal.", Type: "TXT", TTL: 60, Values: []string{`"cluster=prod" "v=1"`, `"plain"`}},
		{Name: "v6.swarm.internal", Type: "AAAA", TTL: 30, Values: []string{"fd00::5"}},
		{Name: "alias.swarm.internal.", Type: "CNAME", TTL: 300, Values: []string{"managers.swarm.internal."}},
		{Name: "outside.swarm.internal.", Type: "CNAME", TTL: 300, Values: []string{"host.example.com."}},
		{Name: "_docker._tcp.swarm.internal.", Type: "SRV", TTL: 60, Values: []string{"10 5 2377 node1.swarm.internal."}},
		{Name: "deep.a.b.swarm.internal.", Type: "A", TTL: 60, Values: []string{"10.0.9.9"}},
	} {
		src.upsert(zoneID, rs)
	}
	return src
}

func TestSimpleAnswers(t *testing.T) {
	s := start(t, simpleSource(), Options{})
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		want    []string
		wantTTL uint32
	}{
		{name: "A all values", qname: "managers.swarm.internal.", qtype: dns.TypeA, want: []string{"10.0.1.5", "10.0.2.6"}, wantTTL: 10},
		{name: "case-insensitive name", qname: "MANAGERS.Swarm.Internal.", qtype: dns.TypeA, want: []string{"10.0.1.5", "10.0.2.6"}, wantTTL: 10},
		{name: "AAAA", qname: "v6.swarm.internal.", qtype: dns.TypeAAAA, want: []string{"fd00::5"}, wantTTL: 30},
		{name: "TXT", qname: "managers.swarm.internal.", qtype: dns.TypeTXT, want: []string{`"cluster=prod" "v=1"`, `"plain"`}, wantTTL: 60},
		{name: "CNAME asked", qname: "alias.swarm.internal.", qtype: dns.TypeCNAME, want: []string{"managers.swarm.internal."}, wantTTL: 300},
		{name: "SRV", qname: "_docker._tcp.swarm.internal.", qtype: dns.TypeSRV, want: []string{"10 5 2377 node1.swarm.internal."}, wantTTL: 60},
		{name: "default SOA at apex", qname: "swarm.internal.", qtype: dns.TypeSOA, want: []string{"ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"}, wantTTL: 900},
		{name: "default NS at apex", qname: "swarm.internal.", qtype: dns.TypeNS, want: []string{"ns-1536.awsdns-00.co.uk."}, wantTTL: 172800},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tt.name+" "+network, func(t *testing.T) {
				r := query(t, s, network, tt.qname, tt.qtype)
				if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
					t.Fatalf("rcode %s aa=%v, want NOERROR aa=true", dns.RcodeToString[r.Rcode], r.Authoritative)
				}
				if got := rdata(r.Answer); !slices.Equal(got, tt.want) {
					t.Fatalf("answer %q, want %q", got, tt.want)
				}
				for _, rr := range r.Answer {
					if rr.Header().Ttl != tt.wantTTL {
						t.Errorf("TTL %d, want %d", rr.Header().Ttl, tt.wantTTL)
					}
					if !strings.EqualFold(rr.Header().Name, tt.qname) {
						t.Errorf("owner %q, want %q", rr.Header().Name, tt.qname)
					}
				}
			})
		}
	}
}

func TestCNAMEFollowedInsideZone(t *testing.T) {
	s := start(t, simpleSource(), Options{})
	tests := []struct {
		name, qname string
		want        []string
	}{
		{name: "target in zone", qname: "alias.swarm.internal.", want: []string{"10.0.1.5", "10.0.2.6", "managers.swarm.internal."}},
		{name: "target outside zone", qname: "outside.swarm.internal.", want: []string{"host.example.com."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := query(t, s, "udp", tt.qname, dns.TypeA)
			if r.Rcode != dns.RcodeSuccess {
				t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
			}
			if got := rdata(r.Answer); !slices.Equal(got, tt.want) {
				t.Errorf("answer %q, want %q", got, tt.want)
			}
			if _, ok := r.Answer[0].(*dns.CNAME); !ok {
				t.Errorf("first answer %v, want the CNAME", r.Answer[0])
			}
		})
	}
}

func TestNegativeAnswers(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		zoneSOA   *RecordSet
		qname     string
		qtype     uint16
		wantRcode int
		wantSOA   bool
		wantTTL   uint32 // authority SOA TTL
	}{
		{name: "no such name", qname: "nobody.swarm.internal.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true, wantTTL: 900},
		{name: "other type only", qname: "v6.swarm.internal.", qtype: dns.TypeA, wantRcode: dns.RcodeSuccess, wantSOA: true, wantTTL: 900},
		{name: "empty non-terminal", qname: "a.b.swarm.internal.", qtype: dns.TypeA, wantRcode: dns.RcodeSuccess, wantSOA: true, wantTTL: 900},
		{name: "below a leaf", qname: "x.deep.a.b.swarm.internal.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true, wantTTL: 900},
		{name: "options lower the SOA TTL", opts: Options{SOATTL: 5}, qname: "nobody.swarm.internal.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true, wantTTL: 5},
		{name: "options lower the SOA minimum", opts: Options{SOAMinimum: 7}, qname: "nobody.swarm.internal.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true, wantTTL: 7},
		{
			name:    "zone's own SOA",
			zoneSOA: &RecordSet{Name: "swarm.internal.", Type: "SOA", TTL: 60, Values: []string{"ns-1.awsdns-01.org. hostmaster.example.com. 1 7200 900 1209600 30"}},
			qname:   "nobody.swarm.internal.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true, wantTTL: 30,
		},
		{name: "outside every zone", qname: "example.com.", qtype: dns.TypeA, wantRcode: dns.RcodeRefused},
		{name: "parent of a zone", qname: "internal.", qtype: dns.TypeA, wantRcode: dns.RcodeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := simpleSource()
			if tt.zoneSOA != nil {
				src.upsert(zoneID, *tt.zoneSOA)
			}
			s := start(t, src, tt.opts)
			r := query(t, s, "udp", tt.qname, tt.qtype)
			if r.Rcode != tt.wantRcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if len(r.Answer) != 0 {
				t.Errorf("answer %v, want none", r.Answer)
			}
			if !tt.wantSOA {
				if len(r.Ns) != 0 {
					t.Errorf("authority %v, want none", r.Ns)
				}
				return
			}
			if len(r.Ns) != 1 {
				t.Fatalf("authority %v, want one SOA", r.Ns)
			}
			soa, ok := r.Ns[0].(*dns.SOA)
			if !ok || !strings.EqualFold(soa.Hdr.Name, "swarm.internal.") {
				t.Fatalf("authority %v, want the zone's SOA", r.Ns[0])
			}
			if soa.Hdr.Ttl != tt.wantTTL {
				t.Errorf("SOA TTL %d, want %d", soa.Hdr.Ttl, tt.wantTTL)
			}
		})
	}
}

func TestLongestZoneMatch(t *testing.T) {
	src := newMemSource(Zone{ID: "ZOUTER", Name: "example.internal."}, Zone{ID: "ZINNER", Name: "Swarm.Example.Internal"})
	src.upsert("ZOUTER", RecordSet{Name: "web.example.internal", Type: "A", TTL: 60, Values: []string{"10.1.0.1"}})
	src.upsert("ZOUTER", RecordSet{Name: "managers.swarm.example.internal", Type: "A", TTL: 60, Values: []string{"10.1.0.2"}})
	src.upsert("ZINNER", RecordSet{Name: "workers.swarm.example.internal", Type: "A", TTL: 60, Values: []string{"10.2.0.1"}})
	s := start(t, src, Options{})
	tests := []struct {
		qname     string
		wantRcode int
		want      []string
	}{
		{qname: "web.example.internal.", want: []string{"10.1.0.1"}},
		{qname: "workers.swarm.example.internal.", want: []string{"10.2.0.1"}},
		{qname: "WORKERS.SWARM.EXAMPLE.INTERNAL.", want: []string{"10.2.0.1"}},
		// The inner zone owns the name even though the outer one holds a set for it.
		{qname: "managers.swarm.example.internal.", wantRcode: dns.RcodeNameError},
	}
	for _, tt := range tests {
		t.Run(tt.qname, func(t *testing.T) {
			r := query(t, s, "udp", tt.qname, dns.TypeA)
			if r.Rcode != tt.wantRcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if got := rdata(r.Answer); !slices.Equal(got, tt.want) {
				t.Errorf("answer %q, want %q", got, tt.want)
			}
		})
	}
}

func failoverSet(role, ip, check string) RecordSet {
	return RecordSet{Name: "managers.swarm.internal", Type: "A", TTL: 10, Values: []string{ip},
		SetIdentifier: strings.ToLower(role), Failover: role, HealthCheckID: check}
}

func TestFailover(t *testing.T) {
	tests := []struct {
		name      string
		sets      []RecordSet
		unhealthy []string
		want      string
	}{
		{name: "primary healthy", sets: []RecordSet{failoverSet("PRIMARY", "10.0.0.1", "hc-p"), failoverSet("SECONDARY", "10.0.0.2", "hc-s")}, want: "10.0.0.1"},
		{name: "primary unhealthy", sets: []RecordSet{failoverSet("PRIMARY", "10.0.0.1", "hc-p"), failoverSet("SECONDARY", "10.0.0.2", "hc-s")}, unhealthy: []string{"hc-p"}, want: "10.0.0.2"},
		{name: "primary without check counts as healthy", sets: []RecordSet{failoverSet("PRIMARY", "10.0.0.1", ""), failoverSet("SECONDARY", "10.0.0.2", "hc-s")}, unhealthy: []string{"hc-s"}, want: "10.0.0.1"},
		{name: "secondary unhealthy too: primary", sets: []RecordSet{failoverSet("PRIMARY", "10.0.0.1", "hc-p"), failoverSet("SECONDARY", "10.0.0.2", "hc-s")}, unhealthy: []string{"hc-p", "hc-s"}, want: "10.0.0.1"},
		{name: "secondary alone", sets: []RecordSet{failoverSet("SECONDARY", "10.0.0.2", "")}, want: "10.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newMemSource(Zone{ID: zoneID, Name: "swarm.internal"})
			for _, rs := range tt.sets {
				src.upsert(zoneID, rs)
			}
			h := &health{}
			for _, id := range tt.unhealthy {
				h.set(id, false)
			}
			s := start(t, src, Options{Healthy: h.Healthy})
			for range 5 {
				r := query(t, s, "udp", "managers.swarm.internal.", dns.TypeA)
				if got := rdata(r.Answer); !slices.Equal(got, []string{tt.want}) {
					t.Fatalf("answer %q, want [%s]", got, tt.want)
				}
			}
		})
	}
}

// TestFailoverFollowsHealthAtOnce flips a health check between queries.
func TestFailoverFollowsHealthAtOnce(t *testing.T) {
	src := newMemSource(Zone{ID: zoneID, Name: "swarm.internal"})
	src.upsert(zoneID, failoverSet("PRIMARY", "10.0.0.1", "hc-p"))
	src.upsert(zoneID, failoverSet("SECONDARY", "10.0.0.2", ""))
	h := &health{}
	s := start(t, src, Options{Healthy: h.Healthy})
	steps := []struct {
		healthy bool
		want    string
	}{{true, "10.0.0.1"}, {false, "10.0.0.2"}, {true, "10.0.0.1"}}
	for i, st := range steps {
		h.set("hc-p", st.healthy)
		r := query(t, s, "udp", "managers.swarm.internal.", dns.TypeA)
		if got := rdata(r.Answer); !slices.Equal(got, []string{st.want}) {
			t.Errorf("step %d (primary healthy=%v): answer %q, want [%s]", i, st.healthy, got, st.want)
		}
	}
}

func multiSource(n int, check func(i int) string) *memSource {
	src := newMemSource(Zone{ID: zoneID, Name: "swarm.internal"})
	for i := range n {
		src.upsert(zoneID, RecordSet{Name: "managers.swarm.internal", Type: "A", TTL: 10,
			Values:        []string{fmt.Sprintf("10.0.%d.1", i), fmt.Sprintf("10.0.%d.2", i)},
			SetIdentifier: fmt.Sprintf("node-%d", i), MultiValue: true, HealthCheckID: check(i)})
	}
	return src
}

func TestMultiValue(t *testing.T) {
	tests := []struct {
		name      string
		sets      int
		unhealthy map[int]bool
		wantSets  int   // sets per answer
		wantSeen  []int // sets that must show up over many queries
		wantNever []int // sets that must never show up
	}{
		{name: "three sets, all answered", sets: 3, wantSets: 3, wantSeen: []int{0, 1, 2}},
		{name: "ten sets, eight per answer, all in turn", sets: 10, wantSets: 8, wantSeen: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{name: "unhealthy left out", sets: 4, unhealthy: map[int]bool{1: true, 3: true}, wantSets: 2, wantSeen: []int{0, 2}, wantNever: []int{1, 3}},
		{name: "all unhealthy: up to eight anyway", sets: 9, unhealthy: map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true}, wantSets: 8, wantSeen: []int{0, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &health{}
			src := multiSource(tt.sets, func(i int) string {
				id := fmt.Sprintf("hc-%d", i)
				h.set(id, !tt.unhealthy[i])
				return id
			})
			s := start(t, src, Options{Healthy: h.Healthy})
			seen := map[int]bool{}
			orders := map[string]bool{}
			for range 60 {
				r := query(t, s, "tcp", "managers.swarm.internal.", dns.TypeA)
				bySet := map[int]int{}
				var order []string
				for _, rr := range r.Answer {
					var set, host int
					if _, err := fmt.Sscanf(rr.(*dns.A).A.String(), "10.0.%d.%d", &set, &host); err != nil {
						t.Fatalf("unexpected address %v", rr)
					}
					bySet[set]++
					seen[set] = true
					order = append(order, rr.(*dns.A).A.String())
				}
				orders[strings.Join(order, ",")] = true
				if len(bySet) != tt.wantSets {
					t.Fatalf("answer holds %d sets, want %d: %v", len(bySet), tt.wantSets, r.Answer)
				}
				for set, n := range bySet {
					if n != 2 {
						t.Fatalf("set %d gave %d values, want both", set, n)
					}
				}
			}
			for _, i := range tt.wantSeen {
				if !seen[i] {
					t.Errorf("set %d never answered in 60 queries", i)
				}
			}
			for _, i := range tt.wantNever {
				if seen[i] {
					t.Errorf("unhealthy set %d answered", i)
				}
			}
			if tt.wantSets > 1 && len(orders) < 2 {
				t.Errorf("answers always in the same order %v, want them shuffled", orders)
			}
		})
	}
}

func weightedSource(weights []int64, checks []string) *memSource {
	src := newMemSource(Zone{ID: zoneID, Name: "swarm.internal"})
	for i, wt := range weights {
		src.upsert(zoneID, RecordSet{Name: "managers.swarm.internal", Type: "A", TTL: 10,
			Values: []string{fmt.Sprintf("10.0.0.%d", i)}, SetIdentifier: fmt.Sprintf("w%d", i),
			Weight: w(wt), HealthCheckID: checks[i]})
	}
	return src
}

func TestWeighted(t *testing.T) {
	const queries = 400
	tests := []struct {
		name      string
		weights   []int64
		checks    []string
		unhealthy []string
		// wantShare is the expected share of each set; a set at 0 must never be answered.
		wantShare []float64
	}{
		{name: "one weight zero", weights: []int64{1, 0}, checks: []string{"", ""}, wantShare: []float64{1, 0}},
		{name: "all weights zero: equal", weights: []int64{0, 0}, checks: []string{"", ""}, wantShare: []float64{0.5, 0.5}},
		{name: "three to one", weights: []int64{3, 1}, checks: []string{"", ""}, wantShare: []float64{0.75, 0.25}},
		{name: "unhealthy skipped", weights: []int64{5, 1}, checks: []string{"hc-0", ""}, unhealthy: []string{"hc-0"}, wantShare: []float64{0, 1}},
		{name: "weight zero used when the rest is unhealthy", weights: []int64{5, 0}, checks: []string{"hc-0", ""}, unhealthy: []string{"hc-0"}, wantShare: []float64{0, 1}},
		{name: "all unhealthy: by weight", weights: []int64{1, 0}, checks: []string{"hc-0", "hc-1"}, unhealthy: []string{"hc-0", "hc-1"}, wantShare: []float64{1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &health{}
			for _, id := range tt.unhealthy {
				h.set(id, false)
			}
			s := start(t, weightedSource(tt.weights, tt.checks), Options{Healthy: h.Healthy})
			counts := make([]int, len(tt.weights))
			for range queries {
				r := query(t, s, "udp", "managers.swarm.internal.", dns.TypeA)
				if len(r.Answer) != 1 {
					t.Fatalf("answer %v, want exactly one record", r.Answer)
				}
				var i int
				if _, err := fmt.Sscanf(r.Answer[0].(*dns.A).A.String(), "10.0.0.%d", &i); err != nil || i < 0 || i >= len(counts) {
					t.Fatalf("answer %v: not one of the weighted sets (%v)", r.Answer[0], err)
				}
				counts[i]++
			}
			for i, want := range tt.wantShare {
				got := float64(counts[i]) / queries
				// Binomial spread at 400 draws is at most 0.025; allow five of it.
				if (want == 0 && counts[i] != 0) || (want == 1 && counts[i] != queries) || got < want-0.125 || got > want+0.125 {
					t.Errorf("set %d answered %d of %d times (%.2f), want share %.2f", i, counts[i], queries, got, want)
				}
			}
		})
	}
}

func TestChangesShowAtOnce(t *testing.T) {
	src := newMemSource(Zone{ID: zoneID, Name: "swarm.internal"})
	s := start(t, src, Options{})
	if r := query(t, s, "udp", "managers.swarm.internal.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("before registration: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	src.upsert(zoneID, RecordSet{Name: "managers.swarm.internal", Type: "A", TTL: 10, Values: []string{"10.0.0.1"}})
	r := query(t, s, "udp", "managers.swarm.internal.", dns.TypeA)
	if got := rdata(r.Answer); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Fatalf("after registration: %q, want [10.0.0.1]", got)
	}
	src.upsert(zoneID, RecordSet{Name: "managers.swarm.internal", Type: "A", TTL: 10, Values: []string{"10.0.0.2"}})
	r = query(t, s, "udp", "managers.swarm.internal.", dns.TypeA)
	if got := rdata(r.Answer); !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Fatalf("after UPSERT: %q, want [10.0.0.2]", got)
	}
}

func TestBadSourceOrRecordsServfail(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*memSource)
		qname string
	}{
		{name: "source fails", setup: func(m *memSource) { m.setErr(errors.New("throttled")) }, qname: "managers.swarm.internal."},
		{name: "bad value", setup: func(m *memSource) {
			m.upsert(zoneID, RecordSet{Name: "bad.swarm.internal", Type: "A", TTL: 10, Values: []string{"not-an-ip"}})
		}, qname: "bad.swarm.internal."},
		{name: "bad SOA", setup: func(m *memSource) {
			m.upsert(zoneID, RecordSet{Name: "swarm.internal", Type: "SOA", TTL: 10, Values: []string{"garbage"}})
		}, qname: "managers.swarm.internal."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := simpleSource()
			tt.setup(src)
			s := start(t, src, Options{})
			r := query(t, s, "udp", tt.qname, dns.TypeA)
			if r.Rcode != dns.RcodeServerFailure {
				t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
			}
		})
	}
}

func TestTruncationOverUDP(t *testing.T) {
	src := multiSource(8, func(int) string { return "" })
	for i := range 8 { // make each set big: 30 addresses
		var vals []string
		for j := range 30 {
			vals = append(vals, fmt.Sprintf("10.0.%d.%d", i, j+1))
		}
		src.upsert(zoneID, RecordSet{Name: "managers.swarm.internal", Type: "A", TTL: 10, Values: vals,
			SetIdentifier: fmt.Sprintf("node-%d", i), MultiValue: true})
	}
	s := start(t, src, Options{})
	if r := query(t, s, "udp", "managers.swarm.internal.", dns.TypeA); !r.Truncated || len(r.Answer) >= 240 {
		t.Errorf("UDP: truncated=%v with %d answers, want TC and fewer than 240", r.Truncated, len(r.Answer))
	}
	if r := query(t, s, "tcp", "managers.swarm.internal.", dns.TypeA); r.Truncated || len(r.Answer) != 240 {
		t.Errorf("TCP: truncated=%v with %d answers, want 240", r.Truncated, len(r.Answer))
	}
}

// resolver returns Go's own resolver sending every query to s, as the agent will.
func resolver(s *Server) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr())
		},
	}
}

func TestGoResolver(t *testing.T) {
	src := simpleSource()
	h := &health{}
	h.set("hc-p", false)
	// big multivalue answer: UDP truncates, Go retries over TCP
	var want []string
	for i := range 8 {
		var vals []string
		for j := range 20 {
			vals = append(vals, fmt.Sprintf("10.1.%d.%d", i, j+1))
		}
		want = append(want, vals...)
		src.upsert(zoneID, RecordSet{Name: "big.swarm.internal", Type: "A", TTL: 10, Values: vals,
			SetIdentifier: fmt.Sprintf("n%d", i), MultiValue: true})
	}
	sort.Strings(want)
	s := start(t, src, Options{Healthy: h.Healthy})
	r := resolver(s)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	t.Run("LookupHost A and NODATA AAAA", func(t *testing.T) {
		got, err := r.LookupHost(ctx, "managers.swarm.internal.")
		if err != nil {
			t.Fatalf("LookupHost: %v", err)
		}
		sort.Strings(got)
		if !slices.Equal(got, []string{"10.0.1.5", "10.0.2.6"}) {
			t.Errorf("LookupHost = %q", got)
		}
	})
	t.Run("LookupHost failover", func(t *testing.T) {
		src.upsert(zoneID, RecordSet{Name: "fo.swarm.internal", Type: "A", TTL: 10, Values: []string{"10.0.0.1"}, SetIdentifier: "p", Failover: "PRIMARY", HealthCheckID: "hc-p"})
		src.upsert(zoneID, RecordSet{Name: "fo.swarm.internal", Type: "A", TTL: 10, Values: []string{"10.0.0.2"}, SetIdentifier: "s", Failover: "SECONDARY"})
		got, err := r.LookupHost(ctx, "fo.swarm.internal.")
		if err != nil || !slices.Equal(got, []string{"10.0.0.2"}) {
			t.Errorf("LookupHost = %q, %v; want [10.0.0.2]", got, err)
		}
	})
	t.Run("LookupHost through TCP after truncation", func(t *testing.T) {
		got, err := r.LookupHost(ctx, "big.swarm.internal.")
		if err != nil {
			t.Fatalf("LookupHost: %v", err)
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("LookupHost gave %d addresses, want all %d", len(got), len(want))
		}
	})
	t.Run("LookupIP v6", func(t *testing.T) {
		got, err := r.LookupIP(ctx, "ip6", "v6.swarm.internal.")
		if err != nil || len(got) != 1 || got[0].String() != "fd00::5" {
			t.Errorf("LookupIP = %v, %v; want [fd00::5]", got, err)
		}
	})
	t.Run("LookupCNAME", func(t *testing.T) {
		got, err := r.LookupCNAME(ctx, "alias.swarm.internal.")
		if err != nil || got != "managers.swarm.internal." {
			t.Errorf("LookupCNAME = %q, %v", got, err)
		}
	})
	t.Run("LookupSRV", func(t *testing.T) {
		_, got, err := r.LookupSRV(ctx, "docker", "tcp", "swarm.internal.")
		if err != nil || len(got) != 1 || got[0].Port != 2377 || got[0].Target != "node1.swarm.internal." {
			t.Errorf("LookupSRV = %v, %v", got, err)
		}
	})
	t.Run("LookupTXT", func(t *testing.T) {
		got, err := r.LookupTXT(ctx, "managers.swarm.internal.")
		sort.Strings(got)
		if err != nil || !slices.Equal(got, []string{"cluster=prodv=1", "plain"}) {
			t.Errorf("LookupTXT = %q, %v", got, err)
		}
	})
	t.Run("NXDOMAIN is not found", func(t *testing.T) {
		_, err := r.LookupHost(ctx, "nobody.swarm.internal.")
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("LookupHost = %v, want a not-found DNSError", err)
		}
	})
	t.Run("NODATA is not found", func(t *testing.T) {
		_, err := r.LookupIP(ctx, "ip4", "v6.swarm.internal.")
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("LookupIP = %v, want a not-found DNSError", err)
		}
	})
	t.Run("REFUSED is an error, not not-found", func(t *testing.T) {
		_, err := r.LookupHost(ctx, "example.com.")
		var de *net.DNSError
		if !errors.As(err, &de) || de.IsNotFound {
			t.Errorf("LookupHost = %v, want a DNSError other than not-found", err)
		}
	})
}

func TestStartAndClose(t *testing.T) {
	src := simpleSource()
	s, err := Start("127.0.0.1:0", src, Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	addr := s.Addr()
	t.Run("same port on UDP and TCP", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			if r := query(t, s, network, "managers.swarm.internal.", dns.TypeA); len(r.Answer) != 2 {
				t.Errorf("%s: answer %v", network, r.Answer)
			}
		}
	})
	t.Run("address in use", func(t *testing.T) {
		if s2, err := Start(addr, src, Options{}); err == nil {
			s2.Close()
			t.Errorf("second Start on %s succeeded, want an error", addr)
		}
	})
	t.Run("bad address", func(t *testing.T) {
		if _, err := Start("nonsense", src, Options{}); err == nil {
			t.Errorf("Start(nonsense) succeeded")
		}
	})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Both listeners are gone: the address can be taken again.
	s3, err := Start(addr, src, Options{})
	if err != nil {
		t.Fatalf("Start again on %s after Close: %v", addr, err)
	}
	if err := s3.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestConcurrentQueriesAndChanges(t *testing.T) {
	src := simpleSource()
	s := start(t, src, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 8 {
		wg.Go(func() {
			c := &dns.Client{Net: []string{"udp", "tcp"}[i%2], Timeout: 5 * time.Second}
			for j := range 25 {
				if i == 0 {
					src.upsert(zoneID, RecordSet{Name: "churn.swarm.internal", Type: "A", TTL: 1, Values: []string{fmt.Sprintf("10.9.0.%d", j+1)}})
				}
				m := new(dns.Msg)
				m.SetQuestion("managers.swarm.internal.", dns.TypeA)
				r, _, err := c.ExchangeContext(t.Context(), m, s.Addr())
				if err != nil {
					errs <- err
					return
				}
				if len(r.Answer) != 2 {
					errs <- fmt.Errorf("answer %v", r.Answer)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
