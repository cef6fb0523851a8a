package control

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Certs is a swarm node's certificate directory (CertsDir): the swarm's root CA and the
// node's key pair. It re-reads the files whenever they change, so that the swarm's
// certificate rotation keeps working without a restart: every TLS handshake looks at the
// files' size, modification time and inode and parses them again only when one changed.
//
// When the files change into something unusable (the engine is halfway through writing a
// new pair, or the node left the swarm and the engine deleted them), Certs keeps using the
// last pair it read successfully: a node that has left still holds a certificate that is
// valid until the managers remove its node, which is what it needs to ask for that removal.
//
// The zero value with Dir set is ready to use; a Certs must not be copied after first use.
type Certs struct {
	Dir string

	mu     sync.Mutex
	good   *material // last successfully read; nil before the first
	stamps stamps    // of the files when good was read
	failed stamps    // of the files when reading them last failed (not read again until they change)
	err    error     // that failure
}

// material is what one read of the directory gives.
type material struct {
	roots *x509.CertPool
	pair  tls.Certificate // Leaf set
	id    Identity
}

// stamps identify a version of the three files without reading them.
type stamps [3]os.FileInfo

// equal reports whether a and b are the same versions: same inode (the engine writes a new
// file and renames it over the old one), size and modification time.
func (a stamps) equal(b stamps) bool {
	for i := range a {
		x, y := a[i], b[i]
		if x == nil || y == nil {
			return false
		}
		if !os.SameFile(x, y) || x.Size() != y.Size() || !x.ModTime().Equal(y.ModTime()) {
			return false
		}
	}
	return true
}

func (c *Certs) paths() [3]string {
	return [3]string{filepath.Join(c.Dir, RootCAFile), filepath.Join(c.Dir, NodeCertFile), filepath.Join(c.Dir, NodeKeyFile)}
}

// Identity is who this node's certificate says it is.
func (c *Certs) Identity() (Identity, error) {
	m, err := c.load()
	if err != nil {
		return Identity{}, err
	}
	return m.id, nil
}

// load returns the current material: the cached one while the files are unchanged, else
// what they hold now, else (unreadable) the last good one, else an error.
func (c *Certs) load() (*material, error) {
	if c == nil || c.Dir == "" {
		return nil, errors.New("swarm certificates: no directory configured")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var now stamps
	var statErr error
	for i, p := range c.paths() {
		fi, err := os.Stat(p)
		if err != nil {
			statErr = fmt.Errorf("swarm certificates: %w", err)
			break
		}
		now[i] = fi
	}
	switch {
	case statErr != nil:
		// Files gone (the node left the swarm) or unreadable: keep what we had.
		if c.good != nil {
			return c.good, nil
		}
		return nil, statErr
	case c.good != nil && now.equal(c.stamps):
		return c.good, nil
	case c.failed.equal(now):
		if c.good != nil {
			return c.good, nil
		}
		return nil, c.err
	}
	m, err := c.read()
	if err != nil {
		c.failed, c.err = now, err
		if c.good != nil {
			return c.good, nil
		}
		return nil, err
	}
	c.good, c.stamps, c.failed, c.err = m, now, stamps{}, nil
	return m, nil
}

// read parses the directory's three files.
func (c *Certs) read() (*material, error) {
	p := c.paths()
	caPEM, err := os.ReadFile(p[0])
	if err != nil {
		return nil, fmt.Errorf("swarm certificates: %w", err)
	}
	roots, err := parseRoots(caPEM)
	if err != nil {
		return nil, fmt.Errorf("swarm root CA %s: %w", p[0], err)
	}
	certPEM, err := os.ReadFile(p[1])
	if err != nil {
		return nil, fmt.Errorf("swarm certificates: %w", err)
	}
	keyPEM, err := os.ReadFile(p[2])
	if err != nil {
		return nil, fmt.Errorf("swarm certificates: %w", err)
	}
	pair, id, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("swarm node certificate %s and key %s: %w", p[1], p[2], err)
	}
	return &material{roots: roots, pair: pair, id: id}, nil
}

// parseRoots reads a PEM bundle of CA certificates (during a root rotation the swarm's
// bundle may hold more than one).
func parseRoots(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		if !cert.IsCA {
			return nil, fmt.Errorf("certificate %q is no CA", cert.Subject)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

// parsePair reads the node's certificate chain and key and the identity the certificate
// gives.
func parsePair(certPEM, keyPEM []byte) (tls.Certificate, Identity, error) {
	if b, _ := pem.Decode(keyPEM); b != nil && (b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "") {
		return tls.Certificate{}, Identity{}, errors.New("the key is encrypted (swarm autolock): the control API cannot use it")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, Identity{}, err
	}
	id, err := identityOf(pair.Leaf)
	if err != nil {
		return tls.Certificate{}, Identity{}, err
	}
	return pair, id, nil
}

// identityOf reads a swarm node certificate's subject: CN the node id, OU the role, O the
// cluster id, each exactly once.
func identityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, errors.New("no certificate")
	}
	s := cert.Subject
	if !validID(s.CommonName) {
		return Identity{}, fmt.Errorf("certificate CN %q: not a swarm node id", s.CommonName)
	}
	if len(s.Organization) != 1 || !validID(s.Organization[0]) {
		return Identity{}, fmt.Errorf("certificate of %s: O %q: want one swarm cluster id", s.CommonName, s.Organization)
	}
	id := Identity{NodeID: s.CommonName, ClusterID: s.Organization[0]}
	switch {
	case slices.Equal(s.OrganizationalUnit, []string{OUManager}):
		id.Role = swarm.RoleManager
	case slices.Equal(s.OrganizationalUnit, []string{OUWorker}):
		id.Role = swarm.RoleWorker
	default:
		return Identity{}, fmt.Errorf("certificate of %s: OU %q: want %s or %s", s.CommonName, s.OrganizationalUnit, OUManager, OUWorker)
	}
	return id, nil
}

// peerIdentity is the identity of the verified peer of a TLS connection.
func peerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, errors.New("no verified peer certificate")
	}
	return identityOf(cs.VerifiedChains[0][0])
}

// serverConfig is the server's TLS configuration: every handshake takes the current files,
// requires a client certificate that chains to the swarm's root CA and belongs to this
// node's cluster.
func (c *Certs) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m, err := c.load()
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{m.pair},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    m.roots,
				// Resumed sessions would skip the check against the current root CA.
				SessionTicketsDisabled: true,
				VerifyConnection: func(cs tls.ConnectionState) error {
					id, err := peerIdentity(cs)
					if err != nil {
						return err
					}
					if id.ClusterID != m.id.ClusterID {
						return fmt.Errorf("client %s belongs to cluster %s, not %s", id.NodeID, id.ClusterID, m.id.ClusterID)
					}
					return nil
				},
			}, nil
		},
	}
}

// clientConfig is the client's TLS configuration for one connection: it presents the node's
// certificate and accepts only a swarm-manager of its own cluster under the swarm's root CA.
func clientConfig(m *material) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    m.roots,
		// Every manager certificate carries the DNS SAN swarm-manager (a worker's carries
		// swarm-worker), whatever address the manager was reached at.
		ServerName: OUManager,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &m.pair, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := peerIdentity(cs)
			if err != nil {
				return err
			}
			if id.Role != swarm.RoleManager {
				return fmt.Errorf("server %s is a %s, not a %s", id.NodeID, OUWorker, OUManager)
			}
			if id.ClusterID != m.id.ClusterID {
				return fmt.Errorf("server %s belongs to cluster %s, not %s", id.NodeID, id.ClusterID, m.id.ClusterID)
			}
			return nil
		},
	}
}
