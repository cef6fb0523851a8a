package asg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// EC2API is the part of *ec2.Client that Instances uses, with the SDK's exact signature;
// exposed for testing.
type EC2API interface {
	DescribeInstances(ctx context.Context, params *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
	DescribeInstanceStatus(ctx context.Context, params *ec2.DescribeInstanceStatusInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstanceStatusOutput, error)
}

var _ EC2API = (*ec2.Client)(nil)

// describeTimeout bounds one DescribeInstances, retries included, so that a leader's pass
// does not hang on EC2.
const describeTimeout = 20 * time.Second

// Instances tells what EC2 says of an instance: its state and its private addresses, and its
// status checks and scheduled events. The leader checks a node's claim to an instance with it
// before acting on the instance's behalf. It satisfies lifecycle.Instances and
// lifecycle.Statuses.
type Instances struct {
	api EC2API
}

var (
	_ lifecycle.Instances = (*Instances)(nil)
	_ lifecycle.Statuses  = (*Instances)(nil)
)

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

// InstanceTags returns the instance's tags (Auto Scaling copies a group's tags that propagate
// at launch onto its instances); found is false when EC2 does not know the instance.
func (c *Instances) InstanceTags(ctx context.Context, instanceID string) (tags map[string]string, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	out, err := c.api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	if notFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("ec2 describe instance %s: %w", instanceID, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if aws.ToString(in.InstanceId) != instanceID {
				continue
			}
			tags = map[string]string{}
			for _, t := range in.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			return tags, true, nil
		}
	}
	return nil, false, nil
}

// statusBatch is the most instance ids one DescribeInstanceStatus takes.
const statusBatch = 100

// Statuses describes the instances' status checks and scheduled events
// (DescribeInstanceStatus, IncludeAllInstances: a stopped instance's checks are
// not-applicable). Instances EC2 does not know are absent from the map: a batch that EC2
// refuses for an unknown id is asked again one instance at a time.
func (c *Instances) Statuses(ctx context.Context, instanceIDs []string) (map[string]lifecycle.InstanceStatus, error) {
	out := make(map[string]lifecycle.InstanceStatus, len(instanceIDs))
	for batch := range slices.Chunk(instanceIDs, statusBatch) {
		err := c.statuses(ctx, batch, out)
		if notFound(err) && len(batch) > 1 {
			err = nil
			for _, id := range batch {
				if e := c.statuses(ctx, []string{id}, out); e != nil && !notFound(e) {
					err = e
				}
			}
		}
		if notFound(err) {
			err = nil
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *Instances) statuses(ctx context.Context, ids []string, out map[string]lifecycle.InstanceStatus) error {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	p := ec2.NewDescribeInstanceStatusPaginator(c.api, &ec2.DescribeInstanceStatusInput{InstanceIds: ids, IncludeAllInstances: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("ec2 describe instance status %s: %w", strings.Join(ids, ","), err)
		}
		for _, s := range page.InstanceStatuses {
			st := lifecycle.InstanceStatus{InstanceID: aws.ToString(s.InstanceId)}
			if s.InstanceState != nil {
				st.State = string(s.InstanceState.Name)
			}
			if s.SystemStatus != nil {
				st.System = string(s.SystemStatus.Status)
			}
			if s.InstanceStatus != nil {
				st.Instance = string(s.InstanceStatus.Status)
			}
			for _, e := range s.Events {
				st.Events = append(st.Events, statusEvent(e))
			}
			out[st.InstanceID] = st
		}
	}
	return nil
}

// statusEvent is a DescribeInstanceStatus event as a lifecycle.ScheduledEvent: EC2 tells an
// ended event by its description, "[Completed] ..." or "[Canceled] ...".
func statusEvent(e ec2types.InstanceStatusEvent) lifecycle.ScheduledEvent {
	ev := lifecycle.ScheduledEvent{ID: aws.ToString(e.InstanceEventId), Code: string(e.Code),
		Description: aws.ToString(e.Description), State: lifecycle.EventActive}
	switch {
	case strings.HasPrefix(ev.Description, "[Completed]"):
		ev.State = lifecycle.EventCompleted
	case strings.HasPrefix(ev.Description, "[Canceled]"):
		ev.State = lifecycle.EventCanceled
	}
	if e.NotBefore != nil {
		ev.NotBefore = e.NotBefore.UTC()
	}
	if e.NotAfter != nil {
		ev.NotAfter = e.NotAfter.UTC()
	}
	if e.NotBeforeDeadline != nil {
		ev.NotBeforeDeadline = e.NotBeforeDeadline.UTC()
	}
	return ev
}

// notFound reports EC2's refusal of an unknown or malformed instance id.
func notFound(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "InvalidInstanceID.NotFound" || ae.ErrorCode() == "InvalidInstanceID.Malformed")
}
