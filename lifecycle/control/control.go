// Package control is the managers' control API: mutual TLS with the swarm's own node
// certificates, through which a node drains, labels and removes itself (and nothing else).
//
// A worker cannot drain or remove itself: those are manager operations. So every manager's
// agent serves this small HTTPS API (Server) in front of its own engine, and a node uses a
// Client, which implements lifecycle.Swarm, to reach it. No new secret is introduced: both
// sides present the certificates the swarm issued them (CN the node id, OU swarm-manager or
// swarm-worker, O the cluster id), verify each other against the swarm's root CA, and the
// client accepts only a swarm-manager of its own cluster. Reads are open to every member of
// the swarm; writes only to the node they name. The Docker API is never exposed.
package control

import (
	"path/filepath"
	"regexp"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// DefaultPort is where managers serve the control API unless configured otherwise (the
// agent's --control-port default). The managers' security group must let the swarm's nodes
// reach it.
const DefaultPort = 2380

// Organizational units of swarm node certificates (their OU, and a DNS SAN).
const (
	OUManager = "swarm-manager"
	OUWorker  = "swarm-worker"
)

// Files in a swarm node's certificate directory, as the engine writes them.
const (
	RootCAFile   = "swarm-root-ca.crt"
	NodeCertFile = "swarm-node.crt"
	NodeKeyFile  = "swarm-node.key"
)

// CertsDir is the certificate directory of the engine whose data root is dataRoot
// (dockerd --data-root, /var/lib/docker by default).
func CertsDir(dataRoot string) string {
	return filepath.Join(dataRoot, "swarm", "certificates")
}

// Identity is who a swarm node certificate says its holder is.
type Identity struct {
	NodeID    string     // the certificate's CN
	Role      swarm.Role // from its OU
	ClusterID string     // its O
}

// idRe is what a node, service or cluster id may look like. Swarm ids are 25 characters of
// base 36; this allows a little more and never a character that needs escaping in a URL.
var idRe = regexp.MustCompile(`^[0-9A-Za-z]{1,64}$`)

// validID reports whether s may be a swarm object id.
func validID(s string) bool { return idRe.MatchString(s) }
