package consul

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func uuid(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// TestACL runs the documented policies (policies/*.hcl, loaded as they are) on an agent with
// ACLs on and default deny.
func TestACL(t *testing.T) {
	management := uuid(t)
	a := startConsul(t, fmt.Sprintf(`acl {
  enabled        = true
  default_policy = "deny"
  tokens {
    initial_management = %q
    agent              = %q
  }
}
`, management, management), management)
	admin := a.client(t, management)

	secrets := map[string]string{}
	for _, role := range []string{"manager", "worker"} {
		rules, err := os.ReadFile(filepath.Join("policies", role+".hcl"))
		if err != nil {
			t.Fatal(err)
		}
		pol, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: "swarm-agent-prod-" + role, Rules: string(rules)}, nil)
		if err != nil {
			t.Fatalf("create %s policy from policies/%s.hcl: %v", role, role, err)
		}
		tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		secrets[role] = tok.SecretID
	}
	wrongToken := uuid(t)

	// Each provider gets its token the way an operator would give it.
	tokenFile := filepath.Join(t.TempDir(), "manager.token")
	if err := os.WriteFile(tokenFile, []byte(secrets["manager"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	provider := func(discoveryString string, env map[string]string) *Provider {
		t.Helper()
		spec, err := discovery.Parse(discoveryString + " address=" + a.Addr)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := FromSpec(spec, "prod", func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	mgr := provider("provider=consul token_file="+tokenFile, nil)
	wrk := provider("provider=consul", map[string]string{"CONSUL_HTTP_TOKEN": secrets["worker"]})
	wrong := provider("provider=consul", map[string]string{"SWARM_AGENT_CONSUL_TOKEN": wrongToken})
	none := provider("provider=consul", nil)

	ctx := t.Context()
	tokens := swarm.JoinTokens{Manager: "SWMTKN-1-secret-manager", Worker: "SWMTKN-1-secret-worker"}
	unlock := swarm.UnlockKey{Key: "SWMKEY-1-secret-unlock", ClusterID: "cluster-1"}
	// secretFree fails when an error shows a token of any kind.
	secretFree := func(t *testing.T, what string, err error) {
		t.Helper()
		for _, s := range []string{secrets["manager"], secrets["worker"], wrongToken, management, tokens.Manager, tokens.Worker, unlock.Key} {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q shows a secret", what, err)
			}
		}
	}
	denied := func(t *testing.T, what string, err error, want string) {
		t.Helper()
		secretFree(t, what, err)
		if !errors.Is(err, ErrDenied) || errors.Is(err, discovery.ErrLockHeld) || errors.Is(err, discovery.ErrNoToken) {
			t.Errorf("%s: got %v, want an error wrapping only ErrDenied", what, err)
			return
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got error %q, want it to contain %q", what, err, want)
		}
	}

	t.Run("manager policy does its work", func(t *testing.T) {
		l, err := mgr.TryLock(ctx, discovery.Holder{InstanceID: "i-manager"}, gone)
		if err != nil {
			t.Fatalf("TryLock: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if err := mgr.PutTokens(ctx, "cluster-1", tokens); err != nil {
			t.Fatalf("PutTokens: %v", err)
		}
		if tok, cid, err := mgr.Token(ctx, swarm.RoleManager); err != nil || tok != tokens.Manager || cid != "cluster-1" {
			t.Errorf("Token(manager): got %q, %q, %v", tok, cid, err)
		}
		if err := mgr.PutUnlockKey(ctx, unlock); err != nil {
			t.Fatalf("PutUnlockKey: %v", err)
		}
		if got, err := mgr.UnlockKey(ctx); err != nil || got != unlock {
			t.Errorf("UnlockKey: got %v, %v; want the stored key", got, err) // String redacts the key
		}
		sp := listenSwarmPort(t)
		m := swarm.Member{InstanceID: "i-manager", Addr: "127.0.0.1", Port: sp.Port}
		if err := mgr.Register(ctx, m); err != nil {
			t.Fatalf("Register: %v", err)
		}
		waitManagers(t, mgr, []string{sp.Addr()}, 20*time.Second)
		// Workers see the managers too.
		waitManagers(t, wrk, []string{sp.Addr()}, 5*time.Second)
		if err := mgr.Deregister(ctx, m); err != nil {
			t.Fatalf("Deregister: %v", err)
		}
		waitManagers(t, wrk, nil, 5*time.Second)
	})

	t.Run("worker reads only the worker token", func(t *testing.T) {
		if tok, cid, err := wrk.Token(ctx, swarm.RoleWorker); err != nil || tok != tokens.Worker || cid != "cluster-1" {
			t.Errorf("Token(worker): got %q, %q, %v; want the worker token", tok, cid, err)
		}
		_, _, err := wrk.Token(ctx, swarm.RoleManager)
		denied(t, "worker Token(manager)", err, "consul: read key swarm-agent/prod/join-token/manager: denied by consul ACL: "+
			"the ACL token from CONSUL_HTTP_TOKEN lacks key read on swarm-agent/prod/join-token/manager")
		t.Logf("worker reading the manager token: %v", err)
		// The unlock key decrypts every manager's Raft state: managers only.
		_, err = wrk.UnlockKey(ctx)
		denied(t, "worker UnlockKey", err, "lacks key read on swarm-agent/prod/unlock-key")
		if errors.Is(err, discovery.ErrNoUnlockKey) {
			t.Errorf("worker UnlockKey: %v reads as not published, want only denied", err)
		}
		err = wrk.PutUnlockKey(ctx, swarm.UnlockKey{Key: "SWMKEY-1-forged", ClusterID: "cluster-1"})
		denied(t, "worker PutUnlockKey", err, "lacks key write on swarm-agent/prod/unlock-key")
		_, err = wrk.TryLock(ctx, discovery.Holder{InstanceID: "i-worker"}, gone)
		denied(t, "worker TryLock", err, "lacks session write and key write on swarm-agent/prod/bootstrap-lock")
		err = wrk.PutTokens(ctx, "cluster-2", tokens)
		denied(t, "worker PutTokens", err, "lacks key write on swarm-agent/prod/")
		err = wrk.Register(ctx, swarm.Member{InstanceID: "i-worker", Addr: "127.0.0.1", Port: 2377})
		denied(t, "worker Register", err, "lacks service write on swarm-manager")
	})

	t.Run("wrong token", func(t *testing.T) {
		_, err := wrong.Managers(ctx)
		denied(t, "Managers", err, "Consul does not know the ACL token from SWARM_AGENT_CONSUL_TOKEN (wrong or deleted token)")
		t.Logf("wrong token: %v", err)
		_, _, err = wrong.Token(ctx, swarm.RoleWorker)
		denied(t, "Token", err, "Consul does not know the ACL token from SWARM_AGENT_CONSUL_TOKEN")
	})

	t.Run("token without node read", func(t *testing.T) {
		pol, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: "service-only",
			Rules: `service "swarm-manager" { policy = "read" }`}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sp := listenSwarmPort(t)
		m := swarm.Member{InstanceID: "i-manager", Addr: "127.0.0.1", Port: sp.Port}
		if err := mgr.Register(ctx, m); err != nil {
			t.Fatalf("Register: %v", err)
		}
		waitManagers(t, mgr, []string{sp.Addr()}, 20*time.Second)
		p := provider("provider=consul", map[string]string{"CONSUL_HTTP_TOKEN": tok.SecretID})
		_, err = p.Managers(ctx)
		secretFree(t, "Managers", err)
		if want := "the ACL token from CONSUL_HTTP_TOKEN lacks service read on swarm-manager or node read: " +
			"every result was filtered out by ACL"; err == nil || !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), want) {
			t.Errorf("Managers: got %v, want an error wrapping ErrDenied containing %q", err, want)
		}
	})

	t.Run("no token", func(t *testing.T) {
		sp := listenSwarmPort(t)
		m := swarm.Member{InstanceID: "i-manager", Addr: "127.0.0.1", Port: sp.Port}
		if err := mgr.Register(ctx, m); err != nil {
			t.Fatalf("Register: %v", err)
		}
		waitManagers(t, mgr, []string{sp.Addr()}, 20*time.Second)
		// Consul filters what the anonymous token may not see instead of refusing: that must
		// not read as "no managers yet".
		_, err := none.Managers(ctx)
		denied(t, "Managers", err, "the agent's default ACL token (no token given) lacks service read on swarm-manager or node read: "+
			"no instance is visible to the anonymous token")
		t.Logf("no token: %v", err)
		_, _, err = none.Token(ctx, swarm.RoleWorker)
		denied(t, "Token", err, "lacks key read on swarm-agent/prod/join-token/worker")

		// An agent with a default token of its own answers for requests without one: then an
		// empty list is a real "no managers yet", not an ACL error.
		if _, err := admin.Agent().UpdateDefaultACLToken(secrets["worker"], nil); err != nil {
			t.Fatal(err)
		}
		waitManagers(t, none, []string{sp.Addr()}, 5*time.Second)
		if err := mgr.Deregister(ctx, m); err != nil {
			t.Fatalf("Deregister: %v", err)
		}
		if got, err := none.Managers(ctx); err != nil || len(got) != 0 {
			t.Errorf("Managers with the agent's default token and no manager: got %v, %v; want none and no error", got, err)
		}
	})
}
