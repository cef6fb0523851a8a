// Package localcluster assembles a local AWS-like cluster for the demo and the end-to-end
// tests: real dockerd engines in network namespaces, moto, the AWS front, a private hosted
// zone and one EC2 identity per engine; and it runs the real swarm-agent binary on them.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
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
	// What started is stopped on a failure. Not through c: `return nil, err` has set the
	// result to nil by the time this runs (a nil Close panicked and took the e2e package down).
	started := c
	defer func() {
		if err != nil {
			started.Close()
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
