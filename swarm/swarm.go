// Package swarm holds the value types the agent's packages share: roles, the node's identity,
// manager members, join tokens, nodes, tasks and the label keys the agent owns. It imports
// nothing but the standard library, so every other package may import it.
package swarm

import "fmt"

// Role is a swarm node's role: the role a node boots into, the role a manager sees on a node
// and the role a node certificate names.
type Role string

// The two roles.
const (
	RoleManager Role = "manager"
	RoleWorker  Role = "worker"
)

// ParseRole validates a role given by an operator.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RoleManager, RoleWorker:
		return Role(s), nil
	}
	return "", fmt.Errorf("role %q: must be manager or worker", s)
}

// Identity is who this node is, as instance metadata (or the operator, for a static identity)
// tells.
type Identity struct {
	InstanceID   string
	PrivateIP    string
	AZ           string
	Region       string
	InstanceType string
	// Tags are the instance's tags when instance metadata tags are enabled, else nil.
	Tags map[string]string
}

// Member is a manager as discovery registers it.
type Member struct {
	InstanceID string
	Addr       string // private IPv4, no port
	Port       int    // swarm port, 2377
}

// JoinTokens are the swarm's join secrets. String never shows them.
type JoinTokens struct {
	Worker  string
	Manager string
}

// String redacts the tokens so that a stray %v cannot leak them.
func (JoinTokens) String() string { return "JoinTokens{<redacted>}" }

// UnlockKey is an autolocked swarm's unlock key as the token store keeps it: the current key,
// the key it replaced at the last rotation (a manager that was down during the rotation still
// has its state encrypted with that one) and the swarm both belong to. String never shows the
// keys.
type UnlockKey struct {
	Key       string `json:"key"`
	Previous  string `json:"previous,omitempty"`
	ClusterID string `json:"cluster_id"`
}

// String redacts the keys so that a stray %v cannot leak them.
func (k UnlockKey) String() string { return "UnlockKey{cluster " + k.ClusterID + ", <redacted>}" }

// GoString redacts the keys from %#v too.
func (k UnlockKey) GoString() string { return k.String() }

// For returns the token for role.
func (t JoinTokens) For(r Role) string {
	if r == RoleManager {
		return t.Manager
	}
	return t.Worker
}
