package localcluster

// The cluster's Auto Scaling groups in moto and their instances: groups with hooks, launches,
// replacements, adopted instances and their addresses.

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

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
