// Package tokenstoretest is the contract every join-token store passes (SSM Parameter Store,
// Secrets Manager, Consul KV): one suite, run by each store's tests against its real backend
// (moto behind the AWS front, a real Consul agent), so that the stores cannot drift apart.
package tokenstoretest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// Env describes a store under test.
type Env struct {
	// New returns the store of cluster; each call with another cluster name is a store that
	// must not see the others' tokens.
	New func(t *testing.T, cluster string) discovery.TokenStore
	// Where is the name of the place role's token of cluster is kept (a parameter, a secret,
	// a key): what errors about it must name.
	Where func(cluster string, r swarm.Role) string
	// WhereUnlockKey is the name of the place cluster's unlock key is kept; the unlock-key
	// cases run when it is set (and the store must then be a discovery.UnlockKeyStore).
	WhereUnlockKey func(cluster string) string
	// Atomic says PutTokens writes each role's token with the cluster id in one step, so
	// that racing publishers of different swarms cannot leave one's token with the other's
	// id (the race case runs only then).
	Atomic bool
	// Faults, when the backend can inject them (the AWS front), runs the fault cases.
	Faults *Faults
}

// Faults makes the backend refuse calls.
type Faults struct {
	// Throttle makes the next n calls of the store's service answer as throttled.
	Throttle func(n int)
	// Deny makes the next read (write: the next write) be refused by IAM.
	Deny func(write bool)
	// Fail makes the next n calls fail with a server error.
	Fail func(n int)
	// Reads counts the store's read calls so far (the calls Token makes).
	Reads func() int
}

// Run runs the contract. Cases use cluster names of their own, so they do not depend on each
// other's order.
func Run(t *testing.T, env Env) {
	ctx := t.Context()
	tok := swarm.JoinTokens{Worker: "SWMTKN-1-contract-w", Manager: "SWMTKN-1-contract-m"}
	roles := []swarm.Role{swarm.RoleWorker, swarm.RoleManager}

	t.Run("an absent token is ErrNoToken naming where it was looked for", func(t *testing.T) {
		s := env.New(t, "absent")
		for _, r := range roles {
			_, _, err := s.Token(ctx, r)
			if !errors.Is(err, discovery.ErrNoToken) || !strings.Contains(err.Error(), env.Where("absent", r)) {
				t.Errorf("Token(%s) before publish: %v, want ErrNoToken naming %s", r, err, env.Where("absent", r))
			}
		}
	})
	t.Run("each role reads its own token with the cluster id", func(t *testing.T) {
		s := env.New(t, "put")
		if err := s.PutTokens(ctx, "cid1", tok); err != nil {
			t.Fatal(err)
		}
		for _, r := range roles {
			got, cid, err := s.Token(ctx, r)
			if err != nil || got != tok.For(r) || cid != "cid1" {
				t.Errorf("Token(%s) = %q %q %v, want %q cid1", r, got, cid, err, tok.For(r))
			}
		}
	})
	t.Run("a rotation replaces both tokens and the cluster id", func(t *testing.T) {
		s := env.New(t, "rotate")
		if err := s.PutTokens(ctx, "cid1", tok); err != nil {
			t.Fatal(err)
		}
		next := swarm.JoinTokens{Worker: "SWMTKN-1-contract-w2", Manager: "SWMTKN-1-contract-m2"}
		if err := s.PutTokens(ctx, "cid2", next); err != nil {
			t.Fatal(err)
		}
		for _, r := range roles {
			if got, cid, err := s.Token(ctx, r); err != nil || got != next.For(r) || cid != "cid2" {
				t.Errorf("after rotation Token(%s) = %q %q %v, want %q cid2", r, got, cid, err, next.For(r))
			}
		}
	})
	t.Run("another cluster does not see them", func(t *testing.T) {
		if err := env.New(t, "mine").PutTokens(ctx, "cid1", tok); err != nil {
			t.Fatal(err)
		}
		for _, r := range roles {
			if _, _, err := env.New(t, "theirs").Token(ctx, r); !errors.Is(err, discovery.ErrNoToken) {
				t.Errorf("other cluster's Token(%s): %v, want ErrNoToken", r, err)
			}
		}
	})
	t.Run("empty tokens are refused and change nothing", func(t *testing.T) {
		s := env.New(t, "empty")
		if err := s.PutTokens(ctx, "cid1", tok); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []swarm.JoinTokens{{}, {Worker: tok.Worker}, {Manager: tok.Manager}} {
			if err := s.PutTokens(ctx, "cid2", bad); err == nil {
				t.Errorf("PutTokens(%+v) succeeded, want a refusal", bad)
			}
		}
		for _, r := range roles {
			if got, cid, err := s.Token(ctx, r); err != nil || got != tok.For(r) || cid != "cid1" {
				t.Errorf("after refused puts Token(%s) = %q %q %v, want the earlier value", r, got, cid, err)
			}
		}
	})
	// Only for stores that write each role's token with the cluster id in one step (Atomic).
	if env.Atomic {
		t.Run("racing publishers leave each role's token with its own cluster id", func(t *testing.T) {
			// Two managers publish at once (a rotation seen by two leaders in turn): whichever
			// wins per role, a reader never gets one publisher's token with the other's id.
			s1, s2 := env.New(t, "race"), env.New(t, "race")
			a := swarm.JoinTokens{Worker: "SWMTKN-1-a-w", Manager: "SWMTKN-1-a-m"}
			b := swarm.JoinTokens{Worker: "SWMTKN-1-b-w", Manager: "SWMTKN-1-b-m"}
			var wg sync.WaitGroup
			errs := make([]error, 2)
			wg.Go(func() { errs[0] = s1.PutTokens(ctx, "cid-a", a) })
			wg.Go(func() { errs[1] = s2.PutTokens(ctx, "cid-b", b) })
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("racing PutTokens: %v", err)
			}
			for _, r := range roles {
				got, cid, err := s1.Token(ctx, r)
				if err != nil || !(got == a.For(r) && cid == "cid-a" || got == b.For(r) && cid == "cid-b") {
					t.Errorf("after the race Token(%s) = %q %q %v: token and cluster id of different publishers", r, got, cid, err)
				}
			}
		})
	}
	if env.WhereUnlockKey != nil {
		runUnlockKey(t, env)
	}
	if env.Faults == nil {
		return
	}
	f := env.Faults
	s := env.New(t, "faults")
	if err := s.PutTokens(ctx, "cid1", tok); err != nil {
		t.Fatal(err)
	}
	where := env.Where("faults", swarm.RoleManager)
	t.Run("throttling is retried", func(t *testing.T) {
		before := f.Reads()
		f.Throttle(2)
		if got, _, err := s.Token(ctx, swarm.RoleManager); err != nil || got != tok.Manager {
			t.Fatalf("Token through 2 throttled answers: %q %v", got, err)
		}
		if n := f.Reads() - before; n != 3 {
			t.Fatalf("%d read calls, want 3 (2 throttled, then 1 answered)", n)
		}
	})
	t.Run("access denied is ErrAccessDenied naming the place, never the token", func(t *testing.T) {
		f.Deny(false)
		_, _, err := s.Token(ctx, swarm.RoleManager)
		checkErr(t, "denied read", err, discovery.ErrAccessDenied, where, tok)
		f.Deny(true)
		err = s.PutTokens(ctx, "cid2", tok)
		checkErr(t, "denied write", err, discovery.ErrAccessDenied, "", tok)
	})
	t.Run("a failing backend is an error naming the place, never the token", func(t *testing.T) {
		f.Fail(10)
		_, _, err := s.Token(ctx, swarm.RoleManager)
		checkErr(t, "failed read", err, nil, where, tok)
		if errors.Is(err, discovery.ErrNoToken) {
			t.Errorf("failed read is ErrNoToken: a broken backend must not read as not published")
		}
	})
}

