package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// testCA is a swarm root CA whose key the test holds (swarmkit keeps its own key in Raft).
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "swarm-ca"},
		NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})}
}

// rotateTo makes ca the swarm's root CA through mgr and waits until every node holds a
// certificate it issued.
func rotateTo(t *testing.T, c *localcluster.Cluster, mgr *testbed.Node, ca *testCA, nodes []*testbed.Node) {
	t.Helper()
	ctx := t.Context()
	d, err := c.Docker(mgr)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := d.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := sw.Swarm.Spec
	spec.CAConfig.SigningCACert = string(ca.certPEM)
	spec.CAConfig.SigningCAKey = string(ca.keyPEM)
	spec.CAConfig.ForceRotate++
	if _, err := d.SwarmUpdate(ctx, client.SwarmUpdateOptions{Version: sw.Swarm.Version, Spec: spec}); err != nil {
		t.Fatalf("rotate the swarm CA: %v", err)
	}
	waitfor.Until(t, 3*time.Minute, "every node holds a certificate of the test CA", func() error {
		for _, n := range nodes {
			data, err := os.ReadFile(n.SwarmCertPath())
			if err != nil {
				return err
			}
			blk, _ := pem.Decode(data)
			if blk == nil {
				return fmt.Errorf("%s: no PEM", n.Name)
			}
			cert, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return err
			}
			if err := cert.CheckSignatureFrom(ca.cert); err != nil {
				return fmt.Errorf("%s: not yet issued by the test CA", n.Name)
			}
		}
		return nil
	})
}

// expireCert replaces n's node certificate (its engine stopped) with one for the same key
// and identity that expired a day ago, issued by ca.
func expireCert(t *testing.T, n *testbed.Node, ca *testCA) {
	t.Helper()
	data, err := os.ReadFile(n.SwarmCertPath())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	old, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: old.Subject,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		KeyUsage: old.KeyUsage, ExtKeyUsage: old.ExtKeyUsage, DNSNames: old.DNSNames, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, old.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.SwarmCertPath(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// certClusterIDs are the distinct cluster ids in the nodes' certificates on disk (read whether
// or not their engines run; a node that left has none).
func certClusterIDs(nodes []*testbed.Node) map[string]bool {
	ids := map[string]bool{}
	for _, n := range nodes {
		if id, err := n.SwarmIdentity(); err == nil {
			ids[id.ClusterID] = true
		}
	}
	return ids
}

// TestIntegrationExpiredCertificate: a node off longer than its certificate's validity comes
// back with an expired certificate, which its engine refuses to load (state error, no node
// id) and the swarm would refuse anyway. The swarm's CA is rotated to one whose key the test
// holds, so that it can issue the expired certificates.
//
//   - A worker: boot says the certificate expired, leaves and joins again (a new node id)
//     in the same swarm.
//   - A manager, while the other managers answer: the same, as a manager.
//   - A manager whose swarm's other managers are all down: its Raft copy may be the last one,
//     so boot leaves it alone past the settle time, says how to recover, and ends at --wait
//     (exit 6); its swarm state is still on disk.
//
// Throughout (every 250 ms), no node's certificate names another cluster than the swarm's.
func TestIntegrationExpiredCertificate(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 3, 1)
	ctx := t.Context()
	nodes := c.Bed.Nodes
	managers, wrk := nodes[:3], nodes[3]
	bootAll(t, c, 3)
	cluster := must[localcluster.View](t)(c.View(ctx, nodes))
	if len(cluster.ClusterIDs) != 1 {
		t.Fatalf("cluster ids after boot: %v", cluster.ClusterIDs)
	}
	var swarmID string
	for id := range cluster.ClusterIDs {
		swarmID = id
	}
	ca := newTestCA(t)
	rotateTo(t, c, managers[0], ca, nodes)

	stop := make(chan struct{})
	done := make(chan string, 1)
	go func() {
		var bad string
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		for {
			if ids := certClusterIDs(nodes); len(ids) > 1 || len(ids) == 1 && !ids[swarmID] {
				bad = fmt.Sprintf("%s: node certificates name clusters %v, want only %s", time.Now().Format("15:04:05.000"), ids, swarmID)
			}
			select {
			case <-stop:
				done <- bad
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
	})

	// expireAndBoot gives n an expired certificate (its engine stopped and started again
	// around it) and runs boot.
	expireAndBoot := func(n *testbed.Node, role string, extra ...string) (string, localcluster.Run) {
		t.Helper()
		old := must[testbed.SwarmIdentity](t)(n.SwarmIdentity())
		if err := c.Bed.KillEngine(n); err != nil {
			t.Fatal(err)
		}
		expireCert(t, n, ca)
		if err := c.Bed.StartEngine(ctx, n); err != nil {
			t.Fatal(err)
		}
		return old.NodeID, c.Boot(ctx, n, role, extra...)
	}
	rejoined := func(n *testbed.Node, oldID string, r localcluster.Run, wantManager bool) {
		t.Helper()
		if r.Code != 0 {
			t.Fatalf("boot of %s with an expired certificate: exit %d\n%s", n.Name, r.Code, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "certificate has expired") {
			t.Errorf("boot of %s did not say its certificate expired:\n%s", n.Name, r.Stderr)
		}
		id := must[testbed.SwarmIdentity](t)(n.SwarmIdentity())
		if id.ClusterID != swarmID || id.NodeID == oldID || (id.Role == "swarm-manager") != wantManager {
			t.Fatalf("%s after boot: %+v; want a new node id (not %s) in swarm %s, manager %v", n.Name, id, oldID, swarmID, wantManager)
		}
	}

	oldID, r := expireAndBoot(wrk, "worker")
	rejoined(wrk, oldID, r, false)

	leader := leaderOf(t, c, managers)
	follower := others(managers, leader)[0]
	oldID, r = expireAndBoot(follower, "manager")
	rejoined(follower, oldID, r, true)

	// The last one: every other manager down, this one's certificate expired.
	last := others(managers, leader, follower)[0]
	for _, m := range others(managers, last) {
		if err := c.Bed.KillEngine(m); err != nil {
			t.Fatal(err)
		}
	}
	// --wait past bootstrap.DefaultSettle: the rule for a join that never got an identity
	// (error, no node id, unsettled for a minute) must not take this state for one.
	_, r = expireAndBoot(last, "manager", "--wait=75s")
	if r.Code != 6 {
		t.Fatalf("boot of the last manager with an expired certificate: exit %d, want 6 (wait elapsed)\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "force-new-cluster") {
		t.Errorf("boot of the last manager does not say how to recover:\n%s", r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(last.SwarmCertPath())), "raft")); err != nil {
		t.Errorf("the last manager's Raft state is gone: %v", err)
	}
	if id, err := last.SwarmIdentity(); err != nil || id.ClusterID != swarmID {
		t.Errorf("the last manager's identity after boot: %+v %v; want it kept", id, err)
	}
	close(stop)
	if bad := <-done; bad != "" {
		t.Error(bad)
	}
}
