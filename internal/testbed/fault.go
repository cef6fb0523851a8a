package testbed

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// What the fault tests need from the bed: whether an engine runs, which swarm a node's own
// certificate says it belongs to (even while its engine is down), and a port made unreachable
// from outside a node's namespace.

// EngineRunning reports whether n's dockerd, started by this bed, is running.
func (b *Bed) EngineRunning(n *Node) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.engine == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// SwarmCertPath is the node certificate n's engine keeps while it is in a swarm (swarmkit's
// state under the data root; removed when the node leaves).
func (n *Node) SwarmCertPath() string {
	return filepath.Join(n.Dir, "data", "swarm", "certificates", "swarm-node.crt")
}

// SwarmIdentity is what a swarm node certificate says: the swarm's CA issues it with the
// cluster id as Organization, the role as OrganizationalUnit and the node id as CommonName.
type SwarmIdentity struct {
	ClusterID string
	NodeID    string
	Role      string // swarm-manager or swarm-worker
}

// SwarmIdentity reads n's node certificate from disk, which works whether or not its engine
// runs. The error wraps os.ErrNotExist when the node holds no swarm state.
func (n *Node) SwarmIdentity() (SwarmIdentity, error) {
	data, err := os.ReadFile(n.SwarmCertPath())
	if err != nil {
		return SwarmIdentity{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return SwarmIdentity{}, fmt.Errorf("%s: no PEM block", n.SwarmCertPath())
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return SwarmIdentity{}, fmt.Errorf("%s: %w", n.SwarmCertPath(), err)
	}
	id := SwarmIdentity{NodeID: cert.Subject.CommonName}
	if len(cert.Subject.Organization) > 0 {
		id.ClusterID = cert.Subject.Organization[0]
	}
	if len(cert.Subject.OrganizationalUnit) > 0 {
		id.Role = cert.Subject.OrganizationalUnit[0]
	}
	if id.ClusterID == "" {
		return SwarmIdentity{}, fmt.Errorf("%s: certificate names no cluster (organization)", n.SwarmCertPath())
	}
	return id, nil
}

// BlockInbound drops TCP packets for port that reach n from outside its namespace (other
// nodes, the host, Consul's checks), as a security group or a partition would; n still reaches
// itself over lo. UnblockInbound undoes it; the rule goes with the namespace at Close.
func (b *Bed) BlockInbound(ctx context.Context, n *Node, port int) error {
	return run(ctx, inboundRule(n, "-I", port)...)
}

// UnblockInbound removes the rule BlockInbound added.
func (b *Bed) UnblockInbound(ctx context.Context, n *Node, port int) error {
	return run(ctx, inboundRule(n, "-D", port)...)
}

func inboundRule(n *Node, op string, port int) []string {
	return []string{"nsenter", "--net=" + n.NetnsPath(), "--", "iptables", "-w", op, "INPUT",
		"-i", "eth0", "-p", "tcp", "--dport", strconv.Itoa(port), "-j", "DROP"}
}
