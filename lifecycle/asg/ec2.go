package asg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// EC2API is the part of *ec2.Client that Instances uses, with the SDK's exact signature;
// exposed for testing.
type EC2API interface {
	DescribeInstances(ctx context.Context, params *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

var _ EC2API = (*ec2.Client)(nil)

// describeTimeout bounds one DescribeInstances, retries included, so that a leader's pass
// does not hang on EC2.
const describeTimeout = 20 * time.Second

// Instances tells what EC2 says of an instance: its state and its private addresses. The
// leader checks a node's claim to an instance with it before acting on the instance's
// behalf. It satisfies lifecycle.Instances.
type Instances struct {
	api EC2API
}

var _ lifecycle.Instances = (*Instances)(nil)

// NewInstances returns Instances over api (an *ec2.Client or a fake).
func NewInstances(api EC2API) *Instances { return &Instances{api: api} }

// Instance describes instanceID. An instance EC2 does not know (InvalidInstanceID.NotFound,
// or an id EC2 finds malformed) is Found false, not an error.
func (c *Instances) Instance(ctx context.Context, instanceID string) (lifecycle.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	out, err := c.api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && (ae.ErrorCode() == "InvalidInstanceID.NotFound" || ae.ErrorCode() == "InvalidInstanceID.Malformed") {
			return lifecycle.Instance{ID: instanceID}, nil
		}
		return lifecycle.Instance{}, fmt.Errorf("ec2 describe instance %s: %w", instanceID, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if aws.ToString(in.InstanceId) != instanceID {
				continue
			}
			got := lifecycle.Instance{ID: instanceID, Found: true}
			if in.State != nil {
				got.State = string(in.State.Name)
			}
			add := func(a *string) {
				if s := aws.ToString(a); s != "" && !slices.Contains(got.Addrs, s) {
					got.Addrs = append(got.Addrs, s)
				}
			}
			add(in.PrivateIpAddress)
			for _, ni := range in.NetworkInterfaces {
				add(ni.PrivateIpAddress)
				for _, a := range ni.PrivateIpAddresses {
					add(a.PrivateIpAddress)
				}
				for _, a := range ni.Ipv6Addresses {
					add(a.Ipv6Address)
				}
			}
			return got, nil
		}
	}
	return lifecycle.Instance{ID: instanceID}, nil
}
