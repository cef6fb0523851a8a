// Package smtokens keeps the swarm's join tokens in AWS Secrets Manager: one secret per role
// under a per-cluster name, so that IAM can give workers the worker token only. Each secret's
// value carries its token and the cluster id it belongs to, so a read is one GetSecretValue call.
// Secrets Manager serves GetSecretValue at 10,000 requests/s per account by default (SSM's
// standard throughput is 40/s): the store for clusters where hundreds of nodes boot at once.
package smtokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// API is the part of the Secrets Manager client the store uses; *secretsmanager.Client
// satisfies it.
type API interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error)
	RestoreSecret(ctx context.Context, in *secretsmanager.RestoreSecretInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.RestoreSecretOutput, error)
}

// Store is a discovery.TokenStore in Secrets Manager.
type Store struct {
	api    API
	prefix string
	kmsKey string
}

var (
	_ discovery.TokenStore     = (*Store)(nil)
	_ discovery.UnlockKeyStore = (*Store)(nil)
)

// New returns a store for cluster; kmsKeyID "" uses the account's aws/secretsmanager key. The
// key is chosen when a secret is created; later writes keep the secret's key.
func New(api API, cluster, kmsKeyID string) (*Store, error) {
	if err := discovery.CheckCluster(cluster); err != nil {
		return nil, err
	}
	return &Store{api: api, prefix: "swarm-agent/" + cluster, kmsKey: kmsKeyID}, nil
}

// Name returns the secret name of a role's token: swarm-agent/<cluster>/join-token/<role>.
func (s *Store) Name(r swarm.Role) string { return s.prefix + "/join-token/" + string(r) }

// value is what a secret holds.
type value struct {
	Token     string `json:"token"`
	ClusterID string `json:"cluster_id"`
}

// PutTokens writes both tokens with the cluster id, creating the secrets on first use and
// restoring one that was scheduled for deletion.
func (s *Store) PutTokens(ctx context.Context, clusterID string, t swarm.JoinTokens) error {
	if t.Manager == "" || t.Worker == "" {
		return errors.New("secretsmanager: refusing to store empty join tokens")
	}
	for _, r := range []swarm.Role{swarm.RoleWorker, swarm.RoleManager} {
		b, err := json.Marshal(value{Token: t.For(r), ClusterID: clusterID})
		if err != nil {
			return fmt.Errorf("secretsmanager: encode %s: %w", s.Name(r), err)
		}
		if err := s.put(ctx, s.Name(r), string(b), "Docker Swarm join token, written by swarm-agent"); err != nil {
			return err
		}
	}
	return nil
}

// put writes one secret's value: PutSecretValue, or CreateSecret when it does not exist (and
// PutSecretValue again when another manager created it in between), or RestoreSecret first
// when it is scheduled for deletion.
func (s *Store) put(ctx context.Context, name, val, description string) error {
	for attempt := 0; ; attempt++ {
		_, err := s.api.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(val)})
		var nf *types.ResourceNotFoundException
		var inv *types.InvalidRequestException
		switch {
		case err == nil:
			return nil
		case attempt > 0:
		case errors.As(err, &nf):
			in := &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(val),
				Description: aws.String(description)}
			if s.kmsKey != "" {
				in.KmsKeyId = aws.String(s.kmsKey)
			}
			_, err = s.api.CreateSecret(ctx, in)
			var exists *types.ResourceExistsException
			if err == nil {
				return nil
			}
			if !errors.As(err, &exists) {
				return fmt.Errorf("secretsmanager: create secret %s: %w", name, discovery.MarkDenied(err))
			}
			continue // created by another manager meanwhile: write over it
		case errors.As(err, &inv):
			// Most likely scheduled for deletion; a restore that fails says why.
			if _, rerr := s.api.RestoreSecret(ctx, &secretsmanager.RestoreSecretInput{SecretId: aws.String(name)}); rerr != nil {
				return fmt.Errorf("secretsmanager: put secret value %s: %w (restore: %v)", name, discovery.MarkDenied(err), rerr)
			}
			continue
		}
		return fmt.Errorf("secretsmanager: put secret value %s: %w", name, discovery.MarkDenied(err))
	}
}

// UnlockKeyName is the secret that holds the swarm's unlock key: swarm-agent/<cluster>/unlock-key,
// which the managers' policy covers and the workers' does not.
func (s *Store) UnlockKeyName() string { return s.prefix + "/unlock-key" }

// PutUnlockKey writes the swarm's unlock key, creating the secret on first use.
func (s *Store) PutUnlockKey(ctx context.Context, k swarm.UnlockKey) error {
	v, err := discovery.EncodeUnlockKey(k)
	if err != nil {
		return fmt.Errorf("secretsmanager: %w", err)
	}
	return s.put(ctx, s.UnlockKeyName(), v, "Docker Swarm autolock unlock key, written by swarm-agent")
}

// UnlockKey reads the swarm's unlock key; discovery.ErrNoUnlockKey (wrapped) when absent or
// scheduled for deletion.
func (s *Store) UnlockKey(ctx context.Context) (swarm.UnlockKey, error) {
	name := s.UnlockKeyName()
	out, err := s.api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil {
		var nf *types.ResourceNotFoundException
		var inv *types.InvalidRequestException
		switch {
		case errors.As(err, &nf):
			return swarm.UnlockKey{}, fmt.Errorf("secretsmanager: %s: %w", name, discovery.ErrNoUnlockKey)
		case errors.As(err, &inv):
			return swarm.UnlockKey{}, fmt.Errorf("secretsmanager: %s cannot be read (%s): %w", name, aws.ToString(inv.Message), discovery.ErrNoUnlockKey)
		}
		return swarm.UnlockKey{}, fmt.Errorf("secretsmanager: get secret value %s: %w", name, discovery.MarkDenied(err))
	}
	return discovery.DecodeUnlockKey("secretsmanager: "+name, aws.ToString(out.SecretString))
}

// Token reads the role's token and the cluster id with one GetSecretValue; discovery.ErrNoToken
// (wrapped) when the token is not published.
func (s *Store) Token(ctx context.Context, r swarm.Role) (string, string, error) {
	name := s.Name(r)
	out, err := s.api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil {
		var nf *types.ResourceNotFoundException
		var inv *types.InvalidRequestException
		switch {
		case errors.As(err, &nf):
			return "", "", fmt.Errorf("secretsmanager: %s: %w", name, discovery.ErrNoToken)
		case errors.As(err, &inv):
			// Scheduled for deletion: not published until a manager restores and rewrites it.
			return "", "", fmt.Errorf("secretsmanager: %s cannot be read (%s): %w", name, aws.ToString(inv.Message), discovery.ErrNoToken)
		}
		return "", "", fmt.Errorf("secretsmanager: get secret value %s: %w", name, discovery.MarkDenied(err))
	}
	var v value
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &v); err != nil || v.Token == "" {
		// Never echo the value: it may be a token.
		return "", "", fmt.Errorf("secretsmanager: %s does not hold a token written by swarm-agent (want JSON with \"token\" and \"cluster_id\"): %w", name, discovery.ErrNoToken)
	}
	return v.Token, v.ClusterID, nil
}
