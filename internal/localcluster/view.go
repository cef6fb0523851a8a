package localcluster

// What tests read of the cluster: every engine's swarm state, the node list as a manager sees
// it, the managers' DNS records and a service's running tasks.

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

// View is every engine's swarm state at one moment.
type View struct {
	ClusterIDs map[string]bool   // distinct cluster ids seen by managers
	Managers   int               // active managers
	Workers    int               // active workers
	NodeIDs    map[string]string // node name -> node id
	Inactive   []string          // "name:state" of nodes not active
}

// View reads every engine's swarm state.
func (c *Cluster) View(ctx context.Context, nodes []*testbed.Node) (View, error) {
	v := View{ClusterIDs: map[string]bool{}, NodeIDs: map[string]string{}}
	for _, n := range nodes {
		d, err := c.Docker(n)
		if err != nil {
			return v, err
		}
		info, err := d.Info(ctx, client.InfoOptions{})
		if err != nil {
			return v, fmt.Errorf("info %s: %w", n.Name, err)
		}
		sw := info.Info.Swarm
		if string(sw.LocalNodeState) != "active" {
			v.Inactive = append(v.Inactive, n.Name+":"+string(sw.LocalNodeState))
			continue
		}
		v.NodeIDs[n.Name] = sw.NodeID
		if sw.ControlAvailable {
			v.Managers++
			if sw.Cluster != nil {
				v.ClusterIDs[sw.Cluster.ID] = true
			}
		} else {
			v.Workers++
		}
	}
	return v, nil
}

// NodeRow is one line of `docker node ls`.
type NodeRow struct {
	ID, Hostname, Role, State, Availability, Leader, Addr string
	Reachability                                          string // managers: reachable | unreachable | unknown
	Labels                                                map[string]string
}

// Nodes is the node list as manager mgr sees it.
func (c *Cluster) Nodes(ctx context.Context, mgr *testbed.Node) ([]NodeRow, error) {
	d, err := c.Docker(mgr)
	if err != nil {
		return nil, err
	}
	res, err := d.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("node ls on %s: %w", mgr.Name, err)
	}
	var rows []NodeRow
	for _, n := range res.Items {
		r := NodeRow{ID: n.ID, Hostname: n.Description.Hostname, Role: string(n.Spec.Role), State: string(n.Status.State),
			Availability: string(n.Spec.Availability), Addr: n.Status.Addr, Labels: n.Spec.Labels}
		if n.ManagerStatus != nil && n.ManagerStatus.Leader {
			r.Leader = "leader"
		}
		if n.ManagerStatus != nil {
			r.Reachability = string(n.ManagerStatus.Reachability)
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b NodeRow) int { return strings.Compare(a.Hostname, b.Hostname) })
	return rows, nil
}

// DNSManagers asks the front's DNS server for the managers' name, as a node's resolver would.
func (c *Cluster) DNSManagers(ctx context.Context) []string {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, c.Front.DNSAddr())
	}}
	addrs, err := r.LookupHost(ctx, ManagersName)
	if err != nil {
		return nil
	}
	slices.Sort(addrs)
	return addrs
}

// RecordSets lists the managers' A record sets through the API.
func (c *Cluster) RecordSets(ctx context.Context) ([]r53types.ResourceRecordSet, error) {
	out, err := c.R53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(c.ZoneID)})
	if err != nil {
		return nil, fmt.Errorf("list record sets: %w", err)
	}
	var sets []r53types.ResourceRecordSet
	for _, s := range out.ResourceRecordSets {
		if strings.TrimSuffix(aws.ToString(s.Name), ".") == ManagersName && s.Type == r53types.RRTypeA {
			sets = append(sets, s)
		}
	}
	return sets, nil
}

// RunningTasks counts the service's running tasks per node id, through d (a manager's engine).
func RunningTasks(ctx context.Context, d *client.Client, serviceID string) (map[string]int, int, error) {
	f := client.Filters{}
	f.Add("service", serviceID)
	f.Add("desired-state", "running")
	res, err := d.TaskList(ctx, client.TaskListOptions{Filters: f})
	if err != nil {
		return nil, 0, err
	}
	on := map[string]int{}
	n := 0
	for _, tk := range res.Items {
		if tk.Status.State == swarm.TaskStateRunning {
			on[tk.NodeID]++
			n++
		}
	}
	return on, n, nil
}
