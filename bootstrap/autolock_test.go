package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// The fake engine's and token store's autolock side, on the world.

func (e *fakeEngine) UnlockKey(ctx context.Context) (string, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if !e.mgr || e.state != StateActive {
		return "", errors.New("not a manager")
	}
	return e.w.unlockKeys[e.swarm], nil
}

func (e *fakeEngine) Unlock(ctx context.Context, key string) error {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	e.unlocks++
	switch {
	case e.state != StateLocked:
		return errors.New("swarm is not locked")
	case key != e.lockedWith:
		return errors.New("swarm could not be unlocked: invalid key")
	}
	e.state, e.lockedWith = StateActive, ""
	return nil
}

func (e *fakeEngine) EnsureAutolock(ctx context.Context) (bool, error) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if !e.mgr || e.state != StateActive {
		return false, errors.New("not a manager")
	}
	if e.w.unlockKeys[e.swarm] != "" {
		return false, nil
	}
	e.w.unlockKeys[e.swarm] = "SWMKEY-1-" + e.swarm + "-0"
	return true, nil
}

func (d fakeDisc) PutUnlockKey(ctx context.Context, k swarm.UnlockKey) error {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	if k.Key == "" || k.ClusterID == "" {
		return errors.New("empty unlock key")
	}
	d.w.storedKey = &k
	return nil
}

func (d fakeDisc) UnlockKey(ctx context.Context) (swarm.UnlockKey, error) {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	switch {
	case d.w.unlockKeyErr != nil:
		return swarm.UnlockKey{}, d.w.unlockKeyErr
	case d.w.storedKey == nil:
		return swarm.UnlockKey{}, fmt.Errorf("fake: unlock-key: %w", discovery.ErrNoUnlockKey)
	}
	return *d.w.storedKey, nil
}

// restartLocked is a reboot of an autolocked manager: its engine comes back locked, its state
// encrypted with its swarm's unlock key of the moment.
func (w *world) restartLocked(e *fakeEngine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e.state, e.lockedWith = StateLocked, w.unlockKeys[e.swarm]
}

// rotateUnlockKey is `docker swarm unlock-key --rotate`.
func (w *world) rotateUnlockKey(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := strings.Count(w.unlockKeys[id], "r") + 1
	w.unlockKeys[id] = fmt.Sprintf("SWMKEY-1-%s-%s", id, strings.Repeat("r", n))
}

// syncBuffer is a log sink safe for the boot's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bootAutolock boots e with --autolock, logging into log.
func (w *world) bootAutolock(ctx context.Context, e *fakeEngine, role swarm.Role, wait time.Duration, log *syncBuffer) (Result, error) {
	cfg := Config{Role: role, Cluster: "test", Wait: wait, Autolock: true,
		Identity: swarm.Identity{InstanceID: instanceOf(e.addr), PrivateIP: e.addr}}
	d := w.deps()
	d.Engine, d.Autolocker = e, e
	d.Log = zerolog.New(log)
	return Boot(ctx, cfg, d)
}

// noKeyIn fails when any unlock key the world ever had shows in s.
func noKeyIn(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, "SWMKEY") {
		t.Errorf("%s shows an unlock key:\n%s", what, s)
	}
}

