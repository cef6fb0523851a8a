package discovery

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// EncodeUnlockKey is the value every store keeps for an unlock key: JSON with the key, the
// previous key and the cluster id. An empty key or cluster id is refused.
func EncodeUnlockKey(k swarm.UnlockKey) (string, error) {
	if k.Key == "" || k.ClusterID == "" {
		return "", errors.New("refusing to store an unlock key without its key or cluster id")
	}
	b, err := json.Marshal(k)
	if err != nil {
		return "", fmt.Errorf("encode unlock key: %w", err)
	}
	return string(b), nil
}

// DecodeUnlockKey reads a stored value; a value that is not one (never shown: it may be a
// key) is ErrNoUnlockKey, naming where it was read.
func DecodeUnlockKey(where, v string) (swarm.UnlockKey, error) {
	var k swarm.UnlockKey
	if err := json.Unmarshal([]byte(v), &k); err != nil || k.Key == "" || k.ClusterID == "" {
		return swarm.UnlockKey{}, fmt.Errorf("%s does not hold an unlock key written by swarm-agent (want JSON with \"key\" and \"cluster_id\"): %w", where, ErrNoUnlockKey)
	}
	return k, nil
}
