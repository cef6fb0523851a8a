package agent

import (
	"context"

	"github.com/swarm-agent/swarm-agent/bootstrap"
)

// keepAutolock is the leader's autolock duty (--autolock): the swarm stays locked and the
// token store holds its live unlock key, republished after `docker swarm unlock-key --rotate`
// with the key it replaced. The key itself is never logged.
func (d *daemon) keepAutolock(ctx context.Context, dw *wiring) {
	_, cid, err := dw.engine.JoinTokens(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("leader: read the cluster id to keep the unlock key published")
		}
		return
	}
	changed, published, err := bootstrap.KeepAutolock(ctx, dw.engine, dw.deps.Tokens, cid)
	switch {
	case err != nil && ctx.Err() == nil:
		d.log.Warn().Err(err).Msg("leader: keep the swarm locked and its unlock key published")
	case err != nil:
	default:
		if changed {
			d.log.Info().Str("cluster_id", cid).Msg("leader: swarm autolock was off: turned on")
		}
		if published {
			d.m.unlockKeyRepublished.Inc()
			d.log.Info().Str("cluster_id", cid).Msg("leader: unlock key changed (rotated, or the store was behind): republished")
		}
	}
}