// TestBootAutolock: a manager with --autolock creates the swarm locked and publishes its
// unlock key before anyone can find the swarm; rebooted (locked), each manager unlocks itself
// with the key from the store and reconciles, touching nothing else; after a rotation the
// leader's pass (KeepAutolock) republishes the key with the one it replaced, so that a manager
// restarted after the rotation (new key) and one that was down through it (old key) both
// unlock. The key never shows in logs or errors.
func TestBootAutolock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		var log syncBuffer
		m1, m2 := w.engine("10.0.0.1"), w.engine("10.0.0.2")
		for _, m := range []*fakeEngine{m1, m2} {
			if _, err := w.bootAutolock(t.Context(), m, swarm.RoleManager, time.Minute, &log); err != nil {
				t.Fatal(err)
			}
		}
		cid := m1.swarm
		if w.storedKey == nil || w.storedKey.Key != w.unlockKeys[cid] || w.storedKey.ClusterID != cid || w.storedKey.Previous != "" {
			t.Fatalf("after init the store holds %v, want the swarm's live key for %s", w.storedKey, cid)
		}
		for _, m := range []*fakeEngine{m1, m2} {
			w.restartLocked(m)
		}
		for _, m := range []*fakeEngine{m1, m2} {
			res, err := w.bootAutolock(t.Context(), m, swarm.RoleManager, time.Minute, &log)
			if err != nil || res.Action != ActReconcile {
				t.Fatalf("boot of a locked manager: %s %v, want it unlocked and reconciled", res.Action, err)
			}
			if m.state != StateActive || m.swarm != cid || m.leaves != 0 || m.unlocks != 1 {
				t.Fatalf("%s after boot: state %s swarm %s leaves %d unlocks %d; want active in %s, unlocked once, never left", m.addr, m.state, m.swarm, m.leaves, m.unlocks, cid)
			}
		}
		if w.inits != 1 || w.swarmCount() != 1 {
			t.Fatalf("inits=%d swarms=%d, want one", w.inits, w.swarmCount())
		}

		// m2 goes down before the rotation; m1 is restarted after it.
		w.restartLocked(m2)
		old := w.unlockKeys[cid]
		w.rotateUnlockKey(cid)
		changed, pub, err := KeepAutolock(t.Context(), m1, fakeDisc{w}, cid)
		if err != nil || changed || !pub {
			t.Fatalf("KeepAutolock after rotation = %v %v %v, want republished", changed, pub, err)
		}
		if w.storedKey.Key != w.unlockKeys[cid] || w.storedKey.Previous != old {
			t.Fatal("the store does not hold the rotated key with the one it replaced")
		}
		if _, pub, err := KeepAutolock(t.Context(), m1, fakeDisc{w}, cid); err != nil || pub {
			t.Fatalf("KeepAutolock with a current store = %v %v, want nothing written", pub, err)
		}
		w.restartLocked(m1)
		for _, m := range []*fakeEngine{m1, m2} {
			if res, err := w.bootAutolock(t.Context(), m, swarm.RoleManager, time.Minute, &log); err != nil || res.Action != ActReconcile || m.state != StateActive {
				t.Fatalf("boot of %s after the rotation: %s %v state %s", m.addr, res.Action, err, m.state)
			}
		}
		noKeyIn(t, "the boot log", log.String())
	})
}

