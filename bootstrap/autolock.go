package bootstrap

import (
	"context"
	"errors"
	"fmt"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// unlockKey reads the unlock key of a locked node's swarm from the token store. why is "" when
// the key may unlock the node, else what stops it (never the key itself).
func (b *booter) unlockKey(ctx context.Context, local LocalNode) (k swarm.UnlockKey, why string) {
	canUnlock := b.d.Autolocker != nil
	store, keeps := b.d.Tokens.(discovery.UnlockKeyStore)
	switch {
	case b.cfg.Role != swarm.RoleManager:
		return k, "this node boots as a worker, which may not read the unlock key"
	case !canUnlock || !keeps:
		return k, "this engine or token store cannot unlock it"
	}
	k, err := store.UnlockKey(ctx)
	switch {
	case errors.Is(err, discovery.ErrNoUnlockKey):
		return k, fmt.Sprintf("the token store holds no unlock key (%v; the managers' --autolock publishes it)", err)
	case err != nil:
		return k, fmt.Sprintf("the unlock key cannot be read from the token store (%v)", err)
	case local.CertClusterID != "" && k.ClusterID != local.CertClusterID:
		return k, fmt.Sprintf("the token store holds the unlock key of swarm %s, not of this node's swarm %s", k.ClusterID, local.CertClusterID)
	}
	return k, ""
}

// unlock unlocks this node with the store's key, then with the key it replaced (a manager that
// was down when the key was rotated still has its state encrypted with the old one).
func (b *booter) unlock(ctx context.Context, k swarm.UnlockKey) error {
	eng := b.d.Autolocker // unlockKey checked it
	err := eng.Unlock(ctx, k.Key)
	if err == nil || k.Previous == "" {
		if err != nil {
			return fmt.Errorf("the token store's unlock key does not unlock it: %w", err)
		}
		return nil
	}
	if perr := eng.Unlock(ctx, k.Previous); perr != nil {
		return fmt.Errorf("neither the token store's unlock key nor the one before its last rotation unlocks it: %w", errors.Join(err, perr))
	}
	b.log.Info().Msg("unlocked with the key before the last rotation: this manager was down when the key was rotated")
	return nil
}

// KeepAutolock turns the swarm's autolock on when it is off and makes the token store hold its
// live unlock key, keeping the key it replaces as the previous one (after `docker swarm
// unlock-key --rotate`). It is the one rule boot (managers with --autolock) and the leader's
// pass share. It writes only when the store is behind.
// al nil means the engine has no autolock side.
func KeepAutolock(ctx context.Context, al Autolocker, tokens discovery.TokenStore, clusterID string) (changed, published bool, err error) {
	store, keeps := tokens.(discovery.UnlockKeyStore)
	if al == nil || !keeps {
		return false, false, permanent{errors.New("autolock: this engine or token store cannot keep an unlock key")}
	}
	if changed, err = al.EnsureAutolock(ctx); err != nil {
		return false, false, fmt.Errorf("turn swarm autolock on: %w", err)
	}
	key, err := al.UnlockKey(ctx)
	if err != nil {
		return changed, false, fmt.Errorf("read the swarm's unlock key: %w", err)
	}
	if key == "" {
		return changed, false, errors.New("the swarm has autolock on but its engine gives no unlock key")
	}
	cur, err := store.UnlockKey(ctx)
	switch {
	case err == nil && cur.Key == key && cur.ClusterID == clusterID:
		return changed, false, nil
	case err != nil && !errors.Is(err, discovery.ErrNoUnlockKey):
		return changed, false, fmt.Errorf("read the published unlock key: %w", err)
	}
	next := swarm.UnlockKey{Key: key, ClusterID: clusterID}
	if err == nil && cur.ClusterID == clusterID {
		next.Previous = cur.Key
	}
	if err := store.PutUnlockKey(ctx, next); err != nil {
		return changed, false, fmt.Errorf("publish the unlock key: %w", err)
	}
	return changed, true, nil
}
