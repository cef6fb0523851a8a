// Package fronttest starts moto and the AWS front for a test and gives it SDK clients pointed
// at the front. A test that needs them is skipped only when moto_server is not installed.
package fronttest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery/tokenstoretest"
	"github.com/swarm-agent/swarm-agent/internal/awsfront"
)

// Env is moto plus the front, with clients.
type Env struct {
	Front *awsfront.Front
	AWS   aws.Config
	R53   *route53.Client
	SSM   *ssm.Client
	SM    *secretsmanager.Client
	ASG   *autoscaling.Client
	EC2   *ec2.Client
}

// Start runs moto and a front (API, IMDS and DNS on 127.0.0.1) until the test ends. limits
// override the front's default per-service limits (nil keeps Route 53 at 5 requests/s).
func Start(t testing.TB, limits map[string]awsfront.Limit) *Env {
	t.Helper()
	if os.Getenv("SWARM_AGENT_TEST_UNIT_ONLY") != "" {
		t.Skip("SWARM_AGENT_TEST_UNIT_ONLY is set (make test-unit): moto is not started")
	}
	if _, err := exec.LookPath("moto_server"); err != nil {
		t.Skipf("moto_server is not installed (pip install 'moto[server]'); CI has it: %v", err)
	}
	ctx := t.Context()
	moto, err := awsfront.StartMoto(ctx, "127.0.0.1", 0)
	if errors.Is(err, awsfront.ErrNoMoto) {
		t.Skipf("moto_server: %v", err)
	}
	if err != nil {
		t.Fatalf("start moto: %v", err)
	}
	t.Cleanup(func() { _ = moto.Close() })
	front, err := awsfront.Start(ctx, awsfront.Config{MotoURL: moto.URL(), APIAddr: "127.0.0.1:0",
		IMDSAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0", Limits: limits, Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("start AWS front: %v", err)
	}
	t.Cleanup(func() { _ = front.Close() })
	e := &Env{Front: front}
	e.AWS = aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	e.R53 = route53.NewFromConfig(e.AWS, func(o *route53.Options) { o.BaseEndpoint = aws.String(front.APIURL()) })
	e.SSM = ssm.NewFromConfig(e.AWS, func(o *ssm.Options) { o.BaseEndpoint = aws.String(front.APIURL()) })
	e.SM = secretsmanager.NewFromConfig(e.AWS, func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(front.APIURL()) })
	e.ASG = autoscaling.NewFromConfig(e.AWS, func(o *autoscaling.Options) { o.BaseEndpoint = aws.String(front.APIURL()) })
	e.EC2 = ec2.NewFromConfig(e.AWS, func(o *ec2.Options) { o.BaseEndpoint = aws.String(front.APIURL()) })
	return e
}

// Zone creates a private hosted zone named name and returns its id (without /hostedzone/).
func (e *Env) Zone(t testing.TB, name string) string {
	t.Helper()
	out, err := e.R53.CreateHostedZone(t.Context(), &route53.CreateHostedZoneInput{
		Name: aws.String(name), CallerReference: aws.String(fmt.Sprint(time.Now().UnixNano())),
		HostedZoneConfig: &r53types.HostedZoneConfig{PrivateZone: true},
		VPC:              &r53types.VPC{VPCId: aws.String("vpc-12345678"), VPCRegion: r53types.VPCRegionUsEast1},
	})
	if err != nil {
		t.Fatalf("create hosted zone %s: %v", name, err)
	}
	return strings.TrimPrefix(aws.ToString(out.HostedZone.Id), "/hostedzone/")
}

// Count returns how many logged requests match service and operation ("" = any).
func (e *Env) Count(service, op string) int { return e.Front.Count(service, op) }

// StoreFaults injects the token-store contract's faults (discovery/tokenstoretest) into
// service's calls: readOp is what a store's Token calls, writeOp what PutTokens calls.
func (e *Env) StoreFaults(service, readOp, writeOp string) *tokenstoretest.Faults {
	inject := func(op, kind string, n int) {
		e.Front.InjectFault(awsfront.Fault{Service: service, Operation: op, Kind: kind, Count: n})
	}
	return &tokenstoretest.Faults{
		Throttle: func(n int) { inject("", awsfront.FaultThrottle, n) },
		Deny: func(write bool) {
			if write {
				inject(writeOp, awsfront.FaultDenied, 1)
				return
			}
			inject(readOp, awsfront.FaultDenied, 1)
		},
		Fail:  func(n int) { inject("", awsfront.Fault5xx, n) },
		Reads: func() int { return e.Count(service, readOp) },
	}
}
