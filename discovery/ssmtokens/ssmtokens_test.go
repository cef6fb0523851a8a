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
	"github.com/swarm-agent/swarm-agent/discovery/tokenstoretest"
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

// TestConformance checks what is SSM's own (how AWS reports missing parameters, SecureString
// under the cluster path) through the real SDK against moto and the front; TestContract the
// rest.
func TestConformance(t *testing.T) {
	e := fronttest.Start(t, map[string]awsfront.Limit{"ssm": {}})
	ctx := t.Context()
	s, err := ssmtokens.New(e.SSM, "prod", "")
	if err != nil {
		t.Fatal(err)
	}
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
	t.Run("tokens are SecureString under the cluster path", func(t *testing.T) {
		if err := s.PutTokens(ctx, "cid1", swarm.JoinTokens{Worker: "SWMTKN-1-w", Manager: "SWMTKN-1-m"}); err != nil {
			t.Fatal(err)
		}
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
}

// TestContract runs the contract every token store passes, through the real SDK against moto
// and the front.
func TestContract(t *testing.T) {
	e := fronttest.Start(t, map[string]awsfront.Limit{"ssm": {}})
	tokenstoretest.Run(t, tokenstoretest.Env{
		New: func(t *testing.T, cluster string) discovery.TokenStore {
			s, err := ssmtokens.New(e.SSM, cluster, "")
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		WhereUnlockKey: func(cluster string) string { return "/swarm-agent/" + cluster + "/unlock-key" },
		Where: func(cluster string, r swarm.Role) string {
			return "/swarm-agent/" + cluster + "/join-token/" + string(r)
		},
		Faults: e.StoreFaults("ssm", "GetParameters", "PutParameter"),
	})
}
