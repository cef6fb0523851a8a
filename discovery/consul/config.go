// Package consul finds the managers, hands out the bootstrap lock, keeps the join tokens and
// registers managers through a Consul agent.
package consul

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/swarm-agent/swarm-agent/discovery"
)

// Defaults of the discovery keys.
const (
	DefaultService = "swarm-manager"
	DefaultAddress = "127.0.0.1:8500"
	DefaultLockTTL = 15 * time.Second
	DefaultPort    = 2377

	// MinLockTTL and MaxLockTTL are the session TTL bounds Consul accepts.
	MinLockTTL = 10 * time.Second
	MaxLockTTL = 24 * time.Hour
)

// Environment variables the ACL token and the connection settings may come from. Discovery
// keys win over them; the ACL token is never a discovery key, so that it does not show in ps.
const (
	EnvToken     = "SWARM_AGENT_CONSUL_TOKEN"
	EnvHTTPToken = "CONSUL_HTTP_TOKEN"
	EnvTokenFile = "CONSUL_HTTP_TOKEN_FILE"
	EnvAddr      = "CONSUL_HTTP_ADDR"
	EnvCAFile    = "CONSUL_CACERT"
	EnvCertFile  = "CONSUL_CLIENT_CERT"
	EnvKeyFile   = "CONSUL_CLIENT_KEY"
	EnvTLSServer = "CONSUL_TLS_SERVER_NAME"
)

// Config is a validated provider=consul discovery string.
type Config struct {
	// Service is the managers' Consul service name.
	Service string
	// Scheme is http or https; Address is the agent's host:port.
	Scheme  string
	Address string
	// Datacenter to query; empty means the agent's own.
	Datacenter string
	// Token is the ACL token; empty means the agent's default token.
	Token Secret
	// TokenSource says where Token came from, for error messages ("token_file=/etc/..",
	// "CONSUL_HTTP_TOKEN", or "" for none). It never holds the token.
	TokenSource string
	// TLS settings (https only).
	CAFile, CertFile, KeyFile, TLSServerName string
	// LockTTL is the bootstrap lock's session TTL.
	LockTTL time.Duration
	// Prefix is the KV prefix without a trailing slash, "swarm-agent/<cluster>" by default.
	Prefix string
	// Port is the swarm port registered for managers that give none.
	Port int
	// Cluster is this node's --cluster: managers register with it (service meta "cluster"),
	// and instances registered by another cluster under the same service name are not this
	// cluster's managers. "" (no cluster known) registers none and filters nothing.
	Cluster string
}

// Secret is a string that never prints: %v, %s, %#v and JSON all show it redacted.
type Secret string

func (Secret) String() string               { return "<redacted>" }
func (Secret) GoString() string             { return `"<redacted>"` }
func (Secret) MarshalText() ([]byte, error) { return []byte("<redacted>"), nil }
func (s Secret) reveal() string             { return string(s) }
func (s Secret) set() bool                  { return s != "" }

// Help describes the keys of provider=consul.
func Help() string {
	return `provider=consul: managers are the passing instances of a Consul service.
  service=NAME            the managers' service (default swarm-manager); letters, digits, '-', '_'
  address=[https://]HOST:PORT
                          the Consul agent's HTTP API (default $CONSUL_HTTP_ADDR, else
                          127.0.0.1:8500: the node's local agent); https:// turns TLS on
  datacenter=DC           the datacenter to query (default: the agent's)
  token_file=PATH         a file holding the ACL token (default: $SWARM_AGENT_CONSUL_TOKEN,
                          $CONSUL_HTTP_TOKEN, the file in $CONSUL_HTTP_TOKEN_FILE, else the
                          agent's default token). The token itself is never a key: it would show in ps
  ca_file=PATH            CA bundle to verify the agent (default $CONSUL_CACERT); https only
  cert_file=PATH key_file=PATH
                          client certificate and key for mutual TLS, both or neither
                          (default $CONSUL_CLIENT_CERT, $CONSUL_CLIENT_KEY); https only
  tls_server_name=NAME    the name to verify in the agent's certificate (default $CONSUL_TLS_SERVER_NAME)
  lock_ttl=DURATION       TTL of the bootstrap lock's session (default 15s, 10s..24h); a holder that
                          dies blocks the cluster for at most about twice this
  prefix=PATH             the KV prefix (default swarm-agent/<cluster>): PREFIX/bootstrap-lock,
                          PREFIX/join-token/manager, PREFIX/join-token/worker, PREFIX/cluster-id
ACL policies (discovery/consul/policies/*.hcl): managers need key write on PREFIX/, session write,
service write on SERVICE and node read; workers need key read on PREFIX/join-token/worker and
PREFIX/cluster-id only, plus service read on SERVICE and node read.`
}

