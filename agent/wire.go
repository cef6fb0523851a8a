package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awsimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/discovery/consul"
	"github.com/swarm-agent/swarm-agent/discovery/route53"
	"github.com/swarm-agent/swarm-agent/discovery/smtokens"
	"github.com/swarm-agent/swarm-agent/discovery/ssmtokens"
	"github.com/swarm-agent/swarm-agent/discovery/static"
	"github.com/swarm-agent/swarm-agent/lifecycle/imds"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// wiring holds the collaborators built from a Config.
type wiring struct {
	engine   *engine.Engine
	first    *firstLocal // the engine as boot sees it: its first swarm state read in advance
	identity swarm.Identity
	aws      *aws.Config // nil until needed
	deps     bootstrap.Deps
	closers  []func()
	m        *metrics // nil outside run: no metrics
}

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

// wire builds the engine, identity, discovery and token store for cfg. Errors are typed for
// ExitCode: errDocker, errIMDS, errDiscovery, ErrUsage. m (nil for none) counts the engine's
// and AWS's errors.
func wire(ctx context.Context, cfg Config, log zerolog.Logger, st *statusFile, m *metrics) (*wiring, error) {
	w := &wiring{m: m}
	ok := false
	defer func() {
		if !ok {
			w.close()
		}
	}()
	st.stage("checking docker, reading identity and setting up discovery")
	eng, err := engine.New(cfg.DockerHost, m.engineOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDocker, err)
	}
	w.engine = eng
	w.closers = append(w.closers, func() { _ = eng.Close() })
	// The engine check, the node's swarm state (the boot's first read) and the identity read
	// followed by the discovery's set-up (which needs the identity: region, address) are
	// independent: they run at once, as one stage. A docker error wins over an identity error,
	// and that over a discovery error, as when they ran one after the other.
	var (
		wg                       sync.WaitGroup
		idErr, dErr              error
		local                    localRead
		idTook, dTook, localTook time.Duration
	)
	ictx, icancel := context.WithCancel(ctx)
	defer icancel()
	began := time.Now()
	dlog := log
	wg.Go(func() {
		w.identity, idErr = identity(ictx, cfg)
		idTook = time.Since(began)
		if idErr != nil {
			return
		}
		dlog = log.With().Str("instance_id", w.identity.InstanceID).Str("role", cfg.Role).Logger()
		dErr = w.discovery(ictx, cfg, dlog)
		dTook = time.Since(began)
	})
	wg.Go(func() {
		local.node, local.err = eng.Local(ictx)
		localTook = time.Since(began)
	})
	ver, err := checkEngine(ctx, cfg, eng, log)
	checkTook := time.Since(began)
	if err != nil {
		icancel()
		wg.Wait()
		return nil, fmt.Errorf("%w: %w", errDocker, err)
	}
	log.Info().Str("engine_version", ver.Engine).Str("api_version", ver.API).Msg("docker engine answers")
	wg.Wait()
	if idErr != nil {
		return nil, idErr
	}
	if dErr != nil {
		return nil, dErr
	}
	// Each part's own time, from the stage's start: the stage took the longest of them.
	log = dlog
	log.Debug().Dur("engine_check_ms", checkTook).Dur("identity_ms", idTook).Dur("discovery_set_up_ms", dTook).
		Dur("swarm_state_ms", localTook).Msg("engine check, swarm state, identity and discovery set-up done at once")
	w.first = &firstLocal{Engine: eng, pre: &local}
	w.deps.Engine = w.first
	w.deps.Autolocker = eng
	w.deps.Log = log.With().Str("component", "bootstrap").Logger()
	w.deps.Stage = st.stage
	ok = true
	return w, nil
}

// localRead is one read of the node's swarm state.
type localRead struct {
	node bootstrap.LocalNode
	err  error
}

// firstLocal is the engine for boot, whose first Local is answered by a read taken while the
// engine was checked (the same read boot would make a few milliseconds later: nothing acts on
// the engine in between), unless discard dropped it because the engine's configuration was
// changed since. Later reads, and a first one whose advance read failed, go to the engine.
type firstLocal struct {
	bootstrap.Engine
	mu  sync.Mutex
	pre *localRead
}

