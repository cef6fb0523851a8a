package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/retry"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// callTimeout bounds each Consul request; the caller's context may end it sooner.
const callTimeout = 10 * time.Second

// ErrDenied marks a request that Consul refused for its ACL token: the token is unknown or
// lacks a permission. Retrying does not help until the token or its policy changes.
var ErrDenied error = deniedError{}

// deniedError is ErrDenied; it also matches discovery.ErrAccessDenied so that boot stops at once.
type deniedError struct{}

func (deniedError) Error() string        { return "denied by consul ACL" }
func (deniedError) Is(target error) bool { return target == discovery.ErrAccessDenied }

// errFiltered and errAnonymous explain an empty answer that ACLs may have caused.
var (
	errFiltered  = errors.New("every result was filtered out by ACL")
	errAnonymous = errors.New("no instance is visible to the anonymous token under Consul's default ACL policy deny " +
		"(give token_file=PATH, " + EnvToken + " or " + EnvHTTPToken + ")")
)

// Provider is a Consul Discoverer, Registry, Registrar, Locker and TokenStore.
type Provider struct {
	cfg Config
	c   *api.Client
	log zerolog.Logger
	// foreignOnce: other clusters' managers under the service name are reported once.
	foreignOnce sync.Once
}

var (
	_ discovery.Discoverer = (*Provider)(nil)
	_ discovery.Registry   = (*Provider)(nil)
	_ discovery.Registrar  = (*Provider)(nil)
	_ discovery.Locker     = (*Provider)(nil)
	_ discovery.TokenStore = (*Provider)(nil)
)

