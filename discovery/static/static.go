// Package static discovers managers from a fixed list given in the discovery string.
package static

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// DefaultPort is the swarm port assumed for a manager given without one.
const DefaultPort = 2377

// Config is a parsed static discovery string.
type Config struct {
	// Managers are the managers' addresses, ip:port, in the order given.
	Managers []string
	// Init is the IP address of the one node allowed to create the swarm.
	Init netip.Addr
}

// Help describes the keys of provider=static.
func Help() string {
	return `provider=static: a fixed list of managers.
  managers=IP[:PORT],IP[:PORT],...  required; IP addresses (IPv6 as [addr]:port), port defaults to 2377
  init=IP                           the manager allowed to create the swarm (default: the first manager);
                                    every other node waits for it instead of taking the bootstrap lock
No AWS permissions are needed. Managers are not registered anywhere: the list is the truth.`
}

// FromSpec validates a provider=static discovery string. Errors wrap
// discovery.ErrDiscoveryConfig and name the key, the value and the rule.
func FromSpec(s discovery.Spec) (Config, error) {
	if s.Provider != "static" {
		return Config{}, fmt.Errorf("%w: provider %q: want static", discovery.ErrDiscoveryConfig, s.Provider)
	}
	if err := s.CheckKeys("managers", "init"); err != nil {
		return Config{}, fmt.Errorf("%w: %w", discovery.ErrDiscoveryConfig, err)
	}
	if err := s.Require("managers"); err != nil {
		return Config{}, fmt.Errorf("%w: %w", discovery.ErrDiscoveryConfig, err)
	}
	var cfg Config
	var first netip.Addr
	for item := range strings.SplitSeq(s.Args["managers"], ",") {
		ap, err := parseManager(item)
		if err != nil {
			return Config{}, fmt.Errorf("%w: static managers=%q: %w", discovery.ErrDiscoveryConfig, s.Args["managers"], err)
		}
		if !first.IsValid() {
			first = ap.Addr()
		}
		a := ap.String()
		for _, m := range cfg.Managers {
			if m == a {
				return Config{}, fmt.Errorf("%w: static managers=%q: %s is listed twice", discovery.ErrDiscoveryConfig, s.Args["managers"], a)
			}
		}
		cfg.Managers = append(cfg.Managers, a)
	}
	cfg.Init = first
	if v, ok := s.Args["init"]; ok {
		ip, err := netip.ParseAddr(v)
		if err != nil || ip.Zone() != "" {
			return Config{}, fmt.Errorf("%w: static init=%q: must be an IP address without port", discovery.ErrDiscoveryConfig, v)
		}
		ip = ip.Unmap()
		found := false
		for _, m := range cfg.Managers {
			if netip.MustParseAddrPort(m).Addr() == ip {
				found = true
				break
			}
		}
		if !found {
			return Config{}, fmt.Errorf("%w: static init=%q: must be one of managers=%q", discovery.ErrDiscoveryConfig, v, s.Args["managers"])
		}
		cfg.Init = ip
	}
	return cfg, nil
}

func parseManager(item string) (netip.AddrPort, error) {
	item = strings.TrimSpace(item)
	if item == "" {
		return netip.AddrPort{}, fmt.Errorf("empty entry")
	}
	host, port := item, DefaultPort
	if h, p, err := net.SplitHostPort(item); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return netip.AddrPort{}, fmt.Errorf("entry %q: port must be 1..65535", item)
		}
		host, port = h, n
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("entry %q: must be an IP address with optional :port", item)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// What the provider is to the boot.
var (
	_ discovery.Discoverer = (*Provider)(nil)
	_ discovery.Registry   = (*Provider)(nil)
	_ discovery.Locker     = (*Provider)(nil)
)

// Provider is a static Discoverer and Locker.
type Provider struct {
	cfg  Config
	self netip.Addr
}

var (
	_ discovery.Discoverer = (*Provider)(nil)
	_ discovery.Locker     = (*Provider)(nil)
	_ discovery.Registry   = (*Provider)(nil)
)

// New parses spec and returns a provider for the node whose private IP is selfIP.
func New(spec discovery.Spec, selfIP string) (*Provider, error) {
	cfg, err := FromSpec(spec)
	if err != nil {
		return nil, err
	}
	self, err := netip.ParseAddr(selfIP)
	if err != nil {
		return nil, fmt.Errorf("static discovery: own address %q: must be an IP address", selfIP)
	}
	return &Provider{cfg: cfg, self: self.Unmap()}, nil
}

// Config returns the parsed configuration.
func (p *Provider) Config() Config { return p.cfg }

// Managers returns the configured list (host:port).
func (p *Provider) Managers(context.Context) ([]string, error) {
	return append([]string(nil), p.cfg.Managers...), nil
}

// TryLock grants the bootstrap lock only to the init node; every other node gets
// discovery.ErrLockHeld and waits for it. The lock is a fixed rule, so it never expires and
// releasing it does nothing.
func (p *Provider) TryLock(context.Context, discovery.Holder, discovery.AliveFunc) (discovery.Lock, error) {
	if p.self != p.cfg.Init {
		return nil, fmt.Errorf("static discovery: only %s may create the swarm (this node is %s): %w", p.cfg.Init, p.self, discovery.ErrLockHeld)
	}
	return lock{}, nil
}

type lock struct{}

func (lock) Renew(context.Context) error   { return nil }
func (lock) TTL() time.Duration            { return 0 }
func (lock) Release(context.Context) error { return nil }

// Registered is empty: the static list names who may be a manager, nobody registers in it, so
// a listed manager that does not answer is not known to exist. The init node creates the swarm
// when no listed manager answers (the operator's list is the truth); a restarted init node
// whose engine still has swarm state never does (boot waits for that state to settle).
func (p *Provider) Registered(context.Context) ([]swarm.Member, error) { return nil, nil }