// unlockStore returns cluster's store as an unlock-key store, failing the test when it is not one.
func unlockStore(t *testing.T, env Env, cluster string) discovery.UnlockKeyStore {
	t.Helper()
	s, ok := env.New(t, cluster).(discovery.UnlockKeyStore)
	if !ok {
		t.Fatalf("the store of %s keeps no unlock key (not a discovery.UnlockKeyStore)", cluster)
	}
	return s
}

// runUnlockKey is the unlock key's part of the contract.
func runUnlockKey(t *testing.T, env Env) {
	ctx := t.Context()
	key := swarm.UnlockKey{Key: "SWMKEY-1-contract", ClusterID: "cid1"}
	t.Run("an absent unlock key is ErrNoUnlockKey naming where it was looked for", func(t *testing.T) {
		_, err := unlockStore(t, env, "absent-key").UnlockKey(ctx)
		if !errors.Is(err, discovery.ErrNoUnlockKey) || !strings.Contains(err.Error(), env.WhereUnlockKey("absent-key")) {
			t.Errorf("UnlockKey before publish: %v, want ErrNoUnlockKey naming %s", err, env.WhereUnlockKey("absent-key"))
		}
	})
	t.Run("the unlock key reads back with its previous key and cluster id, and a rotation replaces it", func(t *testing.T) {
		s := unlockStore(t, env, "key")
		if err := s.PutUnlockKey(ctx, key); err != nil {
			t.Fatal(err)
		}
		if got, err := s.UnlockKey(ctx); err != nil || got != key {
			t.Errorf("UnlockKey = %s %v, want %s", got, err, key) // String redacts the keys
		}
		next := swarm.UnlockKey{Key: "SWMKEY-1-contract-2", Previous: key.Key, ClusterID: "cid1"}
		if err := s.PutUnlockKey(ctx, next); err != nil {
			t.Fatal(err)
		}
		if got, err := s.UnlockKey(ctx); err != nil || got != next {
			t.Errorf("after rotation UnlockKey = %s %v (key %t, previous %t), want the rotated key", got, err, got.Key == next.Key, got.Previous == next.Previous)
		}
	})
	t.Run("join tokens and the unlock key do not overwrite each other", func(t *testing.T) {
		s := unlockStore(t, env, "both")
		tok := swarm.JoinTokens{Worker: "SWMTKN-1-both-w", Manager: "SWMTKN-1-both-m"}
		if err := s.PutUnlockKey(ctx, key); err != nil {
			t.Fatal(err)
		}
		if err := s.(discovery.TokenStore).PutTokens(ctx, "cid1", tok); err != nil {
			t.Fatal(err)
		}
		if got, err := s.UnlockKey(ctx); err != nil || got != key {
			t.Errorf("UnlockKey after PutTokens = %s %v, want it kept", got, err)
		}
		if got, _, err := s.(discovery.TokenStore).Token(ctx, swarm.RoleWorker); err != nil || got != tok.Worker {
			t.Errorf("Token(worker) after PutUnlockKey = %q %v, want it kept", got, err)
		}
	})
	t.Run("another cluster does not see the unlock key", func(t *testing.T) {
		if err := unlockStore(t, env, "key-mine").PutUnlockKey(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := unlockStore(t, env, "key-theirs").UnlockKey(ctx); !errors.Is(err, discovery.ErrNoUnlockKey) {
			t.Errorf("other cluster's UnlockKey: %v, want ErrNoUnlockKey", err)
		}
	})
	t.Run("an unlock key without key or cluster id is refused and changes nothing", func(t *testing.T) {
		s := unlockStore(t, env, "key-empty")
		if err := s.PutUnlockKey(ctx, key); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []swarm.UnlockKey{{}, {ClusterID: "cid2"}, {Key: "SWMKEY-1-other"}} {
			if err := s.PutUnlockKey(ctx, bad); err == nil {
				t.Errorf("PutUnlockKey(%s) succeeded, want a refusal", bad)
			}
		}
		if got, err := s.UnlockKey(ctx); err != nil || got != key {
			t.Errorf("after refused puts UnlockKey = %s %v, want the earlier value", got, err)
		}
	})
	if env.Faults == nil {
		return
	}
	f := env.Faults
	s := unlockStore(t, env, "key-faults")
	if err := s.PutUnlockKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	t.Run("a refused unlock-key read is ErrAccessDenied naming the place, never the key", func(t *testing.T) {
		f.Deny(false)
		_, err := s.UnlockKey(ctx)
		switch {
		case err == nil || !errors.Is(err, discovery.ErrAccessDenied) || errors.Is(err, discovery.ErrNoUnlockKey):
			t.Errorf("denied UnlockKey: %v, want ErrAccessDenied only", err)
		case !strings.Contains(err.Error(), env.WhereUnlockKey("key-faults")):
			t.Errorf("denied UnlockKey: %v does not name %s", err, env.WhereUnlockKey("key-faults"))
		case strings.Contains(err.Error(), "SWMKEY"):
			t.Errorf("denied UnlockKey: %v shows a key", err)
		}
		f.Deny(true)
		if err := s.PutUnlockKey(ctx, key); !errors.Is(err, discovery.ErrAccessDenied) || strings.Contains(err.Error(), "SWMKEY") {
			t.Errorf("denied PutUnlockKey: %v, want ErrAccessDenied without the key", err)
		}
	})
	t.Run("a failing backend is not ErrNoUnlockKey", func(t *testing.T) {
		f.Fail(10)
		_, err := s.UnlockKey(ctx)
		if err == nil || errors.Is(err, discovery.ErrNoUnlockKey) || strings.Contains(err.Error(), "SWMKEY") {
			t.Errorf("failed UnlockKey: %v; a broken backend must be an error other than not published, without the key", err)
		}
		// Use up the failures the retries left, so that the cases after this one start clean.
		for range 10 {
			if _, err := s.UnlockKey(ctx); err == nil {
				return
			}
		}
		t.Errorf("UnlockKey still fails after the injected failures ran out")
	})
}

// checkErr checks that err is non-nil, wraps want (when set), names where (when set) and shows
// no token.
func checkErr(t *testing.T, what string, err, want error, where string, tok swarm.JoinTokens) {
	t.Helper()
	var problems []string
	switch {
	case err == nil:
		t.Errorf("%s: no error", what)
		return
	case want != nil && !errors.Is(err, want):
		problems = append(problems, fmt.Sprintf("does not wrap %v", want))
	}
	if where != "" && !strings.Contains(err.Error(), where) {
		problems = append(problems, "does not name "+where)
	}
	if strings.Contains(err.Error(), tok.Worker) || strings.Contains(err.Error(), tok.Manager) || strings.Contains(err.Error(), "SWMTKN") {
		problems = append(problems, "shows a token")
	}
	if len(problems) > 0 {
		t.Errorf("%s: %v: %s", what, err, strings.Join(problems, "; "))
	}
}
