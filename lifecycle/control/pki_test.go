package control

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a swarm root CA made in the test, shaped like swarmkit's: an ECDSA P-256 root
// with CN swarm-ca, issuing node certificates with CN the node id, OU the role, O the
// cluster id and DNS SANs role and node id (and swarm-ca for managers), usable for server
// and client authentication, written with the root appended to the chain.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "swarm-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue makes a node certificate chain (leaf then root) and its key in PEM, the key with a
// header as swarmkit's key writer adds.
func (ca *testCA) issue(t testing.TB, nodeID, ou, cluster string) (certPEM, keyPEM []byte) {
	t.Helper()
	hosts := []string{ou, nodeID}
	if ou == OUManager {
		hosts = append(hosts, "swarm-ca")
	}
	return ca.issueHosts(t, nodeID, ou, cluster, hosts)
}

// issueHosts is issue with the DNS SANs given.
func (ca *testCA) issueHosts(t testing.TB, nodeID, ou, cluster string, hosts []string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: nodeID, OrganizationalUnit: []string{ou}, Organization: []string{cluster}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     hosts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.pem...)
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"kek-version": "0"}, Bytes: kder})
	return certPEM, keyPEM
}

// writeNode writes a node's certificate directory under a new temporary directory and
// returns it.
func (ca *testCA) writeNode(t testing.TB, nodeID, ou, cluster string) string {
	t.Helper()
	dir := t.TempDir()
	ca.rewrite(t, dir, nodeID, ou, cluster)
	return dir
}

// rewrite gives the node in dir a new key pair, written the way the engine does: each file
// to a temporary name, then renamed over the old one.
func (ca *testCA) rewrite(t testing.TB, dir, nodeID, ou, cluster string) {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, nodeID, ou, cluster)
	writeAtomic(t, filepath.Join(dir, RootCAFile), ca.pem)
	writeAtomic(t, filepath.Join(dir, NodeKeyFile), keyPEM)
	writeAtomic(t, filepath.Join(dir, NodeCertFile), certPEM)
}

func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Node and cluster ids of the tests, shaped like swarm's (25 characters of base 36).
const (
	clusterA = "k3p9x2m7q1w8e5r4t6y0u3i2o"
	clusterB = "z9y8x7w6v5u4t3s2r1q0p9o8n"
	manager1 = "m1aaaaaaaaaaaaaaaaaaaaaaa"
	manager2 = "m2aaaaaaaaaaaaaaaaaaaaaaa"
	worker1  = "w1aaaaaaaaaaaaaaaaaaaaaaa"
	worker2  = "w2aaaaaaaaaaaaaaaaaaaaaaa"
)
