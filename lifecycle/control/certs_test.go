package control

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestCertsIdentity(t *testing.T) {
	ca := newTestCA(t)
	for _, tt := range []struct {
		ou   string
		want Identity
	}{
		{OUManager, Identity{NodeID: manager1, Role: swarm.RoleManager, ClusterID: clusterA}},
		{OUWorker, Identity{NodeID: manager1, Role: swarm.RoleWorker, ClusterID: clusterA}},
	} {
		c := &Certs{Dir: ca.writeNode(t, manager1, tt.ou, clusterA)}
		got, err := c.Identity()
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("Identity() = %+v, want %+v", got, tt.want)
		}
	}
}

func TestCertsErrors(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{name: "no directory", setup: func(t *testing.T, dir string) { os.RemoveAll(dir) }, want: "no such file"},
		{name: "no key", setup: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, NodeKeyFile)) }, want: NodeKeyFile},
		{name: "root CA not PEM", setup: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, RootCAFile), []byte("junk"))
		}, want: "no PEM certificate"},
		{name: "root CA is a node certificate", setup: func(t *testing.T, dir string) {
			c, _ := ca.issue(t, worker1, OUWorker, clusterA)
			mustWrite(t, filepath.Join(dir, RootCAFile), c)
		}, want: "is no CA"},
		{name: "key of another pair", setup: func(t *testing.T, dir string) {
			_, k := ca.issue(t, worker1, OUWorker, clusterA)
			mustWrite(t, filepath.Join(dir, NodeKeyFile), k)
		}, want: "private key does not match"},
		{name: "encrypted key (autolock)", setup: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, NodeKeyFile), pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))
		}, want: "autolock"},
		{name: "not a swarm role", setup: func(t *testing.T, dir string) {
			c, k := ca.issue(t, worker1, "swarm-admin", clusterA)
			mustWrite(t, filepath.Join(dir, NodeCertFile), c)
			mustWrite(t, filepath.Join(dir, NodeKeyFile), k)
		}, want: `OU ["swarm-admin"]`},
		{name: "no cluster", setup: func(t *testing.T, dir string) {
			c, k := ca.issue(t, worker1, OUWorker, "")
			mustWrite(t, filepath.Join(dir, NodeCertFile), c)
			mustWrite(t, filepath.Join(dir, NodeKeyFile), k)
		}, want: "want one swarm cluster id"},
		{name: "CN not a node id", setup: func(t *testing.T, dir string) {
			c, k := ca.issue(t, "node/1", OUWorker, clusterA)
			mustWrite(t, filepath.Join(dir, NodeCertFile), c)
			mustWrite(t, filepath.Join(dir, NodeKeyFile), k)
		}, want: "not a swarm node id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := ca.writeNode(t, worker1, OUWorker, clusterA)
			tt.setup(t, dir)
			_, err := (&Certs{Dir: dir}).Identity()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Identity() error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := (&Certs{}).Identity(); err == nil {
		t.Error("Certs without a directory loaded")
	}
}

// TestCertsReload checks that Certs reads rotated files, keeps the last good pair while the
// files are unusable or gone, and does not read unchanged files again.
func TestCertsReload(t *testing.T) {
	ca := newTestCA(t)
	dir := ca.writeNode(t, worker1, OUWorker, clusterA)
	c := &Certs{Dir: dir}
	m1, err := c.load()
	if err != nil {
		t.Fatal(err)
	}
	if m2, _ := c.load(); m2 != m1 {
		t.Error("unchanged files were read again")
	}

	ca.rewrite(t, dir, worker1, OUWorker, clusterA)
	m3, err := c.load()
	if err != nil {
		t.Fatal(err)
	}
	if m3 == m1 || bytes.Equal(m3.pair.Leaf.Raw, m1.pair.Leaf.Raw) {
		t.Fatal("rotated pair not picked up")
	}

	// Halfway through a rotation (new key, old certificate): the last good pair stays.
	_, key := ca.issue(t, worker1, OUWorker, clusterA)
	writeAtomic(t, filepath.Join(dir, NodeKeyFile), key)
	if m, err := c.load(); err != nil || m != m3 {
		t.Fatalf("load during a rotation = %p, %v; want the last good pair %p", m, err, m3)
	}
	// The node left the swarm and the engine deleted its files: still the last good pair.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if m, err := c.load(); err != nil || m != m3 {
		t.Fatalf("load after the files went = %p, %v; want the last good pair %p", m, err, m3)
	}
	// It joined again as another node: the new pair.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca.rewrite(t, dir, worker2, OUWorker, clusterA)
	id, err := c.Identity()
	if err != nil || id.NodeID != worker2 {
		t.Fatalf("Identity() after joining again = %+v, %v; want node %s", id, err, worker2)
	}
}

func TestIdentityOfRejectsMultipleValues(t *testing.T) {
	ca := newTestCA(t)
	for _, s := range []pkix.Name{
		{CommonName: worker1, OrganizationalUnit: []string{OUWorker, OUManager}, Organization: []string{clusterA}},
		{CommonName: worker1, OrganizationalUnit: []string{OUWorker}, Organization: []string{clusterA, clusterB}},
		{CommonName: "", OrganizationalUnit: []string{OUWorker}, Organization: []string{clusterA}},
	} {
		cert := *ca.cert
		cert.Subject = s
		if id, err := identityOf(&cert); err == nil {
			t.Errorf("identityOf(%v) = %+v, want an error", s, id)
		}
	}
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
