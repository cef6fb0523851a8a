// Package route53 finds, locks and registers swarm managers through a Route 53 private hosted
// zone: managers are read over DNS (no API call, no account rate limit), the bootstrap lock is
// a TXT record set changed atomically through the API, and each manager publishes its address
// as a failover or multivalue A record set.
package route53

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// Record modes.
const (
	ModeMultivalue = "multivalue"
	ModeFailover   = "failover"
)

// Config is a parsed provider=route53 discovery string.
type Config struct {
	ZoneID string
	// Name is the managers' record name, without the final dot, lower case.
	Name string
	// Mode is multivalue (one set per manager) or failover (PRIMARY and SECONDARY).
	Mode string
	// Resolver is the DNS server (host:port) asked for Name; "" means the system resolver
	// (the VPC resolver on EC2).
	Resolver string
	// TTL of the managers' A record sets.
	TTL int64
	// LockTTL is how long the bootstrap lock lasts if its holder dies.
	LockTTL time.Duration
	// APIAfter is how long a node keeps getting negative DNS answers before it also reads the
	// record sets through the API (negative answers are cached by resolvers).
	APIAfter time.Duration
	// APIEvery is the mean interval between such API reads (jittered +-50%).
	APIEvery time.Duration
	// Port is the swarm port appended to addresses (2377).
	Port int
	// Role is the role of the node using the provider.
	Role swarm.Role
}

// Help describes the keys of provider=route53.
func Help() string {
	return `provider=route53: managers in a Route 53 private hosted zone.
  zone_id=Z...          required; the private hosted zone's id
  name=NAME             required; the managers' record name inside the zone (managers.swarm.internal)
  mode=multivalue       multivalue (one set per manager, SetIdentifier = instance id) or failover
                        (PRIMARY for the first manager, SECONDARY for the next)
  resolver=HOST:PORT    DNS server asked for NAME (default: the system resolver, the VPC's on EC2)
  ttl=10                TTL of the managers' A records, seconds (1..86400)
  lock_ttl=60s          how long the bootstrap lock (TXT _swarm-agent-lock.NAME) outlives a dead holder
  api_after=30s         after this long with negative DNS answers, also read the records through the API
  api_every=20s         mean interval (jittered) of those API reads
IAM: managers need route53:ListResourceRecordSets and
route53:ChangeResourceRecordSets on the zone; workers need nothing while managers answer in DNS,
and route53:ListResourceRecordSets to read past a cached negative answer.`
}

