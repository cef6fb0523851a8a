// Package awsfront is an HTTP front for moto that the real aws-sdk-go-v2 talks to: it answers
// itself what moto lacks or does more loosely than AWS (Route 53 strictness, lifecycle actions,
// throttling, IMDS, DNS), forwards the rest to moto, logs every request and injects faults.
package awsfront

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/dnsfake"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

// Config says where the front listens and what it forwards to.
type Config struct {
	MotoURL     string           // forward target, e.g. http://127.0.0.1:5055
	APIAddr     string           // AWS API listener, e.g. "127.0.0.1:0" or "10.99.0.1:4566"
	IMDSAddr    string           // IMDS listener ("" = none)
	DNSAddr     string           // DNS listener udp+tcp ("" = none)
	ControlAddr string           // control API listener ("" = none)
	Region      string           // default us-east-1
	Limits      map[string]Limit // per service: token bucket; merged over DefaultLimits
	Log         zerolog.Logger
}

// Limit is a token bucket: RPS tokens per second, at most Burst stored. RPS <= 0 means unlimited.
type Limit struct {
	RPS   float64
	Burst int
}

// DefaultLimits are the limits used unless Config.Limits overrides them, keyed by service or by
// "service.Operation" (which wins over its service's): Route 53's strict historical 5 requests/s
// per account, SSM's 40/s (standard throughput), Secrets Manager's 10,000/s for GetSecretValue
// and 50/s for its writes (CreateSecret, PutSecretValue, RestoreSecret and the rest). Other
// services are unlimited.
func DefaultLimits() map[string]Limit {
	return map[string]Limit{
		"route53":                       {RPS: 5, Burst: 5},
		"ssm":                           {RPS: 40, Burst: 40},
		"secretsmanager":                {RPS: 50, Burst: 50},
		"secretsmanager.GetSecretValue": {RPS: 10000, Burst: 10000},
	}
}

// Front is a running front. Close stops it.
type Front struct {
	cfg  Config
	log  zerolog.Logger
	moto *url.URL

	proxy *httputil.ReverseProxy
	hc    *http.Client // to moto
	asg   *autoscaling.Client
	ec2   *ec2.Client
	sm    *secretsmanager.Client
	// r53Writes counts Route 53 writes that reached moto; the DNS source's shared reads are
	// good only while it stands still.
	r53Writes atomic.Uint64
	// smWrites counts Secrets Manager writes that reached moto; a shared GetSecretValue read
	// is good only while it stands still (secretreads.go).
	smWrites    atomic.Uint64
	smReads     atomic.Int64           // GetSecretValue reads of moto (SecretReadsOfMoto)
	secretReads map[string]*secretRead // under mu

	imds *imdsfake.Server
	dns  *dnsfake.Server

	servers []*http.Server
	apiURL  string
	imdsURL string
	ctlURL  string

	stop chan struct{}
	wg   sync.WaitGroup

	// launchMu: a launch (withLaunches) holds it, the describe calls read under it.
	launchMu    sync.RWMutex
	mu          sync.Mutex
	reqs        []Request
	faults      []*Fault
	buckets     map[string]*bucket
	zoneLocks   map[string]*sync.Mutex
	changes     map[string]*change
	holds       map[holdKey]*hold             // instances held by lifecycle hooks, by instance and transition
	statuses    map[string]StatusChecks       // by instance id: DescribeInstanceStatus's checks
	refreshes   map[string][]*instanceRefresh // instance refreshes by group, oldest first
	pool        map[string]*warmInstance      // warm pool instances by id (moto keeps none)
	life        lifetimeState                 // maximum instance lifetimes (lifetime.go)
	noticeQueue string
	healthQueue string // the target of an EventBridge rule for AWS Health events (health.go)
	seq         uint64
	closeOnce   sync.Once
}

