package engine

// The engine's autolock side (bootstrap.Autolocker): the unlock key, unlocking, turning
// autolock on, and keeping the key out of errors.

import (
	"context"
	"strings"

	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/bootstrap"
)

var _ bootstrap.Autolocker = (*Engine)(nil)

// UnlockKey reads the swarm's unlock key (managers only); "" when autolock is off.
func (e *Engine) UnlockKey(ctx context.Context) (string, error) {
	res, err := e.c.SwarmGetUnlockKey(ctx)
	if err != nil {
		return "", e.wrap("read unlock key", err)
	}
	return res.Key, nil
}

// Unlock unlocks this autolocked manager with key, through the API (never a process argument).
func (e *Engine) Unlock(ctx context.Context, key string) error {
	if _, err := e.c.SwarmUnlock(ctx, client.SwarmUnlockOptions{Key: key}); err != nil {
		return e.wrap("unlock swarm", redact(err, key))
	}
	return nil
}

// EnsureAutolock turns the swarm's autolock on when it is off (managers only) and says
// whether it changed anything.
func (e *Engine) EnsureAutolock(ctx context.Context) (bool, error) {
	res, err := e.c.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return false, e.wrap("read swarm spec", err)
	}
	if res.Swarm.Spec.EncryptionConfig.AutoLockManagers {
		return false, nil
	}
	spec := res.Swarm.Spec
	spec.EncryptionConfig.AutoLockManagers = true
	if _, err := e.c.SwarmUpdate(ctx, client.SwarmUpdateOptions{Version: res.Swarm.Version, Spec: spec}); err != nil {
		return false, e.wrap("turn swarm autolock on", err)
	}
	return true, nil
}

// redactedError hides a secret in an error's text and still unwraps to it.
type redactedError struct {
	msg string
	err error
}

func (r *redactedError) Error() string { return r.msg }

func (r *redactedError) Unwrap() error { return r.err }

// redact replaces secret in err's message.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), secret, "<redacted>"), err: err}
}