var (
	serviceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	dcRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	hostRE    = regexp.MustCompile(`^[A-Za-z0-9.\-:\[\]]+$`)
)

var knownKeys = []string{"service", "address", "datacenter", "token_file", "ca_file", "cert_file",
	"key_file", "tls_server_name", "lock_ttl", "prefix"}

// FromSpec validates a provider=consul discovery string for cluster. getenv (os.Getenv in the
// agent) supplies the ACL token and the Consul environment defaults. Errors wrap
// discovery.ErrDiscoveryConfig and name the key, the value and the rule; they never hold the
// ACL token.
func FromSpec(s discovery.Spec, cluster string, getenv func(string) string) (Config, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: consul %s", discovery.ErrDiscoveryConfig, fmt.Sprintf(format, a...))
	}
	if s.Provider != "consul" {
		return Config{}, fmt.Errorf("%w: provider %q: want consul", discovery.ErrDiscoveryConfig, s.Provider)
	}
	if _, ok := s.Args["token"]; ok {
		return Config{}, bad("token=<redacted>: the ACL token is never a discovery key (it would show in ps): use token_file=PATH or %s", EnvHTTPToken)
	}
	if err := s.CheckKeys(knownKeys...); err != nil {
		return Config{}, fmt.Errorf("%w: %w", discovery.ErrDiscoveryConfig, err)
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	// value returns a key's value, else the environment's, else def, and names its source.
	value := func(key, env, def string) (string, string) {
		if v, ok := s.Args[key]; ok {
			return v, key
		}
		if env != "" {
			if v := getenv(env); v != "" {
				return v, key + " (from " + env + ")"
			}
		}
		return def, key
	}

	c := Config{Port: DefaultPort, Cluster: cluster}

	c.Service = s.Get("service", DefaultService)
	if !serviceRE.MatchString(c.Service) {
		return Config{}, bad("service=%q: must be 1-63 letters, digits, '-' or '_', starting with a letter or digit", c.Service)
	}

	addr, src := value("address", EnvAddr, DefaultAddress)
	scheme, hostport, err := parseAddress(addr)
	if err != nil {
		return Config{}, bad("%s=%q: %v", src, addr, err)
	}
	c.Scheme, c.Address = scheme, hostport

	if v, ok := s.Args["datacenter"]; ok && !dcRE.MatchString(v) {
		return Config{}, bad("datacenter=%q: must be 1-64 letters, digits, '-' or '_'", v)
	}
	c.Datacenter = s.Args["datacenter"]

	if err := c.tokenFrom(s, getenv); err != nil {
		return Config{}, err
	}

	// TLS: explicit keys need https; environment defaults apply only to https, as in Consul's CLI.
	for _, f := range []struct {
		key, env string
		dst      *string
		file     bool
	}{
		{"ca_file", EnvCAFile, &c.CAFile, true},
		{"cert_file", EnvCertFile, &c.CertFile, true},
		{"key_file", EnvKeyFile, &c.KeyFile, true},
		{"tls_server_name", EnvTLSServer, &c.TLSServerName, false},
	} {
		v, src := value(f.key, f.env, "")
		_, explicit := s.Args[f.key]
		if explicit && c.Scheme != "https" {
			return Config{}, bad("%s=%q: TLS settings need an https:// address (address=%q)", f.key, v, addr)
		}
		if c.Scheme != "https" || v == "" {
			continue
		}
		if f.file {
			if err := readable(v); err != nil {
				return Config{}, bad("%s=%q: must be a readable file: %v", src, v, err)
			}
		}
		*f.dst = v
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return Config{}, bad("cert_file=%q key_file=%q: give both or neither", c.CertFile, c.KeyFile)
	}

	c.LockTTL = DefaultLockTTL
	if v, ok := s.Args["lock_ttl"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return Config{}, bad("lock_ttl=%q: must be a duration such as 15s or 1m", v)
		}
		if d < MinLockTTL || d > MaxLockTTL {
			return Config{}, bad("lock_ttl=%q: must be between %s and %s (Consul's session TTL bounds)", v, MinLockTTL, MaxLockTTL)
		}
		c.LockTTL = d
	}

	if v, ok := s.Args["prefix"]; ok {
		if err := checkPrefix(v); err != nil {
			return Config{}, bad("prefix=%q: %v", v, err)
		}
		c.Prefix = v
	} else {
		if cluster == "" {
			return Config{}, bad("prefix: no cluster name to build the default swarm-agent/<cluster> from: give prefix=PATH")
		}
		c.Prefix = "swarm-agent/" + cluster
		if err := checkPrefix(c.Prefix); err != nil {
			return Config{}, bad("prefix: default %q from cluster %q: %v", c.Prefix, cluster, err)
		}
	}
	return c, nil
}

