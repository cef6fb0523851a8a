// Package localcluster assembles a local AWS-like cluster for the demo and the end-to-end
// tests: real dockerd engines in network namespaces, moto, the AWS front, a private hosted
// zone and one EC2 identity per engine; and it runs the real swarm-agent binary on them.
package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

// ManagersName is the managers' record name in the private zone.
const ManagersName = "managers.swarm.internal"

// ClusterName is the --cluster every agent of the local cluster uses.
const ClusterName = "local"

// Options configure Start.
type Options struct {
	// Managers and Workers: the first Managers nodes belong to the managers' Auto Scaling
	// group, the rest to the workers' group. Nodes is their sum.
	Managers int
	Workers  int
	// Spare nodes come after them and belong to no group: Launch gives each the instance a
	// scale-out launches.
	Spare int
	// HeartbeatTimeout of the groups' termination lifecycle hooks (default 60 s; AWS: 30..7200).
	HeartbeatTimeout int32
	AgentBin         string // the swarm-agent binary to run on the nodes
	Log              zerolog.Logger
	// Limits overrides the front's per-service rate limits.
	Limits map[string]awsfront.Limit
	// Instances lists the nodes (by index, from 1) that are instances (testbed instance nodes:
	// systemd, the agent's package, cloud-init) rather than bare engines; BootInstance boots
	// them. They belong to their Auto Scaling group like the others.
	Instances []int
}

// Cluster is a running local cluster. Close tears everything down.
type Cluster struct {
	Bed       *testbed.Bed
	Front     *awsfront.Front
	ZoneID    string
	R53       *route53.Client
	SSM       *ssm.Client
	ASG       *autoscaling.Client
	EC2       *ec2.Client
	AWS       aws.Config // SDK config pointed at the front (Region, static credentials)
	Mode      string     // route53 record mode: multivalue | failover
	Extra     string     // extra discovery keys
	Provider  string     // route53 (default) or consul (after StartConsul)
	Dir       string
	bin       string
	ids       map[string]string // node name -> instance id
	hbTimeout int32
	moto      *awsfront.Moto
	mu        sync.Mutex
	docker    map[string]*client.Client
	consul    *Consul
}

