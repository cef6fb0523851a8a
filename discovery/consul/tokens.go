package consul

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// TokenKey is the KV key of role's join token.
func (p *Provider) TokenKey(r swarm.Role) string {
	return p.cfg.Prefix + "/join-token/" + string(r)
}

// ClusterIDKey is the KV key of the cluster id the published tokens belong to.
func (p *Provider) ClusterIDKey() string { return p.cfg.Prefix + "/cluster-id" }

// PutTokens writes both join tokens and the cluster id in one transaction, so that a reader
// never sees the tokens of one swarm with the id of another.
func (p *Provider) PutTokens(ctx context.Context, clusterID string, t swarm.JoinTokens) error {
	if t.Manager == "" || t.Worker == "" || clusterID == "" {
		return fmt.Errorf("consul: write join tokens under %s/: both tokens and the cluster id are required", p.cfg.Prefix)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	set := func(key, v string) *api.TxnOp {
		return &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: key, Value: []byte(v)}}
	}
	ops := api.TxnOps{
		set(p.TokenKey(swarm.RoleManager), t.Manager),
		set(p.TokenKey(swarm.RoleWorker), t.Worker),
		set(p.ClusterIDKey(), clusterID),
	}
	what := "write join tokens under " + p.cfg.Prefix + "/"
	need := "key write on " + p.cfg.Prefix + "/"
	ok, resp, _, err := p.c.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return p.fail(what, need, err)
	}
	if !ok {
		var msgs []string
		if resp != nil {
			for _, e := range resp.Errors {
				msgs = append(msgs, e.What)
			}
		}
		return p.fail(what, need, fmt.Errorf("transaction rolled back: %s", strings.Join(msgs, "; ")))
	}
	return nil
}

// Token reads role's join token and the cluster id. It returns an error wrapping
// discovery.ErrNoToken when the token is not published yet.
func (p *Provider) Token(ctx context.Context, r swarm.Role) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	token, err := p.get(ctx, p.TokenKey(r))
	if err != nil {
		return "", "", err
	}
	if token == "" {
		return "", "", fmt.Errorf("consul: read key %s: %w", p.TokenKey(r), discovery.ErrNoToken)
	}
	clusterID, err := p.get(ctx, p.ClusterIDKey())
	if err != nil {
		return "", "", err
	}
	return token, clusterID, nil
}

// UnlockKeyKey is the KV key of the swarm's unlock key, under the prefix the managers' policy
// covers and beside no key the workers' policy grants.
func (p *Provider) UnlockKeyKey() string { return p.cfg.Prefix + "/unlock-key" }

var _ discovery.UnlockKeyStore = (*Provider)(nil)

// PutUnlockKey writes the swarm's unlock key.
func (p *Provider) PutUnlockKey(ctx context.Context, k swarm.UnlockKey) error {
	v, err := discovery.EncodeUnlockKey(k)
	if err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	key := p.UnlockKeyKey()
	if _, err := p.c.KV().Put(&api.KVPair{Key: key, Value: []byte(v)}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return p.fail("write key "+key, "key write on "+key, err)
	}
	return nil
}

// UnlockKey reads the swarm's unlock key; discovery.ErrNoUnlockKey (wrapped) when absent.
func (p *Provider) UnlockKey(ctx context.Context) (swarm.UnlockKey, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	key := p.UnlockKeyKey()
	v, err := p.get(ctx, key)
	if err != nil {
		return swarm.UnlockKey{}, err
	}
	if v == "" {
		return swarm.UnlockKey{}, fmt.Errorf("consul: read key %s: %w", key, discovery.ErrNoUnlockKey)
	}
	return discovery.DecodeUnlockKey("consul: key "+key, v)
}

// get reads key; a missing key reads as "".
func (p *Provider) get(ctx context.Context, key string) (string, error) {
	pair, _, err := p.c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", p.fail("read key "+key, "key read on "+key, err)
	}
	if pair == nil {
		return "", nil
	}
	return strings.TrimSpace(string(pair.Value)), nil
}