// tokenFrom reads the ACL token: token_file, then the environment. Errors name the file or the
// variable, never the token.
func (c *Config) tokenFrom(s discovery.Spec, getenv func(string) string) error {
	fromFile := func(src, path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("%w: consul %s=%q: cannot read the ACL token: %w", discovery.ErrDiscoveryConfig, src, path, err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return fmt.Errorf("%w: consul %s=%q: the file is empty: want the ACL token", discovery.ErrDiscoveryConfig, src, path)
		}
		if strings.ContainsAny(t, "\r\n\t ") {
			return fmt.Errorf("%w: consul %s=%q: must hold one ACL token on one line", discovery.ErrDiscoveryConfig, src, path)
		}
		c.Token, c.TokenSource = Secret(t), src+"="+path
		return nil
	}
	if path, ok := s.Args["token_file"]; ok {
		if path == "" {
			return fmt.Errorf("%w: consul token_file=\"\": must be a file path", discovery.ErrDiscoveryConfig)
		}
		return fromFile("token_file", path)
	}
	for _, env := range []string{EnvToken, EnvHTTPToken} {
		if t := strings.TrimSpace(getenv(env)); t != "" {
			c.Token, c.TokenSource = Secret(t), env
			return nil
		}
	}
	if path := getenv(EnvTokenFile); path != "" {
		return fromFile(EnvTokenFile, path)
	}
	return nil
}

// parseAddress splits "[http[s]://]host:port" into scheme and host:port.
func parseAddress(a string) (string, string, error) {
	scheme, rest := "http", a
	if i := strings.Index(a, "://"); i >= 0 {
		scheme, rest = strings.ToLower(a[:i]), a[i+3:]
		if scheme != "http" && scheme != "https" {
			return "", "", fmt.Errorf("scheme %q: must be http or https", a[:i])
		}
	}
	rest = strings.TrimSuffix(rest, "/")
	host, port, err := net.SplitHostPort(rest)
	if err != nil || host == "" || !hostRE.MatchString(host) {
		return "", "", fmt.Errorf("must be [http[s]://]HOST:PORT")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("port must be 1..65535")
	}
	return scheme, rest, nil
}

func checkPrefix(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("must be a KV path without leading or trailing '/'")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("must not hold empty, '.' or '..' segments")
		}
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return fmt.Errorf("must not hold spaces or control characters")
	}
	return nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}