var _ bootstrap.Engine = (*firstLocal)(nil)

func (f *firstLocal) Local(ctx context.Context) (bootstrap.LocalNode, error) {
	f.mu.Lock()
	pre := f.pre
	f.pre = nil
	f.mu.Unlock()
	if pre != nil && pre.err == nil {
		return pre.node, nil
	}
	return f.Engine.Local(ctx)
}

// discard drops the advance read: the engine was reloaded or restarted since.
func (f *firstLocal) discard() {
	f.mu.Lock()
	f.pre = nil
	f.mu.Unlock()
}

func identity(ctx context.Context, cfg Config) (swarm.Identity, error) {
	if cfg.Identity == "static" {
		return swarm.Identity{InstanceID: cfg.InstanceID, PrivateIP: cfg.PrivateIP, AZ: cfg.AZ, Region: cfg.Region}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id, err := newIMDS().Identity(ctx)
	if err != nil {
		return swarm.Identity{}, fmt.Errorf("%w: %w", errIMDS, err)
	}
	return id, nil
}

// newIMDS is the instance metadata client: IMDSv2 only, short timeouts, a few retries. One
// client per endpoint serves the whole process, so that its session token (valid 6 hours,
// renewed by the SDK when it expires or is refused) is taken once: boot's warm pool check, its
// launch lookup and its identity read then cost no token request each.
func newIMDS() *imds.Client {
	ep := os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")
	if c, ok := imdsClients.Load(ep); ok {
		return c.(*imds.Client)
	}
	c, _ := imdsClients.LoadOrStore(ep, imds.New(awsimds.New(awsimds.Options{
		EnableFallback: aws.FalseTernary,
		Endpoint:       ep,
		HTTPClient:     &http.Client{Timeout: 5 * time.Second},
		Retryer:        retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 3 }),
	})))
	return c.(*imds.Client)
}

// imdsClients are newIMDS's clients by endpoint ("" for the SDK's default).
var imdsClients sync.Map

// awsConfig loads the SDK configuration once: region from the flag or instance metadata, and a
// retryer that does not lean on the SDK's defaults (many agents share one account's limits;
// the boot loop adds its own jittered backoff on top).
func (w *wiring) awsConfig(ctx context.Context, cfg Config) (aws.Config, error) {
	if w.aws != nil {
		return *w.aws, nil
	}
	region := cfg.Region
	if region == "" {
		region = w.identity.Region
	}
	if region == "" {
		return aws.Config{}, &ConfigError{[]string{"--region (SWARM_AGENT_REGION): unknown: not given and not in instance metadata"}}
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region),
		awsconfig.WithRetryer(NewAWSRetryer))
	if err != nil {
		return aws.Config{}, fmt.Errorf("%w: load AWS configuration: %w", errDiscovery, err)
	}
	w.m.countAWSErrors(&ac)
	w.aws = &ac
	return ac, nil
}

// NewAWSRetryer is the retryer every AWS client of the agent uses: more attempts than the SDK's
// default, backoff capped at 20 s, and no client-side retry quota.
func NewAWSRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 6
		o.MaxBackoff = 20 * time.Second
		o.RateLimiter = noRetryQuota{}
	})
}

// noRetryQuota disables the SDK's client-side retry token bucket: a throttled boot must keep
// retrying (with backoff) rather than fail fast once 500 tokens are spent.
type noRetryQuota struct{}

func (noRetryQuota) GetToken(context.Context, uint) (func() error, error) {
	return func() error { return nil }, nil
}
func (noRetryQuota) AddTokens(uint) error { return nil }

