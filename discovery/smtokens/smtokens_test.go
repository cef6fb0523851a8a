package smtokens_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/discovery/smtokens"
	"github.com/swarm-agent/swarm-agent/discovery/tokenstoretest"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestNewRejectsBadCluster(t *testing.T) {
	for _, c := range []string{"", "has space", "a/b", strings.Repeat("x", 65)} {
		if _, err := smtokens.New(nil, c, ""); err == nil || !strings.Contains(err.Error(), "cluster") {
			t.Errorf("New(cluster=%q) = %v, want an error naming the cluster", c, err)
		}
	}
}

// TestConformance runs the store through the real SDK against moto and the front, with the
// front's Secrets Manager limits (GetSecretValue 10,000/s, writes 50/s).
func TestConformance(t *testing.T) {
	e := fronttest.Start(t, nil)
	ctx := t.Context()
	s, err := smtokens.New(e.SM, "prod", "")
	if err != nil {
		t.Fatal(err)
	}
	tok := swarm.JoinTokens{Worker: "SWMTKN-1-w", Manager: "SWMTKN-1-m"}
	t.Run("put creates, then read each role with its cluster id in one call", func(t *testing.T) {
		if err := s.PutTokens(ctx, "cid1", tok); err != nil {
			t.Fatal(err)
		}
		if n := e.Count("secretsmanager", "CreateSecret"); n != 2 {
			t.Fatalf("%d CreateSecret calls, want 2 (one secret per role)", n)
		}
		for _, r := range []swarm.Role{swarm.RoleWorker, swarm.RoleManager} {
			e.Front.ResetRequests()
			got, cid, err := s.Token(ctx, r)
			if err != nil || got != tok.For(r) || cid != "cid1" {
				t.Fatalf("Token(%s) = %q %q %v", r, got, cid, err)
			}
			if n := len(e.Front.Requests()); n != 1 {
				t.Fatalf("Token(%s) made %d requests, want 1 GetSecretValue", r, n)
			}
		}
	})
	t.Run("rotation writes new values into the same secrets", func(t *testing.T) {
		e.Front.ResetRequests()
		if err := s.PutTokens(ctx, "cid2", swarm.JoinTokens{Worker: "SWMTKN-1-w2", Manager: "SWMTKN-1-m2"}); err != nil {
			t.Fatal(err)
		}
		if n := e.Count("secretsmanager", "CreateSecret"); n != 0 {
			t.Fatalf("%d CreateSecret calls on rotation, want 0", n)
		}
		if got, cid, _ := s.Token(ctx, swarm.RoleWorker); got != "SWMTKN-1-w2" || cid != "cid2" {
			t.Fatalf("after rotation: %q %q", got, cid)
		}
	})
	t.Run("secret values never reach the front's request log", func(t *testing.T) {
		for _, r := range e.Front.Requests() {
			for k, v := range r.Params {
				if strings.Contains(v, "SWMTKN") {
					t.Fatalf("request %s logged %s=%q", r.Operation, k, v)
				}
			}
		}
	})
	t.Run("a secret created by another manager in between is written over", func(t *testing.T) {
		other, _ := smtokens.New(e.SM, "race", "")
		// Another manager creates the worker secret first (as a racing publisher would).
		if _, err := e.SM.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(other.Name(swarm.RoleWorker)),
			SecretString: aws.String(`{"token":"SWMTKN-1-old","cluster_id":"c0"}`)}); err != nil {
			t.Fatal(err)
		}
		if err := other.PutTokens(ctx, "c1", tok); err != nil {
			t.Fatal(err)
		}
		if got, cid, _ := other.Token(ctx, swarm.RoleWorker); got != tok.Worker || cid != "c1" {
			t.Fatalf("Token = %q %q, want the new value", got, cid)
		}
	})
	t.Run("a secret scheduled for deletion reads as not published and is restored by the next publish", func(t *testing.T) {
		del, _ := smtokens.New(e.SM, "deleted", "")
		if err := del.PutTokens(ctx, "c1", tok); err != nil {
			t.Fatal(err)
		}
		if _, err := e.SM.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String(del.Name(swarm.RoleWorker)),
			RecoveryWindowInDays: aws.Int64(7)}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := del.Token(ctx, swarm.RoleWorker); !errors.Is(err, discovery.ErrNoToken) {
			t.Fatalf("Token of a secret scheduled for deletion: %v, want ErrNoToken", err)
		}
		if err := del.PutTokens(ctx, "c2", tok); err != nil {
			t.Fatalf("PutTokens over a secret scheduled for deletion: %v", err)
		}
		if got, cid, err := del.Token(ctx, swarm.RoleWorker); err != nil || got != tok.Worker || cid != "c2" {
			t.Fatalf("after restore: %q %q %v", got, cid, err)
		}
	})
	t.Run("a secret that is not swarm-agent's is not a token and is not echoed", func(t *testing.T) {
		odd, _ := smtokens.New(e.SM, "odd", "")
		if _, err := e.SM.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(odd.Name(swarm.RoleWorker)),
			SecretString: aws.String("SWMTKN-1-plain")}); err != nil {
			t.Fatal(err)
		}
		_, _, err := odd.Token(ctx, swarm.RoleWorker)
		if !errors.Is(err, discovery.ErrNoToken) || strings.Contains(err.Error(), "SWMTKN") {
			t.Fatalf("Token of a plain secret: %v, want ErrNoToken without the value", err)
		}
	})
}

// TestContract runs the contract every token store passes, through the real SDK against moto
// and the front.
func TestContract(t *testing.T) {
	e := fronttest.Start(t, nil)
	tokenstoretest.Run(t, tokenstoretest.Env{
		New: func(t *testing.T, cluster string) discovery.TokenStore {
			s, err := smtokens.New(e.SM, cluster, "")
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		WhereUnlockKey: func(cluster string) string { return "swarm-agent/" + cluster + "/unlock-key" },
		Where: func(cluster string, r swarm.Role) string {
			return "swarm-agent/" + cluster + "/join-token/" + string(r)
		},
		Atomic: true, // one secret per role holds its token and the cluster id
		Faults: e.StoreFaults("secretsmanager", "GetSecretValue", "PutSecretValue"),
	})
}