// Start brings up engines, moto, the front and the zone.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if err := testbed.Available(); err != nil {
		return nil, fmt.Errorf("real engines cannot start here: %w", err)
	}
	if _, err := exec.LookPath("moto_server"); err != nil {
		return nil, fmt.Errorf("moto_server not installed (pip install 'moto[server]'): %w", err)
	}
	c = &Cluster{bin: opts.AgentBin, ids: map[string]string{}, docker: map[string]*client.Client{}, Mode: "multivalue"}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.Dir, err = os.MkdirTemp("", "swarm-local-"); err != nil {
		return nil, err
	}
	if c.Bed, err = testbed.Start(ctx, testbed.Options{Nodes: opts.Managers + opts.Workers + opts.Spare, Instances: opts.Instances}); err != nil {
		return nil, fmt.Errorf("start engines: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if c.moto, err = awsfront.StartMoto(ctx, "127.0.0.1", port); err != nil {
		return nil, fmt.Errorf("start moto: %w", err)
	}
	if c.Front, err = awsfront.Start(ctx, awsfront.Config{
		MotoURL:     c.moto.URL(),
		APIAddr:     c.Bed.BridgeIP + ":0",
		IMDSAddr:    c.Bed.BridgeIP + ":0",
		DNSAddr:     c.Bed.BridgeIP + ":0",
		ControlAddr: "127.0.0.1:0",
		Limits:      opts.Limits,
		Log:         opts.Log,
	}); err != nil {
		return nil, fmt.Errorf("start AWS front: %w", err)
	}
	c.AWS = aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	c.R53 = route53.NewFromConfig(c.AWS, func(o *route53.Options) { o.BaseEndpoint = aws.String(c.Front.APIURL()) })
	c.SSM = ssm.NewFromConfig(c.AWS, func(o *ssm.Options) { o.BaseEndpoint = aws.String(c.Front.APIURL()) })
	hz, err := c.R53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name:             aws.String("swarm.internal"),
		CallerReference:  aws.String(fmt.Sprint(time.Now().UnixNano())),
		HostedZoneConfig: &r53types.HostedZoneConfig{PrivateZone: true},
		VPC:              &r53types.VPC{VPCId: aws.String("vpc-12345678"), VPCRegion: r53types.VPCRegionUsEast1},
	})
	if err != nil {
		return nil, fmt.Errorf("create hosted zone: %w", err)
	}
	c.ZoneID = strings.TrimPrefix(aws.ToString(hz.HostedZone.Id), "/hostedzone/")
	c.ASG = autoscaling.NewFromConfig(c.AWS, func(o *autoscaling.Options) { o.BaseEndpoint = aws.String(c.Front.APIURL()) })
	c.EC2 = ec2.NewFromConfig(c.AWS, func(o *ec2.Options) { o.BaseEndpoint = aws.String(c.Front.APIURL()) })
	if opts.HeartbeatTimeout == 0 {
		opts.HeartbeatTimeout = 60
	}
	c.hbTimeout = opts.HeartbeatTimeout
	if _, err := c.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("swarm-node"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Medium},
	}); err != nil {
		return nil, fmt.Errorf("create launch template: %w", err)
	}
	groups := []struct {
		name  string
		nodes []*testbed.Node
	}{{ManagersGroup, c.Bed.Nodes[:opts.Managers]}, {WorkersGroup, c.Bed.Nodes[opts.Managers : opts.Managers+opts.Workers]}}
	for _, g := range groups {
		if err := c.createGroup(ctx, g.name, g.nodes); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Auto Scaling group names of the local cluster.
const (
	ManagersGroup = "swarm-managers"
	WorkersGroup  = "swarm-workers"
	HookName      = "swarm-agent-drain"
	// LaunchHookName is the groups' launching hook, once PutLaunchHook added it.
	LaunchHookName = "swarm-agent-launch"
)

// createGroup makes an Auto Scaling group with a termination hook in moto, one instance per
// node, and gives each node its instance's identity in the front's IMDS.
func (c *Cluster) createGroup(ctx context.Context, name string, nodes []*testbed.Node) error {
	n := int32(len(nodes))
	if _, err := c.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("swarm-node"), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(20), DesiredCapacity: aws.Int32(n),
		AvailabilityZones: []string{"us-east-1a", "us-east-1b", "us-east-1c"},
	}); err != nil {
		return fmt.Errorf("create group %s: %w", name, err)
	}
	if _, err := c.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String(name),
		LifecycleHookName:    aws.String(HookName),
		LifecycleTransition:  aws.String("autoscaling:EC2_INSTANCE_TERMINATING"),
		HeartbeatTimeout:     aws.Int32(c.hbTimeout),
		DefaultResult:        aws.String("ABANDON"),
	}); err != nil {
		return fmt.Errorf("put lifecycle hook on %s: %w", name, err)
	}
	out, err := c.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		return fmt.Errorf("describe group %s: %v", name, err)
	}
	insts := out.AutoScalingGroups[0].Instances
	if len(insts) < len(nodes) {
		return fmt.Errorf("group %s has %d instances, want %d", name, len(insts), len(nodes))
	}
	for i, node := range nodes {
		if err := c.adopt(ctx, name, aws.ToString(insts[i].InstanceId), aws.ToString(insts[i].AvailabilityZone), node); err != nil {
			return err
		}
	}
	return nil
}

// adopt makes node n the EC2 instance id of group: its address is the instance's (EC2) and
// its instance metadata the instance's (the front's IMDS).
func (c *Cluster) adopt(ctx context.Context, group, id, az string, n *testbed.Node) error {
	if err := c.giveAddress(ctx, id, n.IP); err != nil {
		return err
	}
	c.mu.Lock()
	c.ids[n.Name] = id
	c.mu.Unlock()
	c.Front.AddInstance(imdsfake.Instance{ID: id, PrivateIP: n.IP, AZ: az,
		Region: "us-east-1", InstanceType: "t3.medium", ASG: group, TargetLifecycleState: "InService"})
	return nil
}

