package route53

// The provider's configuration: the keys of provider=route53 and their checks.

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

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
	// Cluster is the node's cluster (--cluster), which the managers' record must belong to
	// (its owner record, a TXT at Name); "" stands for DefaultCluster.
	Cluster string
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
NAME belongs to one cluster (--cluster): its first manager writes TXT NAME "swarm-agent
cluster=<cluster>", and nodes of another cluster refuse NAME (exit 2): one name per cluster.
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