// New builds a client for cfg. It does not contact Consul: the boot loop's first request does,
// and retries while the agent is unreachable.
func New(cfg Config, log zerolog.Logger) (*Provider, error) {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = DefaultLockTTL
	}
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	c, err := api.NewClient(&api.Config{
		Address:    cfg.Address,
		Scheme:     cfg.Scheme,
		Datacenter: cfg.Datacenter,
		Token:      cfg.Token.reveal(),
		TLSConfig: api.TLSConfig{
			Address:  cfg.TLSServerName,
			CAFile:   cfg.CAFile,
			CertFile: cfg.CertFile,
			KeyFile:  cfg.KeyFile,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("consul: client for %s://%s: %w", cfg.Scheme, cfg.Address, err)
	}
	return &Provider{cfg: cfg, c: c, log: log}, nil
}

// Config returns the configuration the provider runs with.
func (p *Provider) Config() Config { return p.cfg }

// Managers lists the passing instances of the managers' service as host:port.
func (p *Provider) Managers(ctx context.Context) ([]string, error) {
	ms, err := p.managers(ctx, false)
	return addrs(ms), err
}

// ConfirmManagers lists every registered instance of the managers' service, passing or not,
// read from the Consul leader (a consistent read), for the node that holds the bootstrap
// lock. A manager that has just initialised the swarm is registered before it releases the
// lock, but its TCP check may take an interval to pass: counting only passing instances here
// would let the next lock holder create a second swarm. The boot loop keeps the addresses that
// accept connections, so dead instances do not count.
func (p *Provider) ConfirmManagers(ctx context.Context) ([]string, error) {
	ms, err := p.managers(ctx, true)
	return addrs(ms), err
}

// Registered is ConfirmManagers with each instance's id (service meta instance_id).
func (p *Provider) Registered(ctx context.Context) ([]swarm.Member, error) {
	return p.managers(ctx, true)
}

func addrs(ms []swarm.Member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (p *Provider) managers(ctx context.Context, confirm bool) ([]swarm.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	q := &api.QueryOptions{RequireConsistent: confirm}
	what := "list passing instances of service " + p.cfg.Service
	if confirm {
		what = "list instances of service " + p.cfg.Service
	}
	need := "service read on " + p.cfg.Service + " or node read"
	entries, qm, err := p.c.Health().Service(p.cfg.Service, "", !confirm, q.WithContext(ctx))
	if err != nil {
		return nil, p.fail(what, need, err)
	}
	// Consul answers a query it may not fully show with fewer results, not with 403. With
	// nothing left, say so: otherwise a missing token looks like a cluster without managers.
	// Consul flags filtered results for a token it knows, but never for the anonymous token.
	if qm != nil && len(entries) == 0 {
		if qm.ResultsFilteredByACLs {
			return nil, p.fail(what, need, errFiltered)
		}
		if !p.cfg.Token.set() && qm.DefaultACLPolicy == "deny" && p.anonymous(ctx) {
			return nil, p.fail(what, need, errAnonymous)
		}
	}
	if qm != nil && qm.ResultsFilteredByACLs {
		p.log.Warn().Msg("consul left some manager instances out: the ACL token lacks node read on some nodes")
	}
	out := make([]swarm.Member, 0, len(entries))
	foreign := map[string]int{}
	for _, e := range entries {
		if e.Service == nil {
			continue
		}
		if c := e.Service.Meta[metaCluster]; c != "" && p.cfg.Cluster != "" && c != p.cfg.Cluster {
			foreign[c]++ // another cluster's manager under the same service name
			continue
		}
		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		if host == "" {
			continue
		}
		port := e.Service.Port
		if port == 0 {
			port = p.cfg.Port
		}
		out = append(out, swarm.Member{InstanceID: e.Service.Meta["instance_id"], Addr: host, Port: port})
	}
	if len(foreign) > 0 {
		p.foreignOnce.Do(func() {
			p.log.Warn().Str("cluster", p.cfg.Cluster).Any("other_clusters", foreign).
				Msg("consul: service " + p.cfg.Service + " also lists managers of other clusters: they are left out (give each cluster its own service= to keep the catalogue apart)")
		})
	}
	return out, nil
}

// metaCluster is the service meta key that names a registered manager's --cluster.
// Instances without it were registered by an older version and count as this cluster's.
const metaCluster = "cluster"

// anonymous tells whether requests without a token run as Consul's anonymous token, that is
// whether the agent has no default token of its own.
func (p *Provider) anonymous(ctx context.Context) bool {
	_, _, err := p.c.ACL().TokenReadSelf((&api.QueryOptions{}).WithContext(ctx))
	return err != nil && strings.Contains(err.Error(), "ACL not found")
}

// ServiceID is the Consul service ID under which the manager instanceID registers.
func (p *Provider) ServiceID(instanceID string) string {
	return p.cfg.Service + "-" + instanceID
}

// Register publishes m as an instance of the managers' service through the local agent, with
// a TCP check on its swarm port. Registering the same member again changes nothing: the agent
// keeps the check's status, so a reconciling boot does not hide a healthy manager.
func (p *Provider) Register(ctx context.Context, m swarm.Member) error {
	if m.InstanceID == "" || m.Addr == "" {
		return fmt.Errorf("consul: register manager %q at %q: instance id and address are required", m.InstanceID, m.Addr)
	}
	if m.Port == 0 {
		m.Port = p.cfg.Port
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	id := p.ServiceID(m.InstanceID)
	target := net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))
	meta := map[string]string{"instance_id": m.InstanceID}
	if p.cfg.Cluster != "" {
		meta[metaCluster] = p.cfg.Cluster
	}
	reg := &api.AgentServiceRegistration{
		ID:      id,
		Name:    p.cfg.Service,
		Address: m.Addr,
		Port:    m.Port,
		Meta:    meta,
		Check: &api.AgentServiceCheck{
			CheckID:                        id + ":swarm-port",
			Name:                           "swarm port " + target,
			TCP:                            target,
			Interval:                       "5s",
			Timeout:                        "2s",
			DeregisterCriticalServiceAfter: "10m",
		},
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}
	if err := p.c.Agent().ServiceRegisterOpts(reg, opts.WithContext(ctx)); err != nil {
		return p.fail("register service "+id, "service write on "+p.cfg.Service, err)
	}
	// The agent syncs its services to the catalog in the background: wait for it, so that
	// whoever takes the bootstrap lock after us finds this manager (ConfirmManagers).
	if err := p.waitCatalog(ctx, id); err != nil {
		return err
	}
	p.log.Info().Str("instance_id", m.InstanceID).Str("service_id", id).Str("manager_addr", target).
		Msg("registered in consul")
	return nil
}

// waitCatalog returns once the Consul servers have the service instance id.
func (p *Provider) waitCatalog(ctx context.Context, id string) error {
	q := &api.QueryOptions{RequireConsistent: true}
	for {
		entries, _, err := p.c.Catalog().Service(p.cfg.Service, "", q.WithContext(ctx))
		if err != nil {
			return p.fail("read service "+p.cfg.Service+" from the catalog after registering "+id,
				"service read on "+p.cfg.Service+" and node read", err)
		}
		for _, e := range entries {
			if e.ServiceID == id {
				return nil
			}
		}
		if !retry.Sleep(ctx, 50*time.Millisecond) {
			return fmt.Errorf("consul: register service %s: the agent did not sync it to the catalog: %w", id, context.Cause(ctx))
		}
	}
}

// Deregister withdraws m from the managers' service. A member that is not registered is not
// an error.
func (p *Provider) Deregister(ctx context.Context, m swarm.Member) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	id := p.ServiceID(m.InstanceID)
	q := &api.QueryOptions{}
	err := p.c.Agent().ServiceDeregisterOpts(id, q.WithContext(ctx))
	var se api.StatusError
	if errors.As(err, &se) && se.Code == 404 {
		p.log.Debug().Str("service_id", id).Msg("not registered in consul")
		return nil
	}
	if err != nil {
		return p.fail("deregister service "+id, "service write on "+p.cfg.Service, err)
	}
	p.log.Info().Str("instance_id", m.InstanceID).Str("service_id", id).Msg("deregistered from consul")
	return nil
}

// fail wraps err from the request what. An ACL refusal says which token was used (never the
// token itself) and which permission (need) it lacks, and wraps ErrDenied.
func (p *Provider) fail(what, need string, err error) error {
	msg := err.Error()
	src := "the agent's default ACL token (no token given)"
	if p.cfg.TokenSource != "" {
		src = "the ACL token from " + p.cfg.TokenSource
	}
	switch {
	case strings.Contains(msg, "ACL not found"):
		return fmt.Errorf("consul: %s: %w: Consul does not know %s (wrong or deleted token): %w", what, ErrDenied, src, err)
	case errors.Is(err, errFiltered) || errors.Is(err, errAnonymous) || strings.Contains(msg, "Permission denied") || strings.Contains(msg, "response code: 403"):
		return fmt.Errorf("consul: %s: %w: %s lacks %s: %w", what, ErrDenied, src, need, err)
	}
	return fmt.Errorf("consul: %s: %w", what, err)
}