// PutLaunchHook adds the launching lifecycle hook LaunchHookName to group, with heartbeat
// timeout hb (seconds) and default result def.
func (c *Cluster) PutLaunchHook(ctx context.Context, group string, hb int32, def string) error {
	if _, err := c.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String(group),
		LifecycleHookName:    aws.String(LaunchHookName),
		LifecycleTransition:  aws.String("autoscaling:EC2_INSTANCE_LAUNCHING"),
		HeartbeatTimeout:     aws.Int32(hb),
		DefaultResult:        aws.String(def),
	}); err != nil {
		return fmt.Errorf("put launch hook on %s: %w", group, err)
	}
	return nil
}

// GroupInstances is the group's instances and their lifecycle states, as Auto Scaling shows
// them (through the front).
func (c *Cluster) GroupInstances(ctx context.Context, group string) (map[string]string, error) {
	out, err := c.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		return nil, fmt.Errorf("describe group %s: %v", group, err)
	}
	st := map[string]string{}
	for _, in := range out.AutoScalingGroups[0].Instances {
		st[aws.ToString(in.InstanceId)] = string(in.LifecycleState)
	}
	return st, nil
}

// Launch scales group out by one through the front, as a scaling policy does (a launching
// hook holds the new instance in Pending:Wait), and makes spare node n that instance. It
// returns the instance id.
func (c *Cluster) Launch(ctx context.Context, group string, n *testbed.Node) (string, error) {
	out, err := c.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		return "", fmt.Errorf("describe group %s: %v", group, err)
	}
	before := map[string]bool{}
	for _, in := range out.AutoScalingGroups[0].Instances {
		before[aws.ToString(in.InstanceId)] = true
	}
	if _, err := c.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(group),
		DesiredCapacity: aws.Int32(aws.ToInt32(out.AutoScalingGroups[0].DesiredCapacity) + 1)}); err != nil {
		return "", fmt.Errorf("scale %s out: %w", group, err)
	}
	id, err := c.Replacement(ctx, group, before)
	if err != nil {
		return "", err
	}
	return id, c.Adopt(ctx, group, id, n)
}

// Replacement returns the one instance of group that is not in known (the one a scale-out or
// a replacement launched).
func (c *Cluster) Replacement(ctx context.Context, group string, known map[string]bool) (string, error) {
	st, err := c.GroupInstances(ctx, group)
	if err != nil {
		return "", err
	}
	var fresh []string
	for id := range st {
		if !known[id] {
			fresh = append(fresh, id)
		}
	}
	if len(fresh) != 1 {
		return "", fmt.Errorf("group %s launched %v (instances %v), want one new instance", group, fresh, st)
	}
	return fresh[0], nil
}

// Adopt makes node n the group's instance id (launched by a scale-out or as a replacement).
func (c *Cluster) Adopt(ctx context.Context, group, id string, n *testbed.Node) error {
	out, err := c.ASG.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.AutoScalingInstances) != 1 {
		return fmt.Errorf("describe instance %s: %v", id, err)
	}
	return c.adopt(ctx, group, id, aws.ToString(out.AutoScalingInstances[0].AvailabilityZone), n)
}

// giveAddress makes EC2 tell the truth about the node's address: moto gives the instance a
// private address of its own, and the node's is added to the instance's network interface as
// a secondary private address (AssignPrivateIpAddresses, as on AWS), so that DescribeInstances
// lists it and the leader's check of a node's claim to its instance passes, as it does on AWS.
func (c *Cluster) giveAddress(ctx context.Context, instanceID, ip string) error {
	out, err := c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		return fmt.Errorf("describe instance %s: %w", instanceID, err)
	}
	if len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 || len(out.Reservations[0].Instances[0].NetworkInterfaces) == 0 {
		return fmt.Errorf("instance %s: no network interface in %+v", instanceID, out.Reservations)
	}
	eni := out.Reservations[0].Instances[0].NetworkInterfaces[0].NetworkInterfaceId
	if _, err := c.EC2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
		NetworkInterfaceId: eni, PrivateIpAddresses: []string{ip}}); err != nil {
		return fmt.Errorf("give instance %s the address %s: %w", instanceID, ip, err)
	}
	return nil
}

