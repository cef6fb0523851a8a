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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

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
	// The owner record (owner.go): ownerOK once it was seen or made naming this cluster;
	// ownerSeen the latest moment it was known to (a read's start, a DNS answer, this node's
	// CREATE applied); ownerNext is the earliest next check of it before DNS answers are
	// used; ownerWarned and claimSaid keep two log lines to one each.
	ownerOK     bool
	ownerSeen   time.Time
	ownerNext   time.Time
	ownerWarned bool
	claimSaid   bool
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
		if err := p.checkOwner(ctx); err != nil {
			return nil, err
		}
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
			p.log.Debug().Err(dnsErr).Str("record_name", p.cfg.Name).Msg("managers' name does not resolve yet")
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
	// A records only: managers are reached at their IPv4 address, and an AAAA query beside
	// every A query would double what thousands of booting nodes ask the resolver.
	ips, err := p.resolver.LookupNetIP(ctx, "ip4", p.fqdn())
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", p.cfg.Name, err)
	}
	var out []string
	for _, a := range ips {
		a = a.Unmap()
		if !a.Is4() {
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
	if err := p.checkRead(r); err != nil {
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
	if err := p.checkRead(r); err != nil {
		return nil, err
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

func sameName(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}
