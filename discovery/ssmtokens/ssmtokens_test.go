package ssmtokens_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/discovery/ssmtokens"
	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestNewRejectsBadCluster(t *testing.T) {
	for _, c := range []string{"", "has space", "a/b", strings.Repeat("x", 65)} {
		if _, err := ssmtokens.New(nil, c, ""); err == nil || !strings.Contains(err.Error(), "cluster") {
			t.Errorf("New(cluster=%q) = %v, want an error naming the cluster", c, err)
		}
	}
}

// TestConformance runs the store through the real SDK against moto and the front.
func TestConformance(t *testing.T) {
	e := fronttest.Start(t, map[string]awsfront.Limit{"ssm": {}})
	ctx := t.Context()
	s, err := ssmtokens.New(e.SSM, "prod", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("absent token is ErrNoToken", func(t *testing.T) {
		_, _, err := s.Token(ctx, swarm.RoleWorker)
		if !errors.Is(err, discovery.ErrNoToken) {
			t.Fatalf("Token before publish: %v, want ErrNoToken", err)
		}
	})
	t.Run("missing parameters as AWS reports them", func(t *testing.T) {
		// GetParameters (what Token uses: one call for token and cluster id) lists missing
		// names in InvalidParameters; GetParameter answers ParameterNotFound.
		out, err := e.SSM.GetParameters(ctx, &ssm.GetParametersInput{Names: []string{"/swarm-agent/prod/join-token/worker"}, WithDecryption: aws.Bool(true)})
		if err != nil || len(out.Parameters) != 0 || len(out.InvalidParameters) != 1 || out.InvalidParameters[0] != "/swarm-agent/prod/join-token/worker" {
			t.Fatalf("GetParameters of a missing name = %+v, %v; want it in InvalidParameters", out, err)
		}
		_, err = e.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/swarm-agent/prod/join-token/worker"), WithDecryption: aws.Bool(true)})
		var pnf *ssmtypes.ParameterNotFound
		if !errors.As(err, &pnf) {
			t.Fatalf("GetParameter of a missing name: %v, want *types.ParameterNotFound", err)
		}
	})
	t.Run("put then read each role", func(t *testing.T) {
		tok := swarm.JoinTokens{Worker: "SWMTKN-1-w", Manager: "SWMTKN-1-m"}
		if err := s.PutTokens(ctx, "cid1", tok); err != nil {
			t.Fatal(err)
		}
		for _, r := range []swarm.Role{swarm.RoleWorker, swarm.RoleManager} {
			got, cid, err := s.Token(ctx, r)
			if err != nil || got != tok.For(r) || cid != "cid1" {
				t.Fatalf("Token(%s) = %q %q %v", r, got, cid, err)
			}
		}
		// Replaced on rotation.
		if err := s.PutTokens(ctx, "cid2", swarm.JoinTokens{Worker: "SWMTKN-1-w2", Manager: "SWMTKN-1-m2"}); err != nil {
			t.Fatal(err)
		}
		if got, cid, _ := s.Token(ctx, swarm.RoleWorker); got != "SWMTKN-1-w2" || cid != "cid2" {
			t.Fatalf("after rotation: %q %q", got, cid)
		}
	})
	t.Run("tokens are SecureString under the cluster path", func(t *testing.T) {
		for _, role := range []string{"worker", "manager"} {
			out, err := e.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/swarm-agent/prod/join-token/" + role)})
			if err != nil {
				t.Fatal(err)
			}
			if out.Parameter.Type != ssmtypes.ParameterTypeSecureString {
				t.Errorf("%s token stored as %s", role, out.Parameter.Type)
			}
		}
	})
	t.Run("another cluster does not see them", func(t *testing.T) {
		other, _ := ssmtokens.New(e.SSM, "staging", "")
		if _, _, err := other.Token(ctx, swarm.RoleWorker); !errors.Is(err, discovery.ErrNoToken) {
			t.Fatalf("other cluster: %v, want ErrNoToken", err)
		}
	})
	t.Run("throttling is retried", func(t *testing.T) {
		e.Front.ResetRequests()
		e.Front.InjectFault(awsfront.Fault{Service: "ssm", Kind: awsfront.FaultThrottle, Count: 2})
		if _, _, err := s.Token(ctx, swarm.RoleWorker); err != nil {
			t.Fatalf("Token through 2 throttles: %v", err)
		}
		if n := e.Count("ssm", "GetParameters"); n != 3 {
			t.Fatalf("%d GetParameters calls, want 3 (2 throttled + 1)", n)
		}
	})
	t.Run("empty tokens are refused", func(t *testing.T) {
		if err := s.PutTokens(ctx, "c", swarm.JoinTokens{}); err == nil {
			t.Fatal("PutTokens with empty tokens succeeded")
		}
	})
	t.Run("a denied read names the parameter, never the token", func(t *testing.T) {
		e.Front.InjectFault(awsfront.Fault{Service: "ssm", Kind: awsfront.Fault5xx, Count: 10})
		_, _, err := s.Token(ctx, swarm.RoleManager)
		if err == nil || !strings.Contains(err.Error(), "/swarm-agent/prod/join-token/manager") || strings.Contains(err.Error(), "SWMTKN") {
			t.Fatalf("error %v: want one naming the parameter and not the token", err)
		}
	})
}