var zoneIDRe = func(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// FromSpec validates a provider=route53 discovery string for a node of role. Errors wrap
// discovery.ErrDiscoveryConfig and name the key, the value and the rule.
func FromSpec(s discovery.Spec, role swarm.Role) (Config, error) {
	bad := func(format string, a ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: route53 %s", discovery.ErrDiscoveryConfig, fmt.Sprintf(format, a...))
	}
	if s.Provider != "route53" {
		return Config{}, fmt.Errorf("%w: provider %q: want route53", discovery.ErrDiscoveryConfig, s.Provider)
	}
	if err := s.CheckKeys("zone_id", "name", "mode", "resolver", "ttl", "lock_ttl", "api_after", "api_every"); err != nil {
		return Config{}, fmt.Errorf("%w: %w", discovery.ErrDiscoveryConfig, err)
	}
	if err := s.Require("zone_id", "name"); err != nil {
		return Config{}, fmt.Errorf("%w: %w", discovery.ErrDiscoveryConfig, err)
	}
	c := Config{Role: role, Port: 2377}
	c.ZoneID = strings.TrimPrefix(s.Args["zone_id"], "/hostedzone/")
	if !zoneIDRe(c.ZoneID) {
		return bad("zone_id=%q: must be a hosted zone id (upper-case letters and digits, e.g. Z0123456789ABC)", s.Args["zone_id"])
	}
	c.Name = strings.TrimSuffix(strings.ToLower(s.Args["name"]), ".")
	if !validName(c.Name) {
		return bad("name=%q: must be a DNS name (labels of letters, digits and -, at most 253 characters)", s.Args["name"])
	}
	c.Mode = s.Get("mode", ModeMultivalue)
	if c.Mode != ModeMultivalue && c.Mode != ModeFailover {
		return bad("mode=%q: must be multivalue or failover", c.Mode)
	}
	if r, ok := s.Args["resolver"]; ok {
		if _, _, err := net.SplitHostPort(r); err != nil {
			r = net.JoinHostPort(r, "53")
		}
		host, port, _ := net.SplitHostPort(r)
		if _, err := netip.ParseAddr(host); err != nil {
			return bad("resolver=%q: must be IP[:PORT]", s.Args["resolver"])
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad("resolver=%q: port must be 1..65535", s.Args["resolver"])
		}
		c.Resolver = r
	}
	c.TTL = 10
	if v, ok := s.Args["ttl"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > 86400 {
			return bad("ttl=%q: must be whole seconds in 1..86400", v)
		}
		c.TTL = n
	}
	var err error
	if c.LockTTL, err = durationKey(s, "lock_ttl", 60*time.Second, 5*time.Second, time.Hour); err != nil {
		return Config{}, err
	}
	if c.APIAfter, err = durationKey(s, "api_after", 30*time.Second, 0, time.Hour); err != nil {
		return Config{}, err
	}
	if c.APIEvery, err = durationKey(s, "api_every", 20*time.Second, time.Second, time.Hour); err != nil {
		return Config{}, err
	}
	return c, nil
}

func durationKey(s discovery.Spec, key string, def, lo, hi time.Duration) (time.Duration, error) {
	v, ok := s.Args[key]
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		return 0, fmt.Errorf("%w: route53 %s=%q: must be a duration in %s..%s", discovery.ErrDiscoveryConfig, key, v, lo, hi)
	}
	return d, nil
}

