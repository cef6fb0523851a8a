// Command demo runs the main job locally: five real Docker engines in network namespaces
// (3 managers, 2 workers), moto and the AWS front; every node boots at the same instant with
// the real swarm-agent binary, then the demo prints the swarm, what DNS answers, the AWS calls
// made, scales a worker in through Auto Scaling and shows it drained, and cleans up.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

func main() {
	managers := flag.Int("managers", 3, "manager nodes")
	workers := flag.Int("workers", 2, "worker nodes")
	bin := flag.String("agent", "bin/swarm-agent", "swarm-agent binary (built if missing)")
	mode := flag.String("mode", "multivalue", "discovery: Route 53 records multivalue or failover, or consul (a real Consul agent)")
	keep := flag.Bool("keep", false, "keep the cluster running until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *managers, *workers, *bin, *mode, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) {
	fmt.Printf("\n\033[1m== "+format+"\033[0m\n", a...)
}

func run(ctx context.Context, nm, nw int, bin, mode string, keep bool) error {
	if _, err := os.Stat(bin); err != nil {
		step("building swarm-agent")
		dir, err := os.MkdirTemp("", "swarm-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if bin, err = localcluster.BuildAgent(ctx, ".", dir); err != nil {
			return err
		}
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	step("starting %d Docker engines in network namespaces, moto and the AWS front", nm+nw)
	start := time.Now()
	c, err := localcluster.Start(ctx, localcluster.Options{Managers: nm, Workers: nw, AgentBin: bin, Log: zerolog.Nop()})
	if err != nil {
		return err
	}
	defer func() {
		step("cleaning up")
		c.Close()
		fmt.Println("engines stopped, namespaces and bridge removed, moto stopped")
	}()
	switch mode {
	case "multivalue", "failover":
		c.Mode = mode
	case "consul":
		consul, err := localcluster.ConsulBinary(".")
		if err != nil {
			return err
		}
		if err := c.StartConsul(ctx, consul); err != nil {
			return err
		}
	default:
		return fmt.Errorf("-mode %q: want multivalue, failover or consul", mode)
	}
	fmt.Printf("ready in %s: front API %s, IMDS %s, DNS %s, zone %s\n", time.Since(start).Round(time.Millisecond),
		c.Front.APIURL(), c.Front.IMDSURL(), c.Front.DNSAddr(), c.ZoneID)
	for _, n := range c.Bed.Nodes {
		fmt.Printf("  %-8s %-12s %s\n", n.Name, n.IP, c.InstanceID(n))
	}

	step("booting all %d agents at the same instant: swarm-agent boot --role=... --discovery=%q", nm+nw, c.Discovery())
	roles := map[string]string{}
	for i, n := range c.Bed.Nodes {
		roles[n.Name] = "worker"
		if i < nm {
			roles[n.Name] = "manager"
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	t0 := time.Now()
	results := map[string]localcluster.Run{}
	for _, n := range c.Bed.Nodes {
		wg.Go(func() {
			r := c.Boot(ctx, n, roles[n.Name])
			mu.Lock()
			results[n.Name] = r
			fmt.Printf("  %-8s %-7s -> %-9s exit %d after %s\n", n.Name, roles[n.Name], r.Result.Action, r.Code, time.Since(t0).Round(time.Millisecond))
			mu.Unlock()
		})
	}
	wg.Wait()
	for name, r := range results {
		if r.Code != 0 {
			return fmt.Errorf("boot of %s failed (exit %d):\n%s", name, r.Code, tail(r.Stderr, 15))
		}
	}
	if err := printSwarm(ctx, c, c.Bed.Nodes[0]); err != nil {
		return err
	}
	step("AWS calls made during boot (front request log)")
	counts := map[string]int{}
	for _, r := range c.Front.Requests() {
		role := roles[nodeOfInstance(c, r.InstanceID)]
		if role == "" {
			role = "other"
		}
		counts[fmt.Sprintf("%-7s %s %s", role, r.Service, r.Operation)]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("  %-60s %d\n", k, counts[k])
	}

	if err := scaleIn(ctx, c, roles); err != nil {
		return err
	}
	if keep {
		step("cluster kept running; Ctrl-C to clean up")
		<-ctx.Done()
	}
	return nil
}

func nodeOfInstance(c *localcluster.Cluster, id string) string {
	for _, n := range c.Bed.Nodes {
		if c.InstanceID(n) == id {
			return n.Name
		}
	}
	return ""
}

func printSwarm(ctx context.Context, c *localcluster.Cluster, mgr *testbed.Node) error {
	step("docker node ls (as seen by %s)", mgr.Name)
	rows, err := c.Nodes(ctx, mgr)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tHOSTNAME\tADDR\tROLE\tSTATUS\tAVAILABILITY\tLEADER\tLABELS")
	for _, r := range rows {
		var labels []string
		for k, v := range r.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID[:12], r.Hostname, r.Addr, r.Role, r.State, r.Availability, r.Leader, strings.Join(labels, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	v, err := c.View(ctx, c.Bed.Nodes)
	if err != nil {
		return err
	}
	fmt.Printf("swarms formed: %d; managers %d, workers %d\n", len(v.ClusterIDs), v.Managers, v.Workers)
	if c.Provider == "consul" {
		step("passing instances of the managers' service in Consul (TCP checks on 2377 every 5 s)")
		var addrs []string
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(time.Second) {
			if addrs, err = c.ConsulManagers(); err != nil {
				return err
			}
			if len(addrs) >= v.Managers || time.Now().After(deadline) {
				break
			}
		}
		fmt.Printf("  %v\n", addrs)
		return nil
	}
	step("DNS answers for %s (the front's resolver, as a VPC resolver would)", localcluster.ManagersName)
	fmt.Printf("  %v\n", c.DNSManagers(ctx))
	sets, err := c.RecordSets(ctx)
	if err != nil {
		return err
	}
	for _, s := range sets {
		var vals []string
		for _, rr := range s.ResourceRecords {
			vals = append(vals, *rr.Value)
		}
		id := ""
		if s.SetIdentifier != nil {
			id = *s.SetIdentifier
		}
		fmt.Printf("  record set %-22s %-10s %v\n", id, s.Failover, vals)
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