func (w *wiring) discovery(ctx context.Context, cfg Config, log zerolog.Logger) error {
	role := swarm.Role(cfg.Role)
	spec := cfg.Spec
	dlog := log.With().Str("component", "discovery").Str("provider", spec.Provider).Logger()
	store := cfg.TokenStore
	if store == "auto" {
		store = "ssm"
		if spec.Provider == "consul" {
			store = "consul"
		}
	}
	var consulP *consul.Provider
	switch spec.Provider {
	case "route53":
		rc, err := route53.FromSpec(spec, role)
		if err != nil {
			return &ConfigError{[]string{fmt.Sprintf("--discovery (SWARM_AGENT_DISCOVERY): %v", err)}}
		}
		rc.Port = cfg.SwarmPort
		rc.Cluster = cfg.Cluster // the managers' record must be this cluster's (its owner record)
		ac, err := w.awsConfig(ctx, cfg)
		if err != nil {
			return err
		}
		p := route53.New(rc, awsroute53.NewFromConfig(ac), dlog)
		if role == swarm.RoleManager {
			// No call up front (GetHostedZone would be a fourth call per manager): the first
			// read or change names a missing zone or a name outside it (ErrDiscoveryConfig).
			w.deps.Registrar = p
			w.deps.Locker = p
		}
		w.deps.Discoverer = p
	case "static":
		p, err := static.New(spec, w.identity.PrivateIP)
		if err != nil {
			return &ConfigError{[]string{fmt.Sprintf("--discovery (SWARM_AGENT_DISCOVERY): %v", err)}}
		}
		w.deps.Discoverer = p
		w.deps.Locker = p
	case "consul":
		cc, err := consul.FromSpec(spec, cfg.Cluster, os.Getenv)
		if err != nil {
			return &ConfigError{[]string{fmt.Sprintf("--discovery (SWARM_AGENT_DISCOVERY): %v", err)}}
		}
		cc.Port = cfg.SwarmPort
		p, err := consul.New(cc, dlog)
		if err != nil {
			return fmt.Errorf("%w: %w", errDiscovery, err)
		}
		consulP = p
		w.deps.Discoverer = p
		if role == swarm.RoleManager {
			w.deps.Registrar = p
			w.deps.Locker = p
		}
	default:
		return &ConfigError{[]string{"--discovery: unknown provider " + showValue(spec.Provider)}}
	}
	if role == swarm.RoleManager && cfg.Identity != "static" && w.deps.Locker != nil {
		// EC2 tells whether a silent lock holder or registered manager is really gone.
		ac, err := w.awsConfig(ctx, cfg)
		if err != nil {
			return err
		}
		w.deps.InstanceGone = ec2InstanceGone(ec2.NewFromConfig(ac))
	}
	switch store {
	case "consul":
		if consulP == nil {
			return &ConfigError{[]string{"--token-store=consul needs --discovery provider=consul"}}
		}
		w.deps.Tokens = consulP
	case "ssm":
		ac, err := w.awsConfig(ctx, cfg)
		if err != nil {
			return err
		}
		ts, err := ssmtokens.New(ssm.NewFromConfig(ac), cfg.Cluster, cfg.KMSKeyID)
		if err != nil {
			return &ConfigError{[]string{fmt.Sprintf("--cluster (SWARM_AGENT_CLUSTER): %v", err)}}
		}
		w.deps.Tokens = ts
	case "secretsmanager":
		ac, err := w.awsConfig(ctx, cfg)
		if err != nil {
			return err
		}
		ts, err := smtokens.New(secretsmanager.NewFromConfig(ac), cfg.Cluster, cfg.KMSKeyID)
		if err != nil {
			return &ConfigError{[]string{fmt.Sprintf("--cluster (SWARM_AGENT_CLUSTER): %v", err)}}
		}
		w.deps.Tokens = ts
	}
	return nil
}

// ec2Describer is the part of the EC2 client that ec2InstanceGone uses.
type ec2Describer interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// ec2InstanceGone reports an instance gone when EC2 does not know it or says it is
// shutting down or terminated. Any other answer (pending, running, stopping, stopped: an
// instance that may come back with its swarm state) and any error leave it alive.
func ec2InstanceGone(api ec2Describer) func(ctx context.Context, id string) (bool, error) {
	return func(ctx context.Context, id string) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			var ae smithy.APIError
			if errors.As(err, &ae) && ae.ErrorCode() == "InvalidInstanceID.NotFound" {
				return true, nil
			}
			return false, fmt.Errorf("ec2 describe instance %s: %w", id, err)
		}
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				if aws.ToString(in.InstanceId) != id || in.State == nil {
					continue
				}
				switch in.State.Name {
				case ec2types.InstanceStateNameShuttingDown, ec2types.InstanceStateNameTerminated:
					return true, nil
				}
				return false, nil
			}
		}
		return true, nil
	}
}
