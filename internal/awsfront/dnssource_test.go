package awsfront_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
)

// TestDNSAnswersFollowWritesAndCrowds: the front's DNS answers every change as soon as
// ChangeResourceRecordSets has returned, and a thousand agents asking at the same instant all get
// an answer (the VPC resolver does not fall over for them; a per-query read of moto did: the
// 1000-worker scale run then saw DNS time out for minutes).
func TestDNSAnswersFollowWritesAndCrowds(t *testing.T) {
	t.Parallel()
	e := fronttest.Start(t, map[string]awsfront.Limit{"route53": {}})
	zone := e.Zone(t, "crowd.internal")
	ctx := t.Context()
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", e.Front.DNSAddr())
	}}
	upsert := func(value string) {
		s := aSet("m.crowd.internal", value)
		if _, err := e.R53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone),
			ChangeBatch: &r53types.ChangeBatch{Changes: []r53types.Change{{Action: r53types.ChangeActionUpsert, ResourceRecordSet: &s}}}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("each write is answered at once", func(t *testing.T) {
		for i := range 20 {
			want := fmt.Sprintf("10.9.0.%d", i+1)
			upsert(want)
			got, err := res.LookupHost(ctx, "m.crowd.internal")
			if err != nil || len(got) != 1 || got[0] != want {
				t.Fatalf("write %d: DNS answers %v %v right after the change returned, want [%s]", i, got, err, want)
			}
		}
	})
	t.Run("a thousand queries at once are all answered", func(t *testing.T) {
		const n = 1000
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				got, err := res.LookupHost(qctx, "m.crowd.internal")
				if err == nil && (len(got) != 1 || got[0] != "10.9.0.20") {
					err = fmt.Errorf("answer %v", got)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		failed := 0
		var first error
		for _, err := range errs {
			if err != nil {
				failed++
				if first == nil {
					first = err
				}
			}
		}
		if failed > 0 {
			t.Fatalf("%d of %d simultaneous queries failed; first: %v", failed, n, first)
		}
	})
}
