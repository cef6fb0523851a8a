package bootstrap

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// Probe is what a manager's swarm port says about it.
type Probe struct {
	// Answers: the port accepted a connection.
	Answers bool
	// ClusterID is the swarm the manager belongs to, read from the TLS certificate it presents
	// (swarmkit issues node certificates with Subject O = cluster id, OU = swarm-manager, CN =
	// node id); "" when the handshake did not show one.
	ClusterID string
	// Manager: the certificate's OU says swarm-manager.
	Manager bool
}

// ProbeFunc asks a manager address (host:port) who it is.
type ProbeFunc func(ctx context.Context, addr string) Probe

// TLSProbe is the production ProbeFunc: a TLS handshake with the swarm port (no client
// certificate, nothing verified: it only reads the identity the manager presents; swarmkit
// accepts handshakes without client certificates because joining nodes have none).
func TLSProbe(ctx context.Context, addr string) Probe {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Probe{}
	}
	defer raw.Close()
	p := Probe{Answers: true}
	c := tls.Client(raw, &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // identity read only, never trusted for data
		NextProtos:         []string{"h2"},
		MinVersion:         tls.VersionTLS12,
	})
	if err := c.HandshakeContext(ctx); err != nil {
		return p
	}
	certs := c.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return p
	}
	subj := certs[0].Subject
	if len(subj.Organization) == 1 {
		p.ClusterID = subj.Organization[0]
	}
	for _, ou := range subj.OrganizationalUnit {
		if ou == "swarm-manager" {
			p.Manager = true
		}
	}
	_ = c.Close()
	return p
}
