// Package scale measures many agents booting at once against the AWS front without engines:
// the real Route 53 discovery (DNS first) and the real token paths (SSM or Secrets Manager), with the swarm step
// replaced by an in-memory engine. It is a benchmark for `make bench`, not a test.
package scale

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/agent"
	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/discovery/route53"
	"github.com/swarm-agent/swarm-agent/discovery/smtokens"
	"github.com/swarm-agent/swarm-agent/discovery/ssmtokens"
	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// memEngine is an engine whose swarm step always works at once: inactive until Join.
type memEngine struct {
	mu     sync.Mutex
	joined bool
	token  string
}

func (e *memEngine) Local(context.Context) (bootstrap.LocalNode, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.joined {
		return bootstrap.LocalNode{State: bootstrap.StateActive, NodeID: "n"}, nil
	}
	return bootstrap.LocalNode{State: bootstrap.StateInactive}, nil
}
func (e *memEngine) Init(context.Context, bootstrap.InitRequest) (string, error) {
	return "", fmt.Errorf("memEngine: init is not expected in the scale run")
}
func (e *memEngine) Join(_ context.Context, r bootstrap.JoinRequest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.joined, e.token = true, r.Token
	return nil
}
func (e *memEngine) Leave(context.Context, bool) error { return nil }
func (e *memEngine) JoinTokens(context.Context) (swarm.JoinTokens, string, error) {
	return swarm.JoinTokens{}, "", fmt.Errorf("memEngine: not a manager")
}
func (e *memEngine) SetNodeLabels(context.Context, string, map[string]string) error { return nil }

// BenchmarkScaleWorkers boots SCALE_AGENTS (default 1000) workers at the same instant against
// the front with Route 53 limited to 5 requests/s, SSM to 40/s and Secrets Manager's
// GetSecretValue to 10,000/s, one manager registered, once per token store (SCALE_STORES, default
// "ssm secretsmanager"). It reports how many got their token and joined, how long the last one
// took (the floor is one token read each at the store's rate: agents/40 s for SSM,
// agents/10,000 s for Secrets Manager; bare-reads-s is the same reads without agents, measured in
// the same run, which for Secrets Manager is moto's own speed), and the AWS calls made.
func BenchmarkScaleWorkers(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("SCALE_AGENTS")); err == nil && v > 0 {
		n = v
	}
	stores := strings.Fields(os.Getenv("SCALE_STORES"))
	if len(stores) == 0 {
		stores = []string{"ssm", "secretsmanager"}
	}
	for _, st := range stores {
		b.Run(st, func(b *testing.B) { scaleWorkers(b, n, st) })
	}
}

// storeRates are the token stores' read rates per account (AWS's defaults, the front's limits).
var storeRates = map[string]float64{"ssm": 40, "secretsmanager": 10000}

