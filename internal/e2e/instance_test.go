package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/internal/waitfor"
)

// The instance tests run the path every user on AWS runs, on test-bed instances (systemd as
// PID 1, Debian's docker.io and cloud-init): the .deb of this build installed with dpkg and
// `swarm-agent install` run on it, as the Packer build does; the user_data rendered by
// packaging.RenderUserData given to cloud-init through its NoCloud seed; the agent then
// swarm-agent.service under systemd. Few tests, each doing much: an instance costs seconds.

var (
	imageOnce sync.Once
	image     testbed.InstanceImage
	imageErr  error
	imageSkip string
)

// agentImage is the agent's machine image, baked once per test binary: the cached Debian root
// file system (tools/instance/build.sh) with the .deb of this build installed and prepared.
func agentImage(t *testing.T) testbed.InstanceImage {
	t.Helper()
	if err := testbed.Available(); err != nil {
		t.Skipf("real engines cannot start here: %v", err)
	}
	imageOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		start := time.Now()
		base, err := testbed.BaseImage(ctx, "../..", true, os.Stderr)
		if err != nil {
			imageSkip = fmt.Sprintf("no instance root file system, and it cannot be built here (tools/prepare.sh --instance): %v", err)
			return
		}
		dir := filepath.Join(workDir, "image")
		deb, err := localcluster.Package(ctx, "../..", agentBin, filepath.Join(dir, "dist"))
		if err != nil {
			imageErr = err
			return
		}
		image, imageErr = localcluster.AgentImage(ctx, base, deb, filepath.Join(dir, "bake"))
		fmt.Fprintf(os.Stderr, "e2e: agent image (package + bake) in %s\n", time.Since(start).Round(100*time.Millisecond))
	})
	if imageSkip != "" {
		t.Skip(imageSkip)
	}
	if imageErr != nil {
		t.Fatalf("agent image: %v", imageErr)
	}
	return image
}

// unit is systemd's view of a unit on an instance.
type unit map[string]string

// showUnit reads properties of name on instance node n (systemctl show).
func showUnit(ctx context.Context, c *localcluster.Cluster, n *testbed.Node, name string, props ...string) (unit, error) {
	args := []string{"show", name}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out, err := c.Bed.InstanceOutput(ctx, n, "systemctl", args...)
	if err != nil {
		return nil, err
	}
	u := unit{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			u[k] = v
		}
	}
	return u, nil
}

