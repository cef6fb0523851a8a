package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
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
	svc, err := startService(ctx, c)
	if err != nil {
		return err
	}
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
	if err := printTasks(ctx, c, svc, "after the drain"); err != nil {
		return err
	}
	for _, l := range strings.Split(agent.Log(), "\n") {
		if strings.Contains(l, `"drain finished"`) || strings.Contains(l, "terminating: draining") {
			fmt.Printf("  %s: %s\n", target, l)
		}
	}
	return printSwarm(ctx, c, c.Bed.Nodes[0])
}

// startService runs a replicated service over the nodes so that the drain has tasks to move,
// and prints where they run.
func startService(ctx context.Context, c *localcluster.Cluster) (string, error) {
	const replicas = 6
	step("creating service web: %d replicas of %s, spread over the nodes", replicas, testbed.Image)
	d, err := c.Docker(c.Bed.Nodes[0])
	if err != nil {
		return "", err
	}
	n := uint64(replicas)
	grace := 2 * time.Second
	svc, err := d.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "web"},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{
			Image: testbed.Image, Command: []string{"sleep", "3600"}, StopGracePeriod: &grace,
		}},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}},
	}})
	if err != nil {
		return "", fmt.Errorf("create service web: %w", err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, running, err := localcluster.RunningTasks(ctx, d, svc.ID)
		if err == nil && running == replicas {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("service web: %d of %d tasks running after 90s (%v)", running, replicas, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return svc.ID, printTasks(ctx, c, svc.ID, "before the scale-in")
}

// printTasks prints how many of the service's tasks run on each node.
func printTasks(ctx context.Context, c *localcluster.Cluster, serviceID, when string) error {
	d, err := c.Docker(c.Bed.Nodes[0])
	if err != nil {
		return err
	}
	on, total, err := localcluster.RunningTasks(ctx, d, serviceID)
	if err != nil {
		return fmt.Errorf("list tasks of web: %w", err)
	}
	rows, err := c.Nodes(ctx, c.Bed.Nodes[0])
	if err != nil {
		return err
	}
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("%s=%d", r.Hostname, on[r.ID]))
	}
	fmt.Printf("  web tasks running %s: %d (%s)\n", when, total, strings.Join(parts, " "))
	return nil
}
