package bootstrap

// The join and what follows it on a manager: the join token read alongside the probes,
// registration, token publishing and labels.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// tokenRead is a join token read running alongside the managers' probes.
type tokenRead struct {
	cancel         context.CancelFunc
	done           chan struct{}
	token, cluster string
	err            error
}

// readToken starts reading this role's join token in the background.
func (b *booter) readToken(ctx context.Context) *tokenRead {
	ctx, cancel := context.WithCancel(ctx)
	t := &tokenRead{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.token, t.cluster, t.err = b.d.Tokens.Token(ctx, b.cfg.Role)
	}()
	return t
}

// result waits for the read and returns what it got.
func (t *tokenRead) result() (string, string, error) {
	<-t.done
	t.cancel()
	return t.token, t.cluster, t.err
}

// drop cancels the read, if any, and waits for it to end.
func (t *tokenRead) drop() {
	if t != nil {
		t.cancel()
		<-t.done
	}
}

// join tries the managers in random order with the token read in this round (one token
// read per round: 1000 workers booting at once share SSM's request rate).
func (b *booter) join(ctx context.Context, res *Result, managers []string, token string) (bool, error) {
	order := slices.Clone(managers)
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var errs []error
	for _, m := range order {
		b.d.Stage("joining swarm via " + m)
		b.log.Info().Str("manager_addr", m).Str("role", string(b.cfg.Role)).Msg("joining swarm")
		err := b.d.Engine.Join(ctx, JoinRequest{
			RemoteAddrs:   []string{m},
			Token:         token,
			AdvertiseAddr: b.cfg.Identity.PrivateIP,
			ListenAddr:    "0.0.0.0:" + strconv.Itoa(b.cfg.SwarmPort),
		})
		if err != nil {
			b.log.Warn().Err(err).Str("manager_addr", m).Msg("join failed")
			errs = append(errs, fmt.Errorf("join swarm via %s: %w", m, err))
			continue
		}
		local, err := b.d.Engine.Local(ctx)
		if err != nil {
			return false, fmt.Errorf("read local swarm state after join: %w", err)
		}
		if err := b.afterJoin(ctx, local); err != nil {
			return false, err
		}
		res.Action, res.NodeID = ActJoin, local.NodeID
		b.log.Info().Str("node_id", local.NodeID).Str("manager_addr", m).Msg("joined swarm")
		return true, nil
	}
	b.waiting = "a manager that accepts the join"
	return false, errors.Join(errs...)
}

// afterJoin registers the manager, publishes the tokens and labels the node. It is
// idempotent: reconcile runs it on every boot. Registration comes first: it is what makes a
// new swarm findable, and findable is what stops another manager from creating one.
func (b *booter) afterJoin(ctx context.Context, local LocalNode) error {
	if !local.IsManager {
		return nil
	}
	if err := b.register(ctx); err != nil {
		return err
	}
	return b.publishAndLabel(ctx, local)
}

// register publishes this manager in discovery (nothing without a Registrar).
func (b *booter) register(ctx context.Context) error {
	if b.d.Registrar == nil {
		return nil
	}
	b.d.Stage("registering in discovery")
	if err := b.d.Registrar.Register(ctx, b.member()); err != nil {
		return fmt.Errorf("register manager: %w", err)
	}
	return nil
}

func (b *booter) member() swarm.Member {
	return swarm.Member{InstanceID: b.cfg.Identity.InstanceID, Addr: b.cfg.Identity.PrivateIP, Port: b.cfg.SwarmPort}
}

// publishAndLabel writes the join tokens when the store is behind and labels the node.
func (b *booter) publishAndLabel(ctx context.Context, local LocalNode) error {
	b.d.Stage("publishing join tokens")
	published, clusterID, err := PublishTokens(ctx, b.d.Engine, b.d.Tokens)
	if err != nil {
		return err
	}
	if published {
		b.log.Info().Str("cluster_id", clusterID).Msg("join tokens published")
	}
	if b.cfg.Autolock {
		b.d.Stage("keeping the swarm locked and its unlock key published")
		changed, published, err := KeepAutolock(ctx, b.d.Autolocker, b.d.Tokens, clusterID)
		if err != nil {
			return err
		}
		if changed {
			b.log.Info().Str("cluster_id", clusterID).Msg("swarm autolock turned on")
		}
		if published {
			b.log.Info().Str("cluster_id", clusterID).Msg("unlock key published")
		}
	}
	if len(b.cfg.Labels) > 0 && local.NodeID != "" {
		b.d.Stage("labelling node")
		if err := b.d.Engine.SetNodeLabels(ctx, local.NodeID, b.cfg.Labels); err != nil {
			return fmt.Errorf("label node %s: %w", local.NodeID, err)
		}
	}
	return nil
}

// PublishTokens makes the token store hold the swarm's live join tokens and cluster id,
// writing only when they differ (after `docker swarm join-token --rotate`, a CA rotation, or a
// new swarm). It is the one rule boot and the leader's pass share; managers only.
func PublishTokens(ctx context.Context, eng Engine, store discovery.TokenStore) (published bool, clusterID string, err error) {
	tokens, clusterID, err := eng.JoinTokens(ctx)
	if err != nil {
		return false, "", fmt.Errorf("read join tokens: %w", err)
	}
	if got, cid, err := store.Token(ctx, swarm.RoleManager); err == nil && got == tokens.Manager && cid == clusterID {
		if wt, wcid, err := store.Token(ctx, swarm.RoleWorker); err == nil && wt == tokens.Worker && wcid == clusterID {
			return false, clusterID, nil
		}
	}
	if err := store.PutTokens(ctx, clusterID, tokens); err != nil {
		return false, clusterID, fmt.Errorf("publish join tokens: %w", err)
	}
	return true, clusterID, nil
}