// InstanceID of node n.
func (c *Cluster) InstanceID(n *testbed.Node) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ids[n.Name]
}

// Close stops everything Start started; safe after a partial Start.
func (c *Cluster) Close() {
	c.mu.Lock()
	for _, d := range c.docker {
		_ = d.Close()
	}
	c.docker = map[string]*client.Client{}
	c.mu.Unlock()
	c.consul.stop()
	if c.Front != nil {
		_ = c.Front.Close()
	}
	if c.moto != nil {
		_ = c.moto.Close()
	}
	if c.Bed != nil {
		_ = c.Bed.Close()
	}
	if c.Dir != "" {
		_ = os.RemoveAll(c.Dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Discovery is the discovery string the agents use.
func (c *Cluster) Discovery() string {
	if c.Provider == "consul" {
		d := fmt.Sprintf("provider=consul address=%s service=%s lock_ttl=10s", c.consul.Addr, ConsulService)
		if c.Extra != "" {
			d += " " + c.Extra
		}
		return d
	}
	d := fmt.Sprintf("provider=route53 zone_id=%s name=%s mode=%s resolver=%s", c.ZoneID, ManagersName, c.Mode, c.Front.DNSAddr())
	if c.Extra != "" {
		d += " " + c.Extra
	}
	return d
}

// Run is the outcome of one agent command.
type Run struct {
	Code   int
	Stdout string
	Stderr string
	Result struct {
		Action string `json:"action"`
		NodeID string `json:"node_id"`
	}
}

// Command builds a swarm-agent command inside node n's namespace, configured like an EC2
// instance's agent: IMDS, AWS endpoints and DNS are the front's.
func (c *Cluster) Command(ctx context.Context, n *testbed.Node, args ...string) *exec.Cmd {
	return c.commandBin(ctx, c.bin, n, args...)
}

func (c *Cluster) commandBin(ctx context.Context, bin string, n *testbed.Node, args ...string) *exec.Cmd {
	env := []string{
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + c.Front.IMDSURL(),
		"AWS_ENDPOINT_URL=" + c.Front.APIURL(),
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"SWARM_AGENT_CONFIG_FILE=" + filepath.Join(c.Dir, n.Name+".env"),
		"SWARM_AGENT_STATUS_FILE=" + filepath.Join(c.Dir, n.Name+".status.json"),
		"SWARM_AGENT_LOG_FORMAT=json",
		"SWARM_AGENT_CLUSTER=" + ClusterName,
		// Each engine reads its own daemon.json; the agent reloads it with SIGHUP (no systemd).
		"SWARM_AGENT_DAEMON_CONFIG=" + n.ConfigPath(),
		"SWARM_AGENT_DOCKER_PIDFILE=" + n.PIDFile(),
	}
	return c.Bed.Command(ctx, n, env, bin, args...)
}

// Boot runs `swarm-agent boot` on node n and waits for it.
func (c *Cluster) Boot(ctx context.Context, n *testbed.Node, role string, extra ...string) Run {
	return c.BootBin(ctx, c.bin, n, role, extra...)
}

// BootBin is Boot with another agent binary (a benchmark's older build).
func (c *Cluster) BootBin(ctx context.Context, bin string, n *testbed.Node, role string, extra ...string) Run {
	args := append([]string{"boot", "--role=" + role, "--discovery=" + c.Discovery(), "--wait=3m"}, extra...)
	cmd := c.commandBin(ctx, bin, n, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Run{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		r.Code, r.Stderr = -1, r.Stderr+"\n"+err.Error()
	}
	if r.Code == 0 {
		line := strings.TrimSpace(r.Stdout)
		if i := strings.LastIndex(line, "\n"); i >= 0 {
			line = line[i+1:]
		}
		_ = json.Unmarshal([]byte(line), &r.Result)
	}
	return r
}

// Docker returns a client for node n's engine (through its socket, from the host).
func (c *Cluster) Docker(n *testbed.Node) (*client.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.docker[n.Name]; ok {
		return d, nil
	}
	d, err := client.New(client.WithHost(n.Host))
	if err != nil {
		return nil, err
	}
	c.docker[n.Name] = d
	return d, nil
}

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

// Reset takes every node out of its swarm and clears records, lock and tokens.
func (c *Cluster) Reset(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.Bed.Nodes))
	for i, n := range c.Bed.Nodes {
		wg.Go(func() { errs[i] = c.leave(ctx, n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if c.consul != nil {
		if err := c.resetConsul(); err != nil {
			return err
		}
	}
	out, err := c.R53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(c.ZoneID)})
	if err != nil {
		return fmt.Errorf("list record sets: %w", err)
	}
	var changes []r53types.Change
	for _, s := range out.ResourceRecordSets {
		if s.Type == r53types.RRTypeA || s.Type == r53types.RRTypeTxt {
			changes = append(changes, r53types.Change{Action: r53types.ChangeActionDelete, ResourceRecordSet: &s})
		}
	}
	if len(changes) > 0 {
		if _, err := c.R53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(c.ZoneID), ChangeBatch: &r53types.ChangeBatch{Changes: changes}}); err != nil {
			return fmt.Errorf("clear records: %w", err)
		}
	}
	for _, p := range []string{"join-token/manager", "join-token/worker", "cluster-id", "unlock-key"} {
		_, _ = c.SSM.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String("/swarm-agent/" + ClusterName + "/" + p)})
	}
	c.Front.ResetRequests()
	return nil
}