// on runs a command on instance node n and fails the test when it fails.
func on(t *testing.T, c *localcluster.Cluster, n *testbed.Node, name string, args ...string) string {
	t.Helper()
	out, err := c.Bed.InstanceOutput(t.Context(), n, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// swarmState is the engine's local swarm state on n (inactive, pending, active, ...).
func swarmState(ctx context.Context, c *localcluster.Cluster, n *testbed.Node) (string, error) {
	d, err := c.Docker(n)
	if err != nil {
		return "", err
	}
	info, err := d.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", err
	}
	return string(info.Info.Swarm.LocalNodeState), nil
}

// journal is the unit's journal on n since its last start, or all of it.
func journal(ctx context.Context, c *localcluster.Cluster, n *testbed.Node, unit string) string {
	out, _ := c.Bed.InstanceOutput(ctx, n, "journalctl", "--no-pager", "-o", "short-iso-precise", "-u", unit)
	return out
}

// TestIntegrationInstances boots three manager instances and one worker instance from their
// user_data through cloud-init, next to a bare engine worker booted as the other tests do, and
// checks what systemd sees of the agent: one swarm; the unit active only once its node is in
// the swarm (READY=1) with the agent's STATUS text; the watchdog killing and restarting a
// stopped agent within WatchdogSec; a bad configuration line (exit 2) not restarted; Route 53
// refusing a manager's boot (exit 5) restarted; the JSON log in the journal; then labels, log
// settings, docker stopped by hand, a reboot and a scale-in, under systemd.
func TestIntegrationInstances(t *testing.T) {
	t.Parallel()
	img := agentImage(t)
	ctx := t.Context()
	// Hooks with a 30 s heartbeat timeout: the agent heartbeats every 10 s while a drain runs.
	c, err := localcluster.Start(ctx, localcluster.Options{Managers: 3, Workers: 2, AgentBin: agentBin,
		Instances: []int{1, 2, 3, 4}, HeartbeatTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Bed.Nodes[:4] {
				if n.PID() != 0 {
					t.Logf("%s: swarm-agent journal:\n%s", n.Name, tail(journal(context.Background(), c, n, "swarm-agent"), 40))
				}
			}
		}
		c.Close()
	})
	mgrs, wkr, bare := c.Bed.Nodes[:3], c.Bed.Nodes[3], c.Bed.Nodes[4]

	// Power on: the three managers and the worker instance at once, with their user_data; the
	// bare engine worker boots the way the other tests boot their nodes.
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range c.Bed.Nodes[:4] {
		role, labels := "manager", map[string]string(nil)
		if n == wkr {
			role, labels = "worker", map[string]string{"workload": "general"}
		}
		ud, err := c.InstanceUserData(role, labels)
		if err != nil {
			t.Fatal(err)
		}
		g.Go(func() error {
			if err := c.BootInstance(gctx, n, img, ud); err != nil {
				return err
			}
			_, err := c.WaitCloudInit(gctx, n)
			return err
		})
	}
	g.Go(func() error {
		if r := c.Boot(gctx, bare, "worker"); r.Code != 0 {
			return fmt.Errorf("boot of the bare worker %s: exit %d\n%s", bare.Name, r.Code, r.Stderr)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("4 instances booted, cloud-init done, bare worker joined: %s", time.Since(start).Round(100*time.Millisecond))

	t.Run("one swarm, the agent a unit of systemd", func(t *testing.T) {
		var v localcluster.View
		waitfor.Until(t, 2*time.Minute, "3 managers and 2 workers in one swarm", func() error {
			v = must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
			if len(v.ClusterIDs) != 1 || v.Managers != 3 || v.Workers != 2 {
				return fmt.Errorf("%+v", v)
			}
			return nil
		})
		for _, n := range c.Bed.Nodes[:4] {
			role := "manager"
			if n == wkr {
				role = "worker"
			}
			u := must[unit](t)(showUnit(ctx, c, n, "swarm-agent.service", "ActiveState", "SubState", "StatusText", "NRestarts", "MainPID", "UnitFileState"))
			if u["ActiveState"] != "active" || u["SubState"] != "running" || u["UnitFileState"] != "enabled" {
				t.Errorf("%s: swarm-agent.service %v, want active, running, enabled", n.Name, u)
			}
			if want := fmt.Sprintf("in swarm as %s (node %s)", role, v.NodeIDs[n.Name]); u["StatusText"] != want {
				t.Errorf("%s: StatusText %q, want %q", n.Name, u["StatusText"], want)
			}
			if u["NRestarts"] != "0" {
				t.Errorf("%s: restarted %s times", n.Name, u["NRestarts"])
			}
			status, _ := c.Bed.InstanceOutput(ctx, n, "systemctl", "status", "--no-pager", "swarm-agent")
			if !strings.Contains(status, `Status: "in swarm as `+role) {
				t.Errorf("%s: systemctl status does not show the agent's STATUS:\n%s", n.Name, status)
			}
			// Every line the agent wrote is JSON in the journal.
			logs := on(t, c, n, "journalctl", "--no-pager", "-o", "cat", "-u", "swarm-agent", "_COMM=swarm-agent")
			lines := 0
			for _, l := range strings.Split(logs, "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["message"] == nil {
					t.Errorf("%s: journal line not the agent's JSON: %q", n.Name, l)
					break
				}
				lines++
			}
			if lines == 0 {
				t.Errorf("%s: no agent line in the journal", n.Name)
			}
			// The instance came up clean: no failed unit on the way (the agent's unit started once,
			// from the user_data, after boot wrote its settings).
			if s := on(t, c, n, "systemctl", "is-system-running"); s != "running" {
				t.Errorf("%s: is-system-running %q; failed: %s", n.Name, s, on(t, c, n, "systemctl", "--failed", "--no-legend"))
			}
			if j := journal(ctx, c, n, "swarm-agent"); strings.Count(j, "Starting swarm-agent.service") != 1 || strings.Contains(j, "Failed with result") {
				t.Errorf("%s: swarm-agent.service did not start exactly once without failing:\n%s", n.Name, j)
			}
		}
	})

	// The watchdog: a stopped agent feeds it no more; systemd kills it within WatchdogSec (60 s)
	// and starts it again. Started now, checked at the end: the wait runs meanwhile.
	wd := mgrs[2]
	wdBefore := must[unit](t)(showUnit(ctx, c, wd, "swarm-agent.service", "MainPID", "NRestarts", "WatchdogUSec"))
	if wdBefore["WatchdogUSec"] != "1min" {
		t.Fatalf("%s: WatchdogUSec %q, want the unit's 1min", wd.Name, wdBefore["WatchdogUSec"])
	}
	on(t, c, wd, "kill", "-STOP", wdBefore["MainPID"])
	stoppedAt := time.Now()

	t.Run("READY only in the swarm, STATUS while waiting", func(t *testing.T) {
		// The worker instance leaves the swarm and cannot reach the managers' swarm port; its
		// agent, started again, waits (activating, STATUS says why) and turns active only
		// once its node is in the swarm again.
		on(t, c, wkr, "systemctl", "stop", "swarm-agent")
		on(t, c, wkr, "docker", "swarm", "leave")
		block := []string{"OUTPUT", "-p", "tcp", "--dport", "2377", "-j", "DROP"}
		on(t, c, wkr, "iptables", append([]string{"-w", "-I"}, block...)...)
		blocked := true
		unblock := func() {
			if blocked {
				blocked = false
				on(t, c, wkr, "iptables", append([]string{"-w", "-D"}, block...)...)
			}
		}
		defer unblock()
		on(t, c, wkr, "systemctl", "start", "--no-block", "swarm-agent")
		var waiting unit
		waitfor.Until(t, time.Minute, "the agent activating, its node out of the swarm", func() error {
			u, err := showUnit(ctx, c, wkr, "swarm-agent.service", "ActiveState", "StatusText")
			if err != nil {
				return err
			}
			st, err := swarmState(ctx, c, wkr)
			if err != nil {
				return err
			}
			if u["ActiveState"] != "activating" || st == "active" || !strings.Contains(u["StatusText"], "wait") {
				return fmt.Errorf("unit %v, swarm %s", u, st)
			}
			waiting = u
			return nil
		})
		t.Logf("while blocked: StatusText %q", waiting["StatusText"])
		// The boot loop goes through its stages again on every attempt: wait for the one that
		// says what it waits for.
		waitfor.Until(t, 30*time.Second, "systemctl status showing what the agent waits for", func() error {
			// (exit status 3 while the unit is not active yet)
			status, _ := c.Bed.InstanceOutput(ctx, wkr, "systemctl", "status", "--no-pager", "swarm-agent")
			if !strings.Contains(status, `Status: "waiting for registered managers that do not answer`) {
				return fmt.Errorf("%s", status)
			}
			return nil
		})
		unblock()
		// Sample the unit first, the engine second: the node never leaves the swarm again, so
		// an active unit with a node not yet in the swarm would be a READY=1 sent too early.
		waitfor.Every(t, 2*time.Minute, 50*time.Millisecond, "the unit active", func() error {
			u, err := showUnit(ctx, c, wkr, "swarm-agent.service", "ActiveState")
			if err != nil {
				return err
			}
			st, err := swarmState(ctx, c, wkr)
			if err != nil {
				return err
			}
			if u["ActiveState"] == "active" && st != "active" {
				t.Fatalf("swarm-agent.service active while the node's swarm state is %q: READY=1 before joining", st)
			}
			if u["ActiveState"] != "active" {
				return fmt.Errorf("unit %s, swarm %s", u["ActiveState"], st)
			}
			return nil
		})
	})

	t.Run("exit 2 is not restarted", func(t *testing.T) {
		// A bad line in the settings: the agent refuses to start (exit 2) and systemd leaves it.
		on(t, c, wkr, "sh", "-c", "cp /etc/default/swarm-agent /root/swarm-agent.good && echo SWARM_AGENT_COLOUR=blue >> /etc/default/swarm-agent")
		_, err := c.Bed.InstanceOutput(ctx, wkr, "systemctl", "restart", "swarm-agent")
		if err == nil {
			t.Fatal("systemctl restart succeeded with a bad setting")
		}
		time.Sleep(8 * time.Second) // RestartSec=5s and then some
		u := must[unit](t)(showUnit(ctx, c, wkr, "swarm-agent.service", "ActiveState", "Result", "ExecMainStatus", "NRestarts"))
		if u["ActiveState"] != "failed" || u["Result"] != "exit-code" || u["ExecMainStatus"] != "2" || u["NRestarts"] != "0" {
			t.Errorf("after exit 2: %v, want failed, exit-code 2, not restarted", u)
		}
		if j := journal(ctx, c, wkr, "swarm-agent"); !strings.Contains(j, "SWARM_AGENT_COLOUR") {
			t.Errorf("the journal does not name the bad setting:\n%s", tail(j, 20))
		}
		on(t, c, wkr, "cp", "/root/swarm-agent.good", "/etc/default/swarm-agent")
		on(t, c, wkr, "systemctl", "start", "swarm-agent")
	})

	t.Run("exit 5 is restarted", func(t *testing.T) {
		// Route 53 refuses a manager's boot (its settings name a zone AWS does not know: exit
		// 5, like AWS refusing); systemd starts it again every RestartSec, and once the settings
		// are right again the next start boots.
		m := mgrs[1]
		before := must[unit](t)(showUnit(ctx, c, m, "swarm-agent.service", "NRestarts"))
		on(t, c, m, "sh", "-c", "cp /etc/default/swarm-agent /root/swarm-agent.good && sed -i 's/zone_id=[A-Za-z0-9]*/zone_id=ZNOSUCHZONE0000/' /etc/default/swarm-agent")
		if _, err := c.Bed.InstanceOutput(ctx, m, "systemctl", "restart", "swarm-agent"); err == nil {
			t.Errorf("systemctl restart succeeded with a zone Route 53 does not know")
		}
		waitfor.Until(t, time.Minute, "systemd restarting the agent after exit 5", func() error {
			u, err := showUnit(ctx, c, m, "swarm-agent.service", "NRestarts", "ExecMainStatus")
			if err == nil && (u["NRestarts"] == before["NRestarts"] || !strings.Contains(journal(ctx, c, m, "swarm-agent"), "status=5/")) {
				err = fmt.Errorf("%v", u)
			}
			return err
		})
		on(t, c, m, "cp", "/root/swarm-agent.good", "/etc/default/swarm-agent")
		waitfor.Until(t, time.Minute, "the agent active again", func() error {
			u, err := showUnit(ctx, c, m, "swarm-agent.service", "ActiveState", "StatusText")
			if err == nil && u["ActiveState"] != "active" {
				err = fmt.Errorf("%v", u)
			}
			return err
		})
	})

	t.Run("watchdog", func(t *testing.T) {
		var after unit
		waitfor.Until(t, 3*time.Minute, "the stopped agent killed and running again", func() error {
			u, err := showUnit(ctx, c, wd, "swarm-agent.service", "ActiveState", "MainPID", "NRestarts")
			if err != nil {
				return err
			}
			if u["ActiveState"] != "active" || u["MainPID"] == wdBefore["MainPID"] {
				return fmt.Errorf("%v", u)
			}
			after = u
			return nil
		})
		j := journal(ctx, c, wd, "swarm-agent")
		i := strings.Index(j, "Watchdog timeout")
		if i < 0 {
			t.Fatalf("no watchdog timeout in the journal:\n%s", tail(j, 30))
		}
		line := j[strings.LastIndex(j[:i], "\n")+1:]
		at, err := time.Parse("2006-01-02T15:04:05.999999-0700", strings.Fields(line)[0])
		if err != nil {
			t.Fatalf("journal line %q: %v", line, err)
		}
		if d := at.Sub(stoppedAt); d < 0 || d > 62*time.Second {
			t.Errorf("watchdog fired %s after SIGSTOP, want within WatchdogSec (60 s)", d.Round(time.Millisecond))
		} else {
			t.Logf("watchdog fired %s after SIGSTOP", d.Round(time.Millisecond))
		}
		n0, _ := strconv.Atoi(wdBefore["NRestarts"])
		if n1, _ := strconv.Atoi(after["NRestarts"]); n1 != n0+1 {
			t.Errorf("NRestarts %d -> %d, want one restart", n0, n1)
		}
	})

	// The settings change: the agent started again by systemd merges them into daemon.json and
	// has systemd reload (labels) or restart (log settings) docker.service over D-Bus.
	setting := func(t *testing.T, n *testbed.Node, key, value string) {
		t.Helper()
		on(t, c, n, "sh", "-c", fmt.Sprintf(`sed -i '/^%[1]s=/d' /etc/default/swarm-agent && echo '%[1]s="%[2]s"' >> /etc/default/swarm-agent`, key, value))
	}
	engineInfo := func(t *testing.T, n *testbed.Node) (labels []string, logDriver string) {
		t.Helper()
		d := must[*client.Client](t)(c.Docker(n))
		info, err := d.Info(ctx, client.InfoOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return info.Info.Labels, info.Info.LoggingDriver
	}
	t.Run("labels reach docker.service by a reload", func(t *testing.T) {
		before := must[unit](t)(showUnit(ctx, c, wkr, "docker.service", "MainPID", "ExecMainStartTimestampMonotonic"))
		setting(t, wkr, "SWARM_AGENT_LABELS", "workload=batch")
		on(t, c, wkr, "systemctl", "restart", "swarm-agent")
		if labels, _ := engineInfo(t, wkr); !slices.Contains(labels, "workload=batch") {
			t.Errorf("engine labels %q, want workload=batch", labels)
		}
		after := must[unit](t)(showUnit(ctx, c, wkr, "docker.service", "MainPID", "ExecMainStartTimestampMonotonic", "ActiveState"))
		if after["MainPID"] != before["MainPID"] || after["ExecMainStartTimestampMonotonic"] != before["ExecMainStartTimestampMonotonic"] || after["ActiveState"] != "active" {
			t.Errorf("docker.service %v -> %v: want the same process (a reload, not a restart)", before, after)
		}
		if j := journal(ctx, c, wkr, "docker.service"); !strings.Contains(j, "Reloaded docker.service") && !strings.Contains(j, "Reloaded Docker") {
			t.Errorf("no reload of docker.service in its journal:\n%s", tail(j, 15))
		}
		waitfor.Until(t, time.Minute, "the leader copying workload=batch into the node labels", func() error {
			rows, err := c.Nodes(ctx, mgrs[0])
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r.Hostname == wkr.Name && r.Labels["workload"] == "batch" {
					return nil
				}
			}
			return fmt.Errorf("%+v", rows)
		})
	})
	t.Run("log settings restart docker.service", func(t *testing.T) {
		before := must[unit](t)(showUnit(ctx, c, wkr, "docker.service", "MainPID"))
		agentBefore := must[unit](t)(showUnit(ctx, c, wkr, "swarm-agent.service", "NRestarts"))
		setting(t, wkr, "SWARM_AGENT_DOCKER_LOG_DRIVER", "journald")
		on(t, c, wkr, "systemctl", "restart", "swarm-agent")
		if _, drv := engineInfo(t, wkr); drv != "journald" {
			t.Errorf("engine log driver %q, want journald", drv)
		}
		after := must[unit](t)(showUnit(ctx, c, wkr, "docker.service", "MainPID", "ActiveState"))
		if after["MainPID"] == before["MainPID"] || after["ActiveState"] != "active" {
			t.Errorf("docker.service %v -> %v: want a new process (restarted)", before, after)
		}
		agent := must[unit](t)(showUnit(ctx, c, wkr, "swarm-agent.service", "ActiveState", "NRestarts"))
		if agent["ActiveState"] != "active" || agent["NRestarts"] != agentBefore["NRestarts"] {
			t.Errorf("swarm-agent.service %v after restarting docker.service (NRestarts before %s): want it active, not restarted", agent, agentBefore["NRestarts"])
		}
		if st, err := swarmState(ctx, c, wkr); err != nil || st != "active" {
			t.Errorf("swarm state after the engine restart: %q %v", st, err)
		}
	})

	t.Run("docker stopped by hand is started again", func(t *testing.T) {
		// Socket and service both, or the agent's next call would start it through the socket.
		m := mgrs[1]
		on(t, c, m, "systemctl", "stop", "docker.socket", "docker.service")
		waitfor.Until(t, time.Minute, "docker.service active again", func() error {
			u, err := showUnit(ctx, c, m, "docker.service", "ActiveState")
			if err == nil && u["ActiveState"] != "active" {
				err = fmt.Errorf("%v", u)
			}
			return err
		})
		logs := on(t, c, m, "journalctl", "--no-pager", "-o", "cat", "-u", "swarm-agent", "_COMM=swarm-agent")
		if !strings.Contains(logs, "started docker.service") {
			t.Errorf("the agent's log does not say it started docker.service:\n%s", tail(logs, 10))
		}
		if u := must[unit](t)(showUnit(ctx, c, m, "swarm-agent.service", "ActiveState", "NRestarts")); u["ActiveState"] != "active" {
			t.Errorf("swarm-agent.service %v while docker was stopped, want active (it does not require docker)", u)
		}
	})

	t.Run("reboot", func(t *testing.T) {
		// A manager's power cycled: the unit starts by itself at boot, boot reconciles, the node
		// is back in the same swarm with the same node id; cloud-init does not run the user_data
		// again.
		m := mgrs[0]
		id := nodeIDOf(t, c, m)
		if err := c.Bed.Reboot(ctx, m); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		if s, err := c.Bed.InstanceOutput(rctx, m, "systemctl", "is-system-running", "--wait"); strings.TrimSpace(s) != "running" {
			t.Fatalf("after the reboot: %q %v; failed: %s", s, err, on(t, c, m, "systemctl", "--failed", "--no-legend"))
		}
		u := must[unit](t)(showUnit(ctx, c, m, "swarm-agent.service", "ActiveState", "StatusText", "NRestarts"))
		if want := "in swarm as manager (node " + id + ")"; u["ActiveState"] != "active" || u["StatusText"] != want || u["NRestarts"] != "0" {
			t.Errorf("after the reboot: %v, want active, %q", u, want)
		}
		if got := nodeIDOf(t, c, m); got != id {
			t.Errorf("node id %s after the reboot, want %s", got, id)
		}
		logs := on(t, c, m, "journalctl", "-b", "--no-pager", "-o", "cat", "-u", "swarm-agent", "_COMM=swarm-agent")
		if !strings.Contains(logs, `"action":"reconcile"`) || !strings.Contains(logs, `"message":"boot finished"`) {
			t.Errorf("this boot's agent log does not show a reconcile:\n%s", tail(logs, 15))
		}
		if out := on(t, c, m, "cat", "/var/log/cloud-init-output.log"); strings.Count(out, "boot finished") > 1 {
			t.Errorf("cloud-init ran the user_data again:\n%s", tail(out, 20))
		}
		waitfor.Until(t, 2*time.Minute, "3 managers reachable", func() error {
			v, err := c.View(ctx, c.Bed.Nodes)
			if err == nil && (v.Managers != 3 || len(v.ClusterIDs) != 1) {
				err = fmt.Errorf("%+v", v)
			}
			return err
		})
	})

	t.Run("scale-in under systemd", func(t *testing.T) {
		// The worker instance is scaled in through the Auto Scaling API: the unit's agent drains
		// it (its task moves, heartbeats), completes the action once, and exits 0: systemd
		// leaves it stopped, no restart.
		for _, n := range c.Bed.Nodes[:4] {
			if err := c.Bed.LoadImage(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		d := must[*client.Client](t)(c.Docker(mgrs[0]))
		nodeID := nodeIDOf(t, c, wkr)
		// Every node ready and active first, so that the five tasks spread one per node.
		waitfor.Until(t, time.Minute, "five nodes ready", func() error {
			rows, err := c.Nodes(ctx, mgrs[0])
			ready := 0
			for _, r := range rows {
				if r.State == "ready" && r.Availability == "active" {
					ready++
				}
			}
			if err == nil && ready != 5 {
				err = fmt.Errorf("%d ready: %+v", ready, rows)
			}
			return err
		})
		svc := sleepService(t, d, "spread", 5, 15*time.Second)
		waitfor.Until(t, time.Minute, "a task on the worker instance", func() error {
			tasks, _, err := localcluster.RunningTasks(ctx, d, svc)
			if err == nil && tasks[nodeID] == 0 {
				err = fmt.Errorf("running %v; all tasks: %s", tasks, taskStates(ctx, d, svc))
			}
			return err
		})
		before := must[unit](t)(showUnit(ctx, c, wkr, "swarm-agent.service", "NRestarts"))
		id := c.InstanceID(wkr)
		if err := c.Front.StartScaleIn(ctx, id); err != nil {
			t.Fatal(err)
		}
		var act awsfront.Action
		waitfor.Until(t, 3*time.Minute, "the lifecycle action completed", func() error {
			a, ok := c.Front.LifecycleAction(id)
			if !ok || a.Result == "" {
				return fmt.Errorf("action %+v", a)
			}
			act = a
			return nil
		})
		if act.Result != "CONTINUE" || act.Completions != 1 || act.TimedOut || act.Heartbeats == 0 {
			t.Errorf("action %+v: want one CONTINUE, heartbeats, no time-out", act)
		}
		waitfor.Until(t, time.Minute, "the unit stopped", func() error {
			u, err := showUnit(ctx, c, wkr, "swarm-agent.service", "ActiveState")
			if err == nil && u["ActiveState"] != "inactive" {
				err = fmt.Errorf("%v", u)
			}
			return err
		})
		time.Sleep(7 * time.Second) // RestartSec=5s and then some: nothing starts it again
		u := must[unit](t)(showUnit(ctx, c, wkr, "swarm-agent.service", "ActiveState", "Result", "ExecMainStatus", "NRestarts"))
		if u["ActiveState"] != "inactive" || u["Result"] != "success" || u["ExecMainStatus"] != "0" || u["NRestarts"] != before["NRestarts"] {
			t.Errorf("after the drain: %v, want inactive, success, exit 0, not restarted", u)
		}
		tasks, running, err := localcluster.RunningTasks(ctx, d, svc)
		if err != nil || running != 5 || tasks[nodeID] != 0 {
			t.Errorf("after the drain: %d tasks running (want 5), %d on the worker instance (%v)", running, tasks[nodeID], err)
		}
		for _, r := range must[[]localcluster.NodeRow](t)(c.Nodes(ctx, mgrs[0])) {
			if r.ID == nodeID {
				t.Errorf("the worker instance is still in the node list: %+v", r)
			}
		}
	})
}

// taskStates lists a service's tasks: node, desired and current state, error.
func taskStates(ctx context.Context, d *client.Client, svc string) string {
	f := client.Filters{}
	f.Add("service", svc)
	res, err := d.TaskList(ctx, client.TaskListOptions{Filters: f})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, tk := range res.Items {
		out = append(out, fmt.Sprintf("%s %s/%s %q", tk.NodeID, tk.DesiredState, tk.Status.State, tk.Status.Err))
	}
	return strings.Join(out, "; ")
}
