package awsfront_test

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
)

// TestScaleInHonoursProtection: through the real SDK, a scale-in (SetDesiredCapacity) of a
// group with a terminating hook never picks an instance protected from scale-in
// (SetInstanceProtection); the one it picks waits in Terminating:Wait on the hook; with only
// protected instances left it picks none; TerminateInstanceInAutoScalingGroup on a protected
// instance still terminates it, as on AWS.
func TestScaleInHonoursProtection(t *testing.T) {
	t.Parallel()
	e := fronttest.Start(t, nil)
	ctx := t.Context()
	const group = "managers"
	if _, err := e.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("lt"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Medium},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group),
		LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt"), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(10), DesiredCapacity: aws.Int32(3),
		AvailabilityZones: []string{"us-east-1a", "us-east-1b", "us-east-1c"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String("drain"),
		LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"), HeartbeatTimeout: aws.Int32(600),
		DefaultResult: aws.String("ABANDON"),
	}); err != nil {
		t.Fatal(err)
	}
	states := func() (map[string]string, map[string]bool) {
		t.Helper()
		out, err := e.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
		if err != nil || len(out.AutoScalingGroups) != 1 {
			t.Fatalf("describe group: %v", err)
		}
		st, prot := map[string]string{}, map[string]bool{}
		for _, in := range out.AutoScalingGroups[0].Instances {
			st[aws.ToString(in.InstanceId)] = string(in.LifecycleState)
			prot[aws.ToString(in.InstanceId)] = aws.ToBool(in.ProtectedFromScaleIn)
		}
		return st, prot
	}
	st, _ := states()
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range st {
			if !yield(id) {
				return
			}
		}
	})
	if len(ids) != 3 {
		t.Fatalf("group has %d instances, want 3", len(ids))
	}
	// Protect the two lowest ids: the unprotected one is the last the tie-break would pick.
	protected, free := ids[:2], ids[2]
	if _, err := e.ASG.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
		AutoScalingGroupName: aws.String(group), InstanceIds: protected, ProtectedFromScaleIn: aws.Bool(true)}); err != nil {
		t.Fatalf("SetInstanceProtection: %v", err)
	}
	if _, prot := states(); !prot[protected[0]] || !prot[protected[1]] || prot[free] {
		t.Fatalf("ProtectedFromScaleIn after SetInstanceProtection = %v, want %v protected and %s not", prot, protected, free)
	}
	scaleTo := func(n int32) {
		t.Helper()
		if _, err := e.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
			AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(n)}); err != nil {
			t.Fatalf("SetDesiredCapacity %d: %v", n, err)
		}
	}
	scaleTo(2)
	if a, ok := e.Front.LifecycleAction(free); !ok || a.State != awsfront.StateTerminatingWait {
		t.Fatalf("the unprotected instance after a scale-in to 2: action %+v, %v; want Terminating:Wait", a, ok)
	}
	st, _ = states()
	for _, id := range protected {
		if _, held := e.Front.LifecycleAction(id); held || st[id] != "InService" {
			t.Errorf("protected %s after a scale-in: %s (held %v), want InService", id, st[id], held)
		}
	}
	if st[free] != awsfront.StateTerminatingWait {
		t.Errorf("DescribeAutoScalingGroups shows the picked instance %s, want Terminating:Wait", st[free])
	}
	// Only protected instances are in service: a further scale-in picks none.
	scaleTo(1)
	st, _ = states()
	for _, id := range protected {
		if _, held := e.Front.LifecycleAction(id); held || st[id] != "InService" {
			t.Errorf("protected %s after a scale-in with only protected instances left: %s (held %v), want InService", id, st[id], held)
		}
	}
	// Protection guards against scale-in only: terminating the instance by name works.
	if _, err := e.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(protected[0]), ShouldDecrementDesiredCapacity: aws.Bool(false)}); err != nil {
		t.Fatalf("TerminateInstanceInAutoScalingGroup on a protected instance: %v", err)
	}
	if a, ok := e.Front.LifecycleAction(protected[0]); !ok || a.State != awsfront.StateTerminatingWait {
		t.Fatalf("protected instance terminated by name: action %+v, %v; want Terminating:Wait", a, ok)
	}
}
