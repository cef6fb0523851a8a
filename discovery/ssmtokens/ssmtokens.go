// Package ssmtokens keeps the swarm's join tokens in SSM Parameter Store as SecureString
// parameters under a per-cluster path, so that IAM can give workers the worker token only.
//
// The cluster id and the two tokens are three parameters written one after the other (SSM has
// no multi-parameter write), so two publishers of different swarms racing could leave one's
// token beside the other's id: the only store of the three without that guarantee
// (tokenstoretest's Atomic). Publishers of one swarm write the same id, and two swarms are
// what the bootstrap lock prevents; Secrets Manager keeps token and id in one secret.
package ssmtokens

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// API is the part of the SSM client the store uses; *ssm.Client satisfies it.
type API interface {
	PutParameter(ctx context.Context, in *ssm.PutParameterInput, optFns ...func(*ssm.Options)) (*ssm.PutParameterOutput, error)
	GetParameters(ctx context.Context, in *ssm.GetParametersInput, optFns ...func(*ssm.Options)) (*ssm.GetParametersOutput, error)
}

// Store is a discovery.TokenStore in SSM Parameter Store.
type Store struct {
	api    API
	prefix string
	kmsKey string
}

var (
	_ discovery.TokenStore     = (*Store)(nil)
	_ discovery.UnlockKeyStore = (*Store)(nil)
)

// New returns a store for cluster; kmsKeyID "" uses the account's aws/ssm key.
func New(api API, cluster, kmsKeyID string) (*Store, error) {
	if err := discovery.CheckCluster(cluster); err != nil {
		return nil, err
	}
	return &Store{api: api, prefix: "/swarm-agent/" + cluster, kmsKey: kmsKeyID}, nil
}

// Path returns the parameter name of one of "join-token/manager", "join-token/worker",
// "cluster-id".
func (s *Store) Path(leaf string) string { return s.prefix + "/" + leaf }

func (s *Store) tokenPath(r swarm.Role) string { return s.Path("join-token/" + string(r)) }

// PutTokens writes the cluster id and both tokens, replacing what was there.
func (s *Store) PutTokens(ctx context.Context, clusterID string, t swarm.JoinTokens) error {
	if t.Manager == "" || t.Worker == "" {
		return fmt.Errorf("ssm: refusing to store empty join tokens")
	}
	if err := s.put(ctx, s.Path("cluster-id"), clusterID, false); err != nil {
		return err
	}
	if err := s.put(ctx, s.tokenPath(swarm.RoleWorker), t.Worker, true); err != nil {
		return err
	}
	return s.put(ctx, s.tokenPath(swarm.RoleManager), t.Manager, true)
}

// put writes one parameter, a SecureString when secure.
func (s *Store) put(ctx context.Context, name, val string, secure bool) error {
	in := &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(val), Overwrite: aws.Bool(true),
		Type: types.ParameterTypeString}
	if secure {
		in.Type = types.ParameterTypeSecureString
		if s.kmsKey != "" {
			in.KeyId = aws.String(s.kmsKey)
		}
	}
	if _, err := s.api.PutParameter(ctx, in); err != nil {
		return fmt.Errorf("ssm: put parameter %s: %w", name, discovery.MarkDenied(err))
	}
	return nil
}

// PutUnlockKey writes the swarm's unlock key as one SecureString parameter, <prefix>/unlock-key,
// which the managers' policy covers and the workers' does not.
func (s *Store) PutUnlockKey(ctx context.Context, k swarm.UnlockKey) error {
	v, err := discovery.EncodeUnlockKey(k)
	if err != nil {
		return fmt.Errorf("ssm: %w", err)
	}
	return s.put(ctx, s.Path("unlock-key"), v, true)
}

// UnlockKey reads the swarm's unlock key; discovery.ErrNoUnlockKey (wrapped) when absent.
func (s *Store) UnlockKey(ctx context.Context) (swarm.UnlockKey, error) {
	name := s.Path("unlock-key")
	out, err := s.api.GetParameters(ctx, &ssm.GetParametersInput{Names: []string{name}, WithDecryption: aws.Bool(true)})
	if err != nil {
		return swarm.UnlockKey{}, fmt.Errorf("ssm: read parameter %s: %w", name, discovery.MarkDenied(err))
	}
	if len(out.Parameters) == 0 {
		return swarm.UnlockKey{}, fmt.Errorf("ssm: %s: %w", name, discovery.ErrNoUnlockKey)
	}
	return discovery.DecodeUnlockKey("ssm: "+name, aws.ToString(out.Parameters[0].Value))
}

// Token reads the role's token and the cluster id in one call; discovery.ErrNoToken (wrapped)
// when the token is not published.
func (s *Store) Token(ctx context.Context, r swarm.Role) (string, string, error) {
	name := s.tokenPath(r)
	out, err := s.api.GetParameters(ctx, &ssm.GetParametersInput{
		Names: []string{name, s.Path("cluster-id")}, WithDecryption: aws.Bool(true)})
	if err != nil {
		var pnf *types.ParameterNotFound
		if errors.As(err, &pnf) {
			return "", "", fmt.Errorf("ssm: %s: %w", name, discovery.ErrNoToken)
		}
		return "", "", fmt.Errorf("ssm: read parameter %s: %w", name, discovery.MarkDenied(err))
	}
	var token, cid string
	for _, p := range out.Parameters {
		switch aws.ToString(p.Name) {
		case name:
			token = aws.ToString(p.Value)
		case s.Path("cluster-id"):
			cid = aws.ToString(p.Value)
		}
	}
	if token == "" {
		return "", "", fmt.Errorf("ssm: %s: %w", name, discovery.ErrNoToken)
	}
	return token, cid, nil
}
