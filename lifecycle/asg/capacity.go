package asg

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

var _ lifecycle.Capacity = (*Client)(nil)

// DesiredCapacity returns the desired capacity of Auto Scaling group name.
func (c *Client) DesiredCapacity(ctx context.Context, name string) (int, error) {
	out, err := c.api.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil {
		return 0, fmt.Errorf("describe auto scaling group %s: %w", name, err)
	}
	for _, g := range out.AutoScalingGroups {
		if aws.ToString(g.AutoScalingGroupName) == name {
			return int(aws.ToInt32(g.DesiredCapacity)), nil
		}
	}
	return 0, fmt.Errorf("auto scaling group %s not found", name)
}