func scaleWorkers(b *testing.B, n int, storeName string) {
	rate, ok := storeRates[storeName]
	if !ok {
		b.Fatalf("SCALE_STORES: unknown store %q (want ssm or secretsmanager)", storeName)
	}
	if _, err := exec.LookPath("moto_server"); err != nil {
		b.Skipf("moto_server not installed: %v", err)
	}
	ctx := b.Context()
	port := freePort(b)
	moto, err := awsfront.StartMoto(ctx, "127.0.0.1", port)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = moto.Close() })
	front, err := awsfront.Start(ctx, awsfront.Config{MotoURL: moto.URL(), APIAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0",
		Limits: map[string]awsfront.Limit{"route53": {RPS: 5, Burst: 5}, "ssm": {RPS: 40, Burst: 40},
			"secretsmanager.GetSecretValue": {RPS: 10000, Burst: 10000}}, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = front.Close() })
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		Retryer: agent.NewAWSRetryer}
	r53 := awsroute53.NewFromConfig(cfg, func(o *awsroute53.Options) { o.BaseEndpoint = aws.String(front.APIURL()) })
	hz, err := r53.CreateHostedZone(ctx, &awsroute53.CreateHostedZoneInput{Name: aws.String("scale.internal"),
		CallerReference:  aws.String(strconv.FormatInt(time.Now().UnixNano(), 10)),
		HostedZoneConfig: &r53types.HostedZoneConfig{PrivateZone: true},
		VPC:              &r53types.VPC{VPCId: aws.String("vpc-1"), VPCRegion: r53types.VPCRegionUsEast1}})
	if err != nil {
		b.Fatal(err)
	}
	zone := strings.TrimPrefix(aws.ToString(hz.HostedZone.Id), "/hostedzone/")
	// The manager: a TCP listener standing for its swarm port, registered like a manager does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	swarmPort := ln.Addr().(*net.TCPAddr).Port
	provider := func(role swarm.Role) *route53.Provider {
		spec, err := discovery.Parse(fmt.Sprintf("provider=route53 zone_id=%s name=managers.scale.internal resolver=%s", zone, front.DNSAddr()))
		if err != nil {
			b.Fatal(err)
		}
		rc, err := route53.FromSpec(spec, role)
		if err != nil {
			b.Fatal(err)
		}
		rc.Port, rc.Cluster = swarmPort, "scale"
		return route53.New(rc, r53, zerolog.Nop())
	}
	if err := provider("manager").Register(ctx, swarm.Member{InstanceID: "i-0000000000000000a", Addr: "127.0.0.1", Port: swarmPort}); err != nil {
		b.Fatal(err)
	}
	var store discovery.TokenStore
	switch storeName {
	case "ssm":
		store, err = ssmtokens.New(ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.BaseEndpoint = aws.String(front.APIURL()) }), "scale", "")
	case "secretsmanager":
		store, err = smtokens.New(secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(front.APIURL()) }), "scale", "")
	}
	if err != nil {
		b.Fatal(err)
	}
	if err := store.PutTokens(ctx, "cluster-scale", swarm.JoinTokens{Worker: "SWMTKN-1-worker", Manager: "SWMTKN-1-manager"}); err != nil {
		b.Fatal(err)
	}

	// The floor measured here: the same number of bare token reads at once, through the same
	// front and moto, with no agent (for Secrets Manager moto itself, not AWS's 10,000/s, is it).
	var reads sync.WaitGroup
	readStart := time.Now()
	for range n {
		reads.Go(func() { _, _, _ = store.Token(ctx, swarm.RoleWorker) })
	}
	reads.Wait()
	bareReads := time.Since(readStart)

	for b.Loop() {
		front.ResetRequests()
		var joined atomic.Int64
		durations := make([]time.Duration, n)
		errs := make([]error, n)
		start := time.Now()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				eng := &memEngine{}
				_, errs[i] = bootstrap.Boot(ctx, bootstrap.Config{
					Role: swarm.RoleWorker, Cluster: "scale", SwarmPort: swarmPort, Wait: 10 * time.Minute,
					Identity: swarm.Identity{InstanceID: fmt.Sprintf("i-%017x", i+1), PrivateIP: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)},
				}, bootstrap.Deps{Engine: eng, Discoverer: provider("worker"), Tokens: store, Log: zerolog.Nop()})
				durations[i] = time.Since(start)
				if errs[i] == nil && eng.token == "SWMTKN-1-worker" {
					joined.Add(1)
				}
			})
		}
		wg.Wait()
		slices.Sort(durations)
		calls := map[string]int{}
		throttled := 0
		for _, r := range front.Requests() {
			calls[r.Service]++
			if r.ErrorCode == "Throttling" || r.ErrorCode == "ThrottlingException" {
				throttled++
			}
		}
		var firstErr error
		for _, e := range errs {
			if e != nil {
				firstErr = e
				break
			}
		}
		b.ReportMetric(float64(n), "agents")
		b.ReportMetric(float64(joined.Load()), "joined")
		b.ReportMetric(durations[n/2].Seconds(), "p50-s")
		b.ReportMetric(durations[n-1].Seconds(), "last-s")
		b.ReportMetric(durations[n*99/100].Seconds(), "p99-s")
		b.ReportMetric(float64(n)/rate, "floor-s")
		b.ReportMetric(bareReads.Seconds(), "bare-reads-s")
		b.ReportMetric(float64(calls["route53"]), "route53-calls")
		b.ReportMetric(float64(calls[storeName]), storeName+"-calls")
		b.ReportMetric(float64(throttled), "throttled")
		if firstErr != nil {
			b.Logf("first boot error: %v", firstErr)
		}
	}
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