// leave takes node n out of any swarm and waits until its engine says inactive.
func (c *Cluster) leave(ctx context.Context, n *testbed.Node) error {
	d, err := c.Docker(n)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := d.Info(ctx, client.InfoOptions{})
		if err == nil && string(info.Info.Swarm.LocalNodeState) == "inactive" {
			return nil
		}
		if time.Now().After(deadline) {
			state := "unknown"
			if err == nil {
				state = string(info.Info.Swarm.LocalNodeState)
			}
			return fmt.Errorf("reset %s: still %s after leaving (last error: %v)", n.Name, state, err)
		}
		_, _ = d.SwarmLeave(ctx, client.SwarmLeaveOptions{Force: true})
		time.Sleep(200 * time.Millisecond)
	}
}

// BuildAgent builds the swarm-agent binary from the module at root into dir.
func BuildAgent(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "swarm-agent")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build swarm-agent: %v\n%s", err, out)
	}
	return bin, nil
}

// Agent is a `swarm-agent run` started in the background on a node.
type Agent struct {
	Node    *testbed.Node
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	code    int
}

// StartRun starts `swarm-agent run` on node n (configured by the file its boot persisted),
// logging to Dir/<node>.run.log. Stop or Kill it; Close of the cluster does not.
func (c *Cluster) StartRun(ctx context.Context, n *testbed.Node, extra ...string) (*Agent, error) {
	return c.StartRunEnv(ctx, n, nil, extra...)
}

// StartRunEnv is StartRun with extra environment variables (e.g. NOTIFY_SOCKET).
func (c *Cluster) StartRunEnv(ctx context.Context, n *testbed.Node, env []string, extra ...string) (*Agent, error) {
	args := append([]string{"run", "--metrics-listen=127.0.0.1:9477"}, extra...)
	cmd := c.Command(context.WithoutCancel(ctx), n, args...)
	cmd.Env = append(cmd.Env, env...)
	path := filepath.Join(c.Dir, n.Name+".run.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start run on %s: %w", n.Name, err)
	}
	a := &Agent{Node: n, LogPath: path, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		err := cmd.Wait()
		_ = f.Close()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			a.code = ee.ExitCode()
		case err != nil:
			a.code = -1
		}
	}()
	return a, nil
}

// Signal sends sig to the agent.
func (a *Agent) Signal(sig os.Signal) error { return a.cmd.Process.Signal(sig) }

// Done is closed when the agent exited.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Code is the exit code once Done is closed (-1 if killed by a signal).
func (a *Agent) Code() int { <-a.done; return a.code }

// Stop sends SIGTERM and waits up to d, then kills.
func (a *Agent) Stop(d time.Duration) {
	_ = a.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(d):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// Log returns what the agent logged so far.
func (a *Agent) Log() string {
	b, _ := os.ReadFile(a.LogPath)
	return string(b)
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
