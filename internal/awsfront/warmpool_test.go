package awsfront_test

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

// warmPool is DescribeWarmPool's instances and their states, through the SDK.
func (e launchEnv) warmPool(group string) (map[string]string, *asgtypes.WarmPoolConfiguration) {
	e.t.Helper()
	out, err := e.ASG.DescribeWarmPool(e.t.Context(), &autoscaling.DescribeWarmPoolInput{AutoScalingGroupName: aws.String(group)})
	if err != nil {
		e.t.Fatalf("describe warm pool of %s: %v", group, err)
	}
	st := map[string]string{}
	for _, in := range out.Instances {
		st[aws.ToString(in.InstanceId)] = string(in.LifecycleState)
	}
	return st, out.WarmPoolConfiguration
}

// asgState is DescribeAutoScalingInstances' word on one instance ("" when it lists none).
func (e launchEnv) asgState(id string) string {
	e.t.Helper()
	out, err := e.ASG.DescribeAutoScalingInstances(e.t.Context(), &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(out.AutoScalingInstances) != 1 {
		return ""
	}
	return aws.ToString(out.AutoScalingInstances[0].LifecycleState)
}

func (e launchEnv) waitPool(group, id, state string) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, _ := e.warmPool(group)
		if st[id] == state {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("warm pool of %s: %v, want %s in %s", group, st, id, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWarmPool: through the real SDK, a group's warm pool as AWS keeps it (moto keeps only
// its configuration): PutWarmPool is checked as AWS does and launches the pool's instances,
// each held on the launching hook in Warmed:Pending:Wait (notice Origin EC2, Destination
// WarmPool) and then stopped in Warmed:Stopped, listed by DescribeWarmPool and
// DescribeAutoScalingInstances and not by DescribeAutoScalingGroups; IMDS gives them the
// target lifecycle state Warmed:Stopped. A scale-out takes the pool's instance first: started
// again, held in Pending:Wait (Origin WarmPool), IMDS InService. With ReuseOnScaleIn a scale-in
// returns the instance to the pool through the terminating hook (Destination WarmPool, IMDS
// Warmed:Stopped, not terminated), and again through Warmed:Pending:Wait.
func TestWarmPool(t *testing.T) {
	t.Parallel()
	e := newLaunchEnv(t)
	ctx := t.Context()
	q := sqs.NewFromConfig(e.AWS, func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.Front.APIURL()) })
	qo, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("warm-notices")})
	if err != nil {
		t.Fatal(err)
	}
	e.Front.SetNoticeQueue(aws.ToString(qo.QueueUrl))
	notices := func() []map[string]string {
		t.Helper()
		var out []map[string]string
		for {
			m, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: qo.QueueUrl, MaxNumberOfMessages: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Messages) == 0 {
				return out
			}
			for _, msg := range m.Messages {
				var n map[string]string
				if err := json.Unmarshal([]byte(aws.ToString(msg.Body)), &n); err != nil {
					t.Fatal(err)
				}
				out = append(out, n)
				_, _ = q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: qo.QueueUrl, ReceiptHandle: msg.ReceiptHandle})
			}
		}
	}
	const g = "warm"
	e.group(g, 0)
	e.hook(g, "launch", awsfront.TransitionLaunching, 60, "ABANDON")
	e.hook(g, "drain", awsfront.TransitionTerminating, 60, "CONTINUE")

	t.Run("PutWarmPool refuses what AWS refuses", func(t *testing.T) {
		for _, in := range []*autoscaling.PutWarmPoolInput{
			{AutoScalingGroupName: aws.String(g), MinSize: aws.Int32(-1)},
			{AutoScalingGroupName: aws.String(g), MaxGroupPreparedCapacity: aws.Int32(-2)},
			{AutoScalingGroupName: aws.String(g), PoolState: "Frozen"},
			{AutoScalingGroupName: aws.String(g), MinSize: aws.Int32(3), MaxGroupPreparedCapacity: aws.Int32(2)},
		} {
			_, err := e.ASG.PutWarmPool(ctx, in)
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationError" {
				t.Errorf("PutWarmPool %+v: %v, want ValidationError", in, err)
			}
		}
		if st, cfg := e.warmPool(g); len(st) != 0 || cfg != nil {
			t.Fatalf("after refused PutWarmPool calls: pool %v, configuration %+v", st, cfg)
		}
	})

	var id string
	t.Run("launch into the pool: Warmed:Pending:Wait, then Warmed:Stopped", func(t *testing.T) {
		if _, err := e.ASG.PutWarmPool(ctx, &autoscaling.PutWarmPoolInput{AutoScalingGroupName: aws.String(g),
			MaxGroupPreparedCapacity: aws.Int32(1), MinSize: aws.Int32(0), PoolState: asgtypes.WarmPoolStateStopped,
			InstanceReusePolicy: &asgtypes.InstanceReusePolicy{ReuseOnScaleIn: aws.Bool(true)}}); err != nil {
			t.Fatal(err)
		}
		st, cfg := e.warmPool(g)
		if len(st) != 1 || cfg == nil || !aws.ToBool(cfg.InstanceReusePolicy.ReuseOnScaleIn) || cfg.PoolState != asgtypes.WarmPoolStateStopped {
			t.Fatalf("warm pool %v, configuration %+v: want one instance, stopped, reused", st, cfg)
		}
		id = slices.Collect(maps.Keys(st))[0]
		if st[id] != awsfront.StateWarmedPendingWait || e.asgState(id) != awsfront.StateWarmedPendingWait {
			t.Fatalf("pool instance %s: %s (DescribeAutoScalingInstances %q), want Warmed:Pending:Wait", id, st[id], e.asgState(id))
		}
		if _, in := e.states(g)[id]; in {
			t.Fatalf("DescribeAutoScalingGroups lists the warm pool instance %s", id)
		}
		e.Front.AddInstance(imdsfake.Instance{ID: id, PrivateIP: "10.1.0.9", TargetLifecycleState: "InService"})
		if s := e.Front.TargetLifecycleState(id); s != awsfront.StateWarmedStopped {
			t.Fatalf("IMDS target lifecycle state %q, want Warmed:Stopped", s)
		}
		ns := notices()
		if len(ns) != 1 || ns[0]["Origin"] != "EC2" || ns[0]["Destination"] != "WarmPool" || ns[0]["EC2InstanceId"] != id ||
			ns[0]["LifecycleTransition"] != awsfront.TransitionLaunching {
			t.Fatalf("notices %v: want one launch notice from EC2 to WarmPool", ns)
		}
		if err := e.complete(g, "launch", id, "", "CONTINUE"); err != nil {
			t.Fatal(err)
		}
		e.waitPool(g, id, awsfront.StateWarmedStopped)
		if s := e.ec2State(id); s != "stopped" {
			t.Fatalf("EC2 says the warm instance is %s, want stopped", s)
		}
		if err := e.complete(g, "launch", id, "", "CONTINUE"); !noActive(err, id) {
			t.Fatalf("second completion: %v", err)
		}
	})

	t.Run("scale-out takes the pool's instance: Pending:Wait, then InService", func(t *testing.T) {
		if got := e.scaleOut(g, 1); !slices.Equal(got, []string{id}) {
			t.Fatalf("scale-out brought %v, want the pool's %s", got, id)
		}
		if st := e.states(g)[id]; st != awsfront.StatePendingWait {
			t.Fatalf("leaving the pool: %s, want Pending:Wait", st)
		}
		if s := e.ec2State(id); s != "running" {
			t.Fatalf("EC2 says %s, want running (started again)", s)
		}
		if s := e.Front.TargetLifecycleState(id); s != awsfront.StateInService {
			t.Fatalf("IMDS target %q, want InService", s)
		}
		ns := notices()
		if len(ns) != 1 || ns[0]["Origin"] != "WarmPool" || ns[0]["Destination"] != "AutoScalingGroup" {
			t.Fatalf("notices %v: want one launch notice from WarmPool to AutoScalingGroup", ns)
		}
		if st, _ := e.warmPool(g); len(st) != 0 {
			t.Fatalf("pool after the scale-out: %v, want empty (target 1 - 1 = 0)", st)
		}
		if err := e.complete(g, "launch", id, "", "CONTINUE"); err != nil {
			t.Fatal(err)
		}
		e.waitState(g, id, awsfront.StateInService)
	})

	t.Run("ReuseOnScaleIn: back to the pool through both hooks", func(t *testing.T) {
		if _, err := e.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(g), DesiredCapacity: aws.Int32(0)}); err != nil {
			t.Fatal(err)
		}
		e.waitState(g, id, awsfront.StateTerminatingWait)
		if s := e.Front.TargetLifecycleState(id); s != awsfront.StateWarmedStopped {
			t.Fatalf("IMDS target %q while returning, want Warmed:Stopped", s)
		}
		ns := notices()
		if len(ns) != 1 || ns[0]["LifecycleTransition"] != awsfront.TransitionTerminating || ns[0]["Destination"] != "WarmPool" {
			t.Fatalf("notices %v: want one terminating notice to WarmPool", ns)
		}
		if err := e.complete(g, "drain", id, "", "CONTINUE"); err != nil {
			t.Fatal(err)
		}
		e.waitState(g, id, "")
		e.waitPool(g, id, awsfront.StateWarmedPendingWait)
		if s := e.ec2State(id); s != "running" {
			t.Fatalf("EC2 says %s while it returns, want running (not terminated)", s)
		}
		ns = notices()
		if len(ns) != 1 || ns[0]["LifecycleTransition"] != awsfront.TransitionLaunching || ns[0]["Origin"] != "AutoScalingGroup" || ns[0]["Destination"] != "WarmPool" {
			t.Fatalf("notices %v: want one launch notice from AutoScalingGroup to WarmPool", ns)
		}
		if err := e.complete(g, "launch", id, "", "CONTINUE"); err != nil {
			t.Fatal(err)
		}
		e.waitPool(g, id, awsfront.StateWarmedStopped)
		if d := e.desired(g); d != 0 {
			t.Fatalf("desired capacity %d, want 0", d)
		}
		if st, _ := e.warmPool(g); len(st) != 1 {
			t.Fatalf("pool %v: want only the returned instance", st)
		}
	})

	t.Run("an abandoned pool launch is terminated and replaced", func(t *testing.T) {
		if _, err := e.ASG.PutWarmPool(ctx, &autoscaling.PutWarmPoolInput{AutoScalingGroupName: aws.String(g),
			MaxGroupPreparedCapacity: aws.Int32(2), PoolState: asgtypes.WarmPoolStateRunning}); err != nil {
			t.Fatal(err)
		}
		st, _ := e.warmPool(g)
		var fresh string
		for k, s := range st {
			if k != id && s == awsfront.StateWarmedPendingWait {
				fresh = k
			}
		}
		if len(st) != 2 || fresh == "" {
			t.Fatalf("pool %v: want %s and one new instance waiting", st, id)
		}
		if err := e.complete(g, "launch", fresh, "", "ABANDON"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for e.ec2State(fresh) != "terminated" {
			if time.Now().After(deadline) {
				t.Fatalf("abandoned pool instance %s: EC2 %s", fresh, e.ec2State(fresh))
			}
			time.Sleep(50 * time.Millisecond)
		}
		st, _ = e.warmPool(g)
		if _, ok := st[fresh]; ok || len(st) != 2 {
			t.Fatalf("pool after ABANDON: %v, want %s gone and a replacement", st, fresh)
		}
	})
}
