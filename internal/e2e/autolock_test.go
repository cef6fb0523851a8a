package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// TestIntegrationAutolock: three managers booted with --autolock create a locked swarm and
// publish its unlock key in SSM. Every manager's engine is killed and started again (each
// comes back locked) and boot runs on all three at once: each unlocks itself with the key from
// the store, and the cluster id and a service are intact. Then `docker swarm unlock-key
// --rotate`: the leader's `run` republishes the key (with the one it replaced); every manager
// is restarted again, with its agent (`run`, which boots first): each unlocks with the rotated
// key. Throughout (every 250 ms) no node's certificate or manager names a second cluster id;
// no log, status or configuration file of the agents holds an unlock key.
func TestIntegrationAutolock(t *testing.T) {
	c := newCluster(t, 3, 1)
	ctx := t.Context()
	managers, wrk := c.Bed.Nodes[:3], c.Bed.Nodes[3]
	var outputs []string // everything the agents printed, checked for keys at the end
	var outMu sync.Mutex
	boot := func(n *testbed.Node, role string, extra ...string) localcluster.Run {
		r := c.Boot(ctx, n, role, extra...)
		outMu.Lock()
		outputs = append(outputs, r.Stdout, r.Stderr)
		outMu.Unlock()
		return r
	}
	bootManagers := func(what string) {
		t.Helper()
		runs := make([]localcluster.Run, len(managers))
		var wg sync.WaitGroup
		for i, m := range managers {
			wg.Go(func() { runs[i] = boot(m, "manager", "--autolock") })
		}
		wg.Wait()
		for i, r := range runs {
			if r.Code != 0 {
				t.Errorf("%s: boot of %s: exit %d\n%s", what, managers[i].Name, r.Code, r.Stderr)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	bootManagers("first boot")
	if r := boot(wrk, "worker"); r.Code != 0 {
		t.Fatalf("boot of the worker: exit %d\n%s", r.Code, r.Stderr)
	}
	d0 := must[*client.Client](t)(c.Docker(managers[0]))
	sw := must[client.SwarmInspectResult](t)(d0.SwarmInspect(ctx, client.SwarmInspectOptions{})).Swarm
	if !sw.Spec.EncryptionConfig.AutoLockManagers {
		t.Fatal("the swarm's autolock is off after boot with --autolock")
	}
	swarmID := sw.ID
	liveKey := func() string {
		t.Helper()
		return must[client.SwarmGetUnlockKeyResult](t)(d0.SwarmGetUnlockKey(ctx)).Key
	}
	stored := func() swarm.UnlockKey {
		t.Helper()
		p, err := c.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/swarm-agent/" + localcluster.ClusterName + "/unlock-key"), WithDecryption: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		if p.Parameter.Type != "SecureString" {
			t.Fatalf("the unlock key parameter is a %s, want a SecureString", p.Parameter.Type)
		}
		var k swarm.UnlockKey
		if err := json.Unmarshal([]byte(aws.ToString(p.Parameter.Value)), &k); err != nil {
			t.Fatalf("the unlock key parameter is not the store's JSON: %v", err) // never print the value
		}
		return k
	}
	key1 := liveKey()
	if k := stored(); k.Key != key1 || k.ClusterID != swarmID {
		t.Fatalf("the store holds %s, want the swarm's live key for %s", k, swarmID) // String redacts
	}
	svc := sleepService(t, d0, "autolocked", 2, 0)

	// The invariant, all along: one swarm.
	stop := make(chan struct{})
	done := make(chan string, 1)
	go func() {
		var bad string
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		for {
			ids := certClusterIDs(c.Bed.Nodes)
			for _, m := range managers {
				if d, err := c.Docker(m); err == nil {
					if info, err := d.Info(ctx, client.InfoOptions{}); err == nil && info.Info.Swarm.Cluster != nil && info.Info.Swarm.Cluster.ID != "" {
						ids[info.Info.Swarm.Cluster.ID] = true
					}
				}
			}
			if bad == "" && (len(ids) > 1 || len(ids) == 1 && !ids[swarmID]) {
				bad = fmt.Sprintf("%s: cluster ids %v, want only %s", time.Now().Format("15:04:05.000"), ids, swarmID)
			}
			select {
			case <-stop:
				done <- bad
				return
			case <-tk.C:
			}
		}
	}()
	stopWatch := sync.OnceFunc(func() { close(stop) })
	t.Cleanup(func() { stopWatch() })

	// restartAll kills every manager's engine, starts it again and checks it is locked.
	restartAll := func() {
		t.Helper()
		for _, m := range managers {
			if err := c.Bed.KillEngine(m); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range managers {
			if err := c.Bed.StartEngine(ctx, m); err != nil {
				t.Fatal(err)
			}
			info := must[client.SystemInfoResult](t)(must[*client.Client](t)(c.Docker(m)).Info(ctx, client.InfoOptions{}))
			if st := info.Info.Swarm.LocalNodeState; st != "locked" {
				t.Fatalf("%s after its engine restarted: state %s, want locked", m.Name, st)
			}
		}
	}
	// intact checks every manager active in the swarm and the service's replicas running.
	intact := func(what string) {
		t.Helper()
		waitfor.Until(t, 2*time.Minute, what+": managers active in "+swarmID+" and the service running", func() error {
			for _, m := range managers {
				info, err := must[*client.Client](t)(c.Docker(m)).Info(ctx, client.InfoOptions{})
				if err != nil {
					return err
				}
				s := info.Info.Swarm
				if s.LocalNodeState != "active" || !s.ControlAvailable || s.Cluster == nil || s.Cluster.ID != swarmID {
					return fmt.Errorf("%s: state %s, manager %v", m.Name, s.LocalNodeState, s.ControlAvailable)
				}
			}
			d := must[*client.Client](t)(c.Docker(managers[0]))
			if _, n, err := localcluster.RunningTasks(ctx, d, svc); err != nil || n != 2 {
				return fmt.Errorf("service: %d running (%v)", n, err)
			}
			return nil
		})
	}

	restartAll()
	start := time.Now()
	bootManagers("boot of the locked managers")
	t.Logf("three locked managers unlocked themselves and reconciled in %s", time.Since(start).Round(time.Millisecond))
	intact("after the first restart")

	// Rotate; the leader's pass republishes. The agents read --autolock from the configuration
	// their boot persisted.
	agents := map[string]*localcluster.Agent{}
	startAgents := func() {
		for _, m := range managers {
			a, err := c.StartRun(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			agents[m.Name] = a
		}
	}
	stopAgents := func() {
		for _, a := range agents {
			a.Stop(10 * time.Second)
			outMu.Lock()
			outputs = append(outputs, a.Log())
			outMu.Unlock()
		}
		clear(agents)
	}
	t.Cleanup(stopAgents)
	startAgents()
	sw = must[client.SwarmInspectResult](t)(d0.SwarmInspect(ctx, client.SwarmInspectOptions{})).Swarm
	if _, err := d0.SwarmUpdate(ctx, client.SwarmUpdateOptions{Version: sw.Version, Spec: sw.Spec, RotateManagerUnlockKey: true}); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	key2 := liveKey()
	if key2 == key1 {
		t.Fatal("the unlock key did not change on rotation")
	}
	waitfor.Until(t, leaderPass+30*time.Second, "the rotated unlock key in the store", func() error {
		if k := stored(); k.Key != key2 || k.Previous != key1 || k.ClusterID != swarmID {
			return fmt.Errorf("the store holds %s (rotated key %t, previous %t)", k, k.Key == key2, k.Previous == key1)
		}
		return nil
	})
	t.Logf("the leader republished the rotated key %s after the rotation", time.Since(rotated).Round(time.Millisecond))

	stopAgents()
	restartAll()
	start = time.Now()
	startAgents()
	intact("after the restart that followed the rotation")
	t.Logf("three locked managers unlocked themselves through run after the rotation in %s", time.Since(start).Round(time.Millisecond))
	for name, a := range agents {
		if !strings.Contains(a.Log(), "unlocked this manager with the unlock key from the token store") {
			t.Errorf("%s: run did not say it unlocked the manager:\n%s", name, tail(a.Log(), 20))
		}
	}
	stopAgents()

	stopWatch()
	if bad := <-done; bad != "" {
		t.Error(bad)
	}
	// No key anywhere the agents write.
	files, _ := filepath.Glob(filepath.Join(c.Dir, "*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			outputs = append(outputs, string(b))
		}
	}
	for _, out := range outputs {
		for _, k := range []string{key1, key2} {
			if strings.Contains(out, k) || strings.Contains(out, strings.TrimPrefix(k, "SWMKEY-1-")) {
				t.Fatal("an unlock key appears in an agent's output, status or configuration file") // never print it
			}
		}
	}
}