// Start opens the listeners named in cfg and serves until Close.
func Start(ctx context.Context, cfg Config) (*Front, error) {
	if cfg.MotoURL == "" {
		return nil, errors.New("awsfront config: MotoURL is empty")
	}
	mu, err := url.Parse(cfg.MotoURL)
	if err != nil || mu.Host == "" {
		return nil, fmt.Errorf("awsfront config: MotoURL %q: not an http URL", cfg.MotoURL)
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = "127.0.0.1:0"
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	limits := DefaultLimits()
	for k, v := range cfg.Limits {
		limits[k] = v
	}
	cfg.Limits = limits

	f := &Front{
		cfg:       cfg,
		log:       cfg.Log.With().Str("component", "awsfront").Logger(),
		moto:      mu,
		hc:        &http.Client{Timeout: 30 * time.Second},
		imds:      imdsfake.New(),
		stop:      make(chan struct{}),
		buckets:   map[string]*bucket{},
		zoneLocks: map[string]*sync.Mutex{},
		changes:   map[string]*change{},
		holds:     map[holdKey]*hold{},
	}
	for svc, l := range limits {
		if l.RPS > 0 {
			f.buckets[svc] = newBucket(l)
		}
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(mu)
			r.Out.Host = r.In.Host // moto builds queue URLs from the Host it sees
		},
		ModifyResponse: func(resp *http.Response) error {
			// A Route 53 write moto applied (a zone created or deleted): DNS must see it
			// before the caller does.
			if resp.Request.Method != http.MethodGet && strings.HasPrefix(resp.Request.URL.Path, "/2013-04-01/") {
				f.r53Writes.Add(1)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f.log.Warn().Err(err).Str("addr", r.RemoteAddr).Msg("forward to moto failed")
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	awsCfg := aws.Config{
		Region:      cfg.Region,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:  f.hc,
	}
	f.asg = autoscaling.NewFromConfig(awsCfg, func(o *autoscaling.Options) { o.BaseEndpoint = aws.String(cfg.MotoURL) })
	f.ec2 = ec2.NewFromConfig(awsCfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(cfg.MotoURL) })
	f.sm = secretsmanager.NewFromConfig(awsCfg, func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(cfg.MotoURL) })

	fail := func(err error) (*Front, error) {
		_ = f.Close()
		return nil, err
	}
	if f.apiURL, err = f.serve(cfg.APIAddr, http.HandlerFunc(f.serveAPI)); err != nil {
		return fail(fmt.Errorf("aws api listener %s: %w", cfg.APIAddr, err))
	}
	if cfg.IMDSAddr != "" {
		if f.imdsURL, err = f.serve(cfg.IMDSAddr, f.imds); err != nil {
			return fail(fmt.Errorf("imds listener %s: %w", cfg.IMDSAddr, err))
		}
	}
	if cfg.ControlAddr != "" {
		if f.ctlURL, err = f.serve(cfg.ControlAddr, f.controlHandler()); err != nil {
			return fail(fmt.Errorf("control listener %s: %w", cfg.ControlAddr, err))
		}
	}
	if cfg.DNSAddr != "" {
		f.dns, err = dnsfake.Start(cfg.DNSAddr, &motoSource{f: f}, dnsfake.Options{
			Log: f.log.With().Str("component", "awsfront-dns").Logger(),
		})
		if err != nil {
			return fail(fmt.Errorf("dns listener %s: %w", cfg.DNSAddr, err))
		}
	}
	f.wg.Add(2)
	go f.expireLoop()
	go f.lifetimeLoop()
	f.log.Info().Str("addr", f.apiURL).Str("moto", cfg.MotoURL).Msg("aws front started")
	return f, nil
}

func (f *Front) serve(addr string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	f.servers = append(f.servers, srv)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.log.Error().Err(err).Str("addr", addr).Msg("listener stopped")
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// APIURL is the base endpoint for every AWS service client.
func (f *Front) APIURL() string { return f.apiURL }

// IMDSURL is the instance metadata endpoint ("" without IMDSAddr).
func (f *Front) IMDSURL() string { return f.imdsURL }

// ControlURL is the control API's base URL ("" without ControlAddr).
func (f *Front) ControlURL() string { return f.ctlURL }

// DNSAddr is the DNS server's host:port ("" without DNSAddr).
func (f *Front) DNSAddr() string {
	if f.dns == nil {
		return ""
	}
	return f.dns.Addr()
}

// Close stops the listeners and the hook expiry loop.
func (f *Front) Close() error {
	var errs []error
	f.closeOnce.Do(func() {
		close(f.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range f.servers {
			if err := s.Shutdown(ctx); err != nil {
				errs = append(errs, err)
				_ = s.Close()
			}
		}
		if f.dns != nil {
			if err := f.dns.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		f.wg.Wait()
	})
	return errors.Join(errs...)
}

// AddInstance makes an instance known to IMDS (keyed by its PrivateIP) and to the request log.
func (f *Front) AddInstance(in imdsfake.Instance) {
	if in.Region == "" {
		in.Region = f.cfg.Region
	}
	if target, ok := f.warmTarget(in.ID); ok {
		in.TargetLifecycleState = target // a warm pool instance
	}
	f.imds.Put(in)
}

// SetNoticeQueue names the SQS queue (in moto) that receives lifecycle termination notices.
func (f *Front) SetNoticeQueue(queueURL string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noticeQueue = queueURL
}

// SpotNotice gives the instance a spot interruption notice (IMDS spot/instance-action) for time at.
func (f *Front) SpotNotice(instanceID string, at time.Time) error {
	err := f.imds.Update(instanceID, func(in *imdsfake.Instance) {
		in.SpotAction = &imdsfake.SpotAction{Action: "terminate", Time: at.UTC()}
	})
	if err != nil {
		return fmt.Errorf("spot notice for %s: %w", instanceID, err)
	}
	return nil
}