func validName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	for l := range strings.SplitSeq(n, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// API is the part of the Route 53 client the provider uses; *route53.Client satisfies it.
type API interface {
	ListResourceRecordSets(ctx context.Context, in *awsroute53.ListResourceRecordSetsInput, optFns ...func(*awsroute53.Options)) (*awsroute53.ListResourceRecordSetsOutput, error)
	ChangeResourceRecordSets(ctx context.Context, in *awsroute53.ChangeResourceRecordSetsInput, optFns ...func(*awsroute53.Options)) (*awsroute53.ChangeResourceRecordSetsOutput, error)
}

// What the provider is to the boot, the drain and the leader (its tokens are in ssmtokens).
var (
	_ discovery.Discoverer = (*Provider)(nil)
	_ discovery.Registry   = (*Provider)(nil)
	_ discovery.Registrar  = (*Provider)(nil)
	_ discovery.Reconciler = (*Provider)(nil)
	_ discovery.Locker     = (*Provider)(nil)
)

// Provider is a Route 53 Discoverer, Registry, Registrar and Locker.
type Provider struct {
	cfg      Config
	api      API
	log      zerolog.Logger
	resolver *net.Resolver
	now      func() time.Time

	mu            sync.Mutex
	negativeSince time.Time // first negative DNS answer of the current run of them
	nextAPI       time.Time // earliest next API read after negative answers
	lockSeen      string    // the lock value last seen held by another node ("?": a CREATE was refused)
	lockSeenAt    time.Time // when (this node's clock) it was first seen
	lockHolder    string    // who holds it, for messages
	lockNextRead  time.Time // TryLock asks Route 53 again only from then on
	// last is the latest zone read; pinned says it is the read the held lock was taken on
	// (its compare-and-swap was conditioned on the lock record it saw), which Registered
	// then returns once instead of reading again.
	last   *zoneRead
	pinned bool
	// dnsAnswered is when DNS last answered the managers' name with addresses (failover:
	// a PRIMARY exists then, whatever an older read says).
	dnsAnswered time.Time
}

var (
	_ discovery.Discoverer = (*Provider)(nil)
	_ discovery.Registry   = (*Provider)(nil)
	_ discovery.Registrar  = (*Provider)(nil)
	_ discovery.Locker     = (*Provider)(nil)
)

// New returns a provider for cfg that calls api.
func New(cfg Config, api API, log zerolog.Logger) *Provider {
	if cfg.Port == 0 {
		cfg.Port = 2377
	}
	p := &Provider{cfg: cfg, api: api, log: log, resolver: net.DefaultResolver, now: time.Now}
	if cfg.Resolver != "" {
		addr := cfg.Resolver
		p.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	}
	return p
}

// Config returns the provider's configuration.
func (p *Provider) Config() Config { return p.cfg }

func (p *Provider) fqdn() string { return p.cfg.Name + "." }

// LockName is the TXT record set that holds the bootstrap lock.
func (p *Provider) LockName() string { return "_swarm-agent-lock." + p.cfg.Name }

// Managers resolves the managers' name over DNS. After negative answers for APIAfter it
// also reads the record sets through the API at a low, jittered rate, because resolvers cache
// negative answers for minutes. A worker that finds managers in DNS makes no API call.
func (p *Provider) Managers(ctx context.Context) ([]string, error) {
	addrs, dnsErr := p.lookup(ctx)
	if len(addrs) > 0 {
		p.mu.Lock()
		p.negativeSince, p.dnsAnswered = time.Time{}, p.now()
		p.mu.Unlock()
		return addrs, nil
	}
	if dnsErr != nil && !authoritativeNegative(dnsErr) {
		// A timeout or a server failure says nothing about the record: ask DNS again (the boot
		// loop backs off), never the API, which a thousand nodes would storm.
		return nil, fmt.Errorf("route53: %w (no answer is not a negative answer: retrying over DNS)", dnsErr)
	}
	now := p.now()
	p.mu.Lock()
	if p.negativeSince.IsZero() {
		p.negativeSince = now
	}
	due := now.Sub(p.negativeSince) >= p.cfg.APIAfter && !now.Before(p.nextAPI)
	if due {
		jitter := time.Duration(float64(p.cfg.APIEvery) * (0.5 + rand.Float64()))
		p.nextAPI = now.Add(jitter)
	}
	p.mu.Unlock()
	if !due {
		if dnsErr != nil {
			p.log.Debug().Err(dnsErr).Str("name", p.cfg.Name).Msg("managers' name does not resolve yet")
		}
		return nil, nil
	}
	p.log.Debug().Str("zone_id", p.cfg.ZoneID).Msg("negative DNS answers for a while: reading managers through the Route 53 API")
	return p.ConfirmManagers(ctx)
}

// authoritativeNegative tells an answer that the name has no address (NXDOMAIN, or no A
// record: Go reports both as not found) from a failure to get an answer.
func authoritativeNegative(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// lookup asks DNS; a negative answer gives (nil, err) with err describing it.
func (p *Provider) lookup(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := p.resolver.LookupHost(ctx, p.fqdn())
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", p.cfg.Name, err)
	}
	var out []string
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			continue
		}
		out = append(out, net.JoinHostPort(a.String(), strconv.Itoa(p.cfg.Port)))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ConfirmManagers reads the managers' A record sets through the API (the source of truth,
// past any resolver cache).
func (p *Provider) ConfirmManagers(ctx context.Context) ([]string, error) {
	r, err := p.readZone(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range r.managers {
		for _, r := range s.ResourceRecords {
			out = append(out, net.JoinHostPort(aws.ToString(r.Value), strconv.Itoa(p.cfg.Port)))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Registered reads the managers' A record sets through the API: multivalue sets carry the
// manager's instance id as SetIdentifier; failover sets (PRIMARY, SECONDARY) do not.
//
// Right after TryLock took the lock from a released value it returns, once, the read the lock
// was taken on instead of reading again: this version never deletes the lock record (a
// release leaves a "released" value, a holder registers in the same atomic batch that
// releases), so a compare-and-swap that found that value exactly as read proves that no
// holder created and registered a swarm since the read. A lock created where there was no
// record (older agents delete it) is read again.
func (p *Provider) Registered(ctx context.Context) ([]swarm.Member, error) {
	p.mu.Lock()
	r := p.last
	if !p.pinned {
		r = nil
	}
	p.pinned = false
	p.mu.Unlock()
	if r == nil {
		var err error
		if r, err = p.readZone(ctx); err != nil {
			return nil, err
		}
	}
	var out []swarm.Member
	for _, s := range r.managers {
		id := aws.ToString(s.SetIdentifier)
		if s.Failover != "" {
			id = ""
		}
		for _, r := range s.ResourceRecords {
			out = append(out, swarm.Member{InstanceID: id, Addr: aws.ToString(r.Value), Port: p.cfg.Port})
		}
	}
	return out, nil
}

// sets lists the record sets of exactly (name, type), following pages.
func (p *Provider) sets(ctx context.Context, name string, typ types.RRType) ([]types.ResourceRecordSet, error) {
	in := &awsroute53.ListResourceRecordSetsInput{HostedZoneId: aws.String(p.cfg.ZoneID),
		StartRecordName: aws.String(name), StartRecordType: typ}
	var out []types.ResourceRecordSet
	for {
		res, err := p.api.ListResourceRecordSets(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("route53: list record sets %s %s in zone %s: %w", name, typ, p.cfg.ZoneID, p.apiErr(err))
		}
		past := false
		for _, s := range res.ResourceRecordSets {
			if !sameName(aws.ToString(s.Name), name) || s.Type != typ {
				past = true
				break
			}
			out = append(out, s)
		}
		if past || !res.IsTruncated {
			return out, nil
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = res.NextRecordName, res.NextRecordType, res.NextRecordIdentifier
	}
}

func sameName(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

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
		sets := r.managers
		if !fresh {
			sets = p.withDNSAnswer(r)
		}
		changes, err := p.registration(m, sets)
		if err != nil {
			return err
		}
		if len(changes) == 0 {
			if fresh {
				return nil
			}
			r = nil // "already right" only on a fresh read: ask again
			continue
		}
		err = p.change(ctx, "register manager "+m.InstanceID, changes...)
		if err == nil {
			p.logRegistered(m, changes)
			return nil
		}
		if !isBatchConflict(err) {
			return err
		}
		if secondaryTaken(changes, err) {
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
	ev := p.log.Info().Str("manager_addr", m.Addr).Str("zone_id", p.cfg.ZoneID).Str("record", p.cfg.Name)
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
		sets, err := p.sets(ctx, p.cfg.Name, types.RRTypeA)
		if err != nil {
			return err
		}
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

// Reconcile makes the managers' record say what the swarm says (the leader's duty): in
// multivalue mode one set per live manager and none for others; in failover mode PRIMARY on
// the leader and SECONDARY on another live manager (the current SECONDARY when it is still
// live). It writes nothing when the record is already right, and one atomic batch otherwise.
func (p *Provider) Reconcile(ctx context.Context, leader swarm.Member, live []swarm.Member) error {
	sets, err := p.sets(ctx, p.cfg.Name, types.RRTypeA)
	if err != nil {
		return err
	}
	var changes []types.Change
	if p.cfg.Mode == ModeFailover {
		changes = p.failoverChanges(sets, leader, live)
	} else {
		changes = p.multivalueChanges(sets, live)
	}
	if len(changes) == 0 {
		return nil
	}
	if err := p.change(ctx, "reconcile managers' record", changes...); err != nil {
		return err
	}
	p.log.Info().Str("zone_id", p.cfg.ZoneID).Str("record", p.cfg.Name).Int("changes", len(changes)).Msg("managers' record reconciled")
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
