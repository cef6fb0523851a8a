package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
)

// scaleIn starts `swarm-agent run` on every node, scales the last worker in through the Auto
// Scaling API (the front holds the instance in Terminating:Wait behind the group's hook and
// instance metadata says Terminated) and shows its agent drain it: the lifecycle action
// completed, the node gone from the swarm.
func scaleIn(ctx context.Context, c *localcluster.Cluster, roles map[string]string) error {
	step("starting `swarm-agent run` on every node (watches instance metadata; managers serve the control API)")
	var agents []*localcluster.Agent
	defer func() {
		for _, a := range agents {
			a.Stop(10 * time.Second)
		}
	}()
	for _, n := range c.Bed.Nodes {
		a, err := c.StartRun(ctx, n, "--watch-interval=500ms", "--heartbeat-interval=2s")
		if err != nil {
			return err
		}
		agents = append(agents, a)
	}
	var target string
	for _, n := range c.Bed.Nodes {
		if roles[n.Name] == "worker" {
			target = n.Name
		}
	}
	if target == "" {
		return nil
	}
	var id string
	var agent *localcluster.Agent
	for i, n := range c.Bed.Nodes {
		if n.Name == target {
			id, agent = c.InstanceID(n), agents[i]
		}
	}
	time.Sleep(3 * time.Second) // let the agents settle (boot reconcile, control API up)
	step("scaling in %s (%s): TerminateInstanceInAutoScalingGroup, as an operator or a scale-in policy does", target, id)
	out, err := c.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true)})
	if err != nil {
		return fmt.Errorf("scale in %s: %w", id, err)
	}
	if out.Activity != nil {
		fmt.Printf("  activity: %s (%s)\n", aws.ToString(out.Activity.Description), out.Activity.StatusCode)
	}
	start := time.Now()
	a, _ := c.Front.LifecycleAction(id)
	fmt.Printf("  %s: %s behind hook %s (heartbeat timeout %s); instance metadata says Terminated\n", id, a.State, a.Hook, a.HeartbeatTimeout)
	for {
		a, _ = c.Front.LifecycleAction(id)
		if a.Result != "" {
			break
		}
		if time.Since(start) > 3*time.Minute {
			return fmt.Errorf("lifecycle action of %s not completed after 3 minutes; agent log:\n%s", id, tail(agent.Log(), 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	fmt.Printf("  completed %s after %s: result %s, %d heartbeat(s), %d CompleteLifecycleAction call(s)\n",
		id, time.Since(start).Round(time.Millisecond), a.Result, a.Heartbeats, a.Completions)
	for _, l := range strings.Split(agent.Log(), "\n") {
		if strings.Contains(l, `"drain finished"`) || strings.Contains(l, "terminating: draining") {
			fmt.Printf("  %s: %s\n", target, l)
		}
	}
	return printSwarm(ctx, c, c.Bed.Nodes[0])
}