// TestBootLockedWithoutUsableKey: a locked manager whose key the store cannot give (none
// published, a read refused or failing, another swarm's key, a key that does not unlock it)
// waits until --wait with its state untouched, says why, and ends with ErrSwarmLocked; the key
// never shows. A worker never asks for the key.
func TestBootLockedWithoutUsableKey(t *testing.T) {
	tests := []struct {
		name  string
		role  swarm.Role
		setup func(w *world)
		want  string
		tries int // Unlock calls
	}{
		{"none published", swarm.RoleManager, func(w *world) {}, "the token store holds no unlock key", 0},
		{"read refused", swarm.RoleManager, func(w *world) {
			w.unlockKeyErr = fmt.Errorf("ssm: read parameter /swarm-agent/test/unlock-key: %w", discovery.ErrAccessDenied)
		}, "cannot be read from the token store (ssm: read parameter /swarm-agent/test/unlock-key: access denied)", 0},
		{"read failing", swarm.RoleManager, func(w *world) { w.unlockKeyErr = errors.New("ssm: InternalFailure") }, "cannot be read from the token store", 0},
		{"another swarm's key", swarm.RoleManager, func(w *world) {
			w.storedKey = &swarm.UnlockKey{Key: "SWMKEY-1-other", ClusterID: "other"}
		}, "holds the unlock key of swarm other, not of this node's swarm c1", 0},
		{"a stale key", swarm.RoleManager, func(w *world) {
			w.storedKey = &swarm.UnlockKey{Key: "SWMKEY-1-stale", Previous: "SWMKEY-1-staler", ClusterID: "c1"}
		}, "neither the token store's unlock key nor the one before its last rotation unlocks it", 1},
		{"a worker", swarm.RoleWorker, func(w *world) {
			w.storedKey = &swarm.UnlockKey{Key: "SWMKEY-1-live", ClusterID: "c1"}
		}, "boots as a worker", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld()
				e := w.engine("10.0.0.1")
				e.state, e.nodeID, e.swarm, e.mgr, e.lockedWith = StateLocked, "n1", "c1", true, "SWMKEY-1-live"
				w.unlockKeys["c1"] = "SWMKEY-1-live"
				tt.setup(w)
				var log syncBuffer
				_, err := w.bootAutolock(t.Context(), e, tt.role, time.Minute, &log)
				if !errors.Is(err, ErrSwarmLocked) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "docker swarm unlock") {
					t.Fatalf("err = %v, want ErrSwarmLocked saying %q", err, tt.want)
				}
				if e.state != StateLocked || e.leaves != 0 || e.joins != 0 || w.inits != 0 || w.lockTakes != 0 {
					t.Fatalf("state %s leaves=%d joins=%d inits=%d lock takes=%d; want nothing touched", e.state, e.leaves, e.joins, w.inits, w.lockTakes)
				}
				// Each round that has a key tries it (and its previous one): tries per round.
				if (e.unlocks == 0) != (tt.tries == 0) {
					t.Fatalf("%d unlock calls, want them only when a key of this swarm is stored", e.unlocks)
				}
				noKeyIn(t, "the error", err.Error())
				noKeyIn(t, "the boot log", log.String())
			})
		})
	}
}

// TestBootAutolockTurnsItOn: a swarm created without autolock gets it when a manager boots
// with --autolock (reconcile), and its key is published; a store that keeps no unlock key is a
// permanent error, not a retry until --wait.
func TestBootAutolockTurnsItOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		var log syncBuffer
		m := w.engine("10.0.0.1")
		if _, err := w.boot(t.Context(), m, swarm.RoleManager, time.Minute); err != nil {
			t.Fatal(err)
		}
		if w.unlockKeys[m.swarm] != "" || w.storedKey != nil {
			t.Fatal("autolock on without --autolock")
		}
		res, err := w.bootAutolock(t.Context(), m, swarm.RoleManager, time.Minute, &log)
		if err != nil || res.Action != ActReconcile {
			t.Fatalf("boot with --autolock: %s %v", res.Action, err)
		}
		if w.unlockKeys[m.swarm] == "" || w.storedKey == nil || w.storedKey.Key != w.unlockKeys[m.swarm] {
			t.Fatal("autolock not turned on, or its key not published")
		}
		if !strings.Contains(log.String(), "swarm autolock turned on") {
			t.Errorf("boot did not say it turned autolock on:\n%s", log.String())
		}
		noKeyIn(t, "the boot log", log.String())
	})
	t.Run("a store without unlock keys", func(t *testing.T) {
		w := newWorld()
		m := w.engine("10.0.0.1")
		type tokensOnly struct{ discovery.TokenStore }
		d := w.deps()
		d.Engine, d.Autolocker, d.Tokens = m, m, tokensOnly{fakeDisc{w}}
		_, err := Boot(t.Context(), Config{Role: swarm.RoleManager, Cluster: "test", Wait: time.Minute, Autolock: true,
			Identity: swarm.Identity{InstanceID: instanceOf(m.addr), PrivateIP: m.addr}}, d)
		if err == nil || retryable(err) || !strings.Contains(err.Error(), "cannot keep an unlock key") {
			t.Fatalf("err = %v, want a permanent error naming the missing unlock-key store", err)
		}
	})
}
