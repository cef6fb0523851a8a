package asg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// fakeEC2 answers DescribeInstances from a map of instances, as EC2 does: an unknown id is
// InvalidInstanceID.NotFound. It embeds EC2API so that an unexpected call panics.
type fakeEC2 struct {
	EC2API
	instances map[string]ec2types.Instance
	err       error
}

func (f *fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []ec2types.Instance
	for _, id := range in.InstanceIds {
		i, ok := f.instances[id]
		if !ok {
			return nil, &smithy.GenericAPIError{Code: "InvalidInstanceID.NotFound", Message: "The instance ID '" + id + "' does not exist"}
		}
		out = append(out, i)
	}
	return &ec2.DescribeInstancesOutput{Reservations: []ec2types.Reservation{{Instances: out}}}, nil
}

func TestInstances(t *testing.T) {
	f := &fakeEC2{instances: map[string]ec2types.Instance{
		"i-1": {InstanceId: aws.String("i-1"), State: &ec2types.InstanceState{Name: ec2types.InstanceStateNameRunning},
			PrivateIpAddress: aws.String("10.0.0.5"),
			NetworkInterfaces: []ec2types.InstanceNetworkInterface{
				{PrivateIpAddress: aws.String("10.0.0.5"), PrivateIpAddresses: []ec2types.InstancePrivateIpAddress{
					{PrivateIpAddress: aws.String("10.0.0.5")}, {PrivateIpAddress: aws.String("10.0.0.6")}},
					Ipv6Addresses: []ec2types.InstanceIpv6Address{{Ipv6Address: aws.String("2001:db8::5")}}},
				{PrivateIpAddress: aws.String("10.0.1.7")}, // a second interface
			}},
		"i-2": {InstanceId: aws.String("i-2"), State: &ec2types.InstanceState{Name: ec2types.InstanceStateNameTerminated}},
		"i-3": {InstanceId: aws.String("i-3"), State: &ec2types.InstanceState{Name: ec2types.InstanceStateNameStopped},
			PrivateIpAddress: aws.String("10.0.0.9")},
	}}
	c := NewInstances(f)
	tests := []struct {
		id        string
		wantFound bool
		wantState string
		wantAddrs []string
		wantGone  bool
	}{
		{id: "i-1", wantFound: true, wantState: "running", wantAddrs: []string{"10.0.0.5", "10.0.0.6", "2001:db8::5", "10.0.1.7"}},
		{id: "i-2", wantFound: true, wantState: "terminated", wantGone: true},
		{id: "i-3", wantFound: true, wantState: "stopped", wantAddrs: []string{"10.0.0.9"}}, // stopped is not gone
		{id: "i-404", wantGone: true},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := c.Instance(t.Context(), tt.id)
			if err != nil {
				t.Fatalf("Instance: %v", err)
			}
			if got.ID != tt.id || got.Found != tt.wantFound || got.State != tt.wantState || !slices.Equal(got.Addrs, tt.wantAddrs) {
				t.Errorf("Instance = %+v, want found %t, state %q, addrs %v", got, tt.wantFound, tt.wantState, tt.wantAddrs)
			}
			if got.Gone() != tt.wantGone {
				t.Errorf("Gone = %t, want %t", got.Gone(), tt.wantGone)
			}
		})
	}
	t.Run("EC2 fails", func(t *testing.T) {
		f := &fakeEC2{err: &smithy.GenericAPIError{Code: "RequestLimitExceeded", Message: "Request limit exceeded."}}
		if got, err := NewInstances(f).Instance(t.Context(), "i-1"); err == nil || got.Found {
			t.Errorf("Instance = %+v, %v; want an error", got, err)
		}
	})
}

// TestInstancesAgainstFront: the real SDK against moto behind the front: a running
// instance's primary and secondary private addresses (a node may advertise either), then the
// instance terminated; an unknown id is not found.
func TestInstancesAgainstFront(t *testing.T) {
	e := fronttest.Start(t, nil)
	ctx := t.Context()
	id := frontGroup(t, e, "nodes", 1, 0)[0]
	c := NewInstances(e.EC2)
	in, err := c.Instance(ctx, id)
	if err != nil || !in.Found || in.State != "running" || len(in.Addrs) == 0 {
		t.Fatalf("Instance = %+v, %v; want running with an address", in, err)
	}
	out, err := e.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	eni := out.Reservations[0].Instances[0].NetworkInterfaces[0].NetworkInterfaceId
	if _, err := e.EC2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
		NetworkInterfaceId: eni, PrivateIpAddresses: []string{"10.99.7.11"}}); err != nil {
		t.Fatal(err)
	}
	in, err = c.Instance(ctx, id)
	if err != nil || !in.HasAddr("10.99.7.11") || in.Gone() {
		t.Fatalf("after assigning a secondary address: %+v, %v; want it among the addresses", in, err)
	}
	node := swarm.Node{ID: "n1", Addr: "10.99.7.11", Labels: map[string]string{swarm.LabelInstanceID: id}}
	if err := lifecycle.VerifyNode(ctx, c, node); err != nil {
		t.Fatalf("VerifyNode of a node at the secondary address: %v", err)
	}
	node.Addr = "10.99.7.12"
	if err := lifecycle.VerifyNode(ctx, c, node); !errors.Is(err, lifecycle.ErrIdentity) {
		t.Fatalf("VerifyNode of a node at another address: %v, want ErrIdentity", err)
	}
	if _, err := e.EC2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	if in, err = c.Instance(ctx, id); err != nil || !in.Gone() {
		t.Fatalf("after TerminateInstances: %+v, %v; want gone", in, err)
	}
	if in, err = c.Instance(ctx, "i-0123456789abcdef0"); err != nil || in.Found {
		t.Fatalf("unknown instance: %+v, %v; want not found, no error", in, err)
	}
}

// TestStatusesAgainstFront: the real SDK against moto behind the front, which shows
// scheduled events and failing status checks over moto's answer (moto passes every running
// instance's checks and knows no events): an impaired instance, a scheduled reboot, the
// reboot completed, a stopped instance, and an unknown id in the batch (EC2 refuses the whole
// call: the others are asked one by one).
func TestStatusesAgainstFront(t *testing.T) {
	e := fronttest.Start(t, nil)
	ctx := t.Context()
	ids := frontGroup(t, e, "nodes", 3, 0)
	for i, id := range ids {
		e.Front.AddInstance(imdsfake.Instance{ID: id, PrivateIP: fmt.Sprintf("10.99.8.%d", i+1), AZ: "us-east-1a"})
	}
	c := NewInstances(e.EC2)
	got, err := c.Statuses(ctx, ids)
	if err != nil || len(got) != 3 {
		t.Fatalf("Statuses = %+v, %v", got, err)
	}
	for _, id := range ids {
		if st := got[id]; !st.Healthy() || st.Impaired() || st.State != "running" || len(st.Events) != 0 {
			t.Fatalf("%s: %+v, want running, healthy, no events", id, st)
		}
	}
	if err := e.Front.SetStatusChecks(ids[0], awsfront.StatusChecks{System: "impaired", Instance: "ok"}); err != nil {
		t.Fatal(err)
	}
	nb := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	ev, err := e.Front.ScheduleEvent(ids[1], imdsfake.Event{Code: "system-reboot", Description: "scheduled reboot", NotBefore: nb, NotAfter: nb.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.EC2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{ids[2]}}); err != nil {
		t.Fatal(err)
	}
	got, err = c.Statuses(ctx, append([]string{"i-0123456789abcdef0"}, ids...))
	if err != nil || len(got) != 3 {
		t.Fatalf("Statuses with an unknown id = %+v, %v; want the three known", got, err)
	}
	if st := got[ids[0]]; !st.Impaired() || st.System != "impaired" || st.Instance != "ok" {
		t.Errorf("impaired instance: %+v", st)
	}
	want := lifecycle.ScheduledEvent{ID: ev.ID, Code: "system-reboot", Description: "scheduled reboot", State: "active", NotBefore: nb, NotAfter: nb.Add(2 * time.Hour)}
	if st := got[ids[1]]; !st.Healthy() || len(st.Events) != 1 || st.Events[0] != want {
		t.Errorf("instance with a reboot: %+v\nwant event %+v", st, want)
	}
	if st := got[ids[2]]; st.State != "stopped" || st.Healthy() || st.Impaired() {
		t.Errorf("stopped instance: %+v, want stopped, checks not applicable", st)
	}
	if err := e.Front.EndEvent(ids[1], ev.ID, imdsfake.EventCompleted); err != nil {
		t.Fatal(err)
	}
	if err := e.Front.SetStatusChecks(ids[0], awsfront.StatusChecks{System: "ok", Instance: "ok"}); err != nil {
		t.Fatal(err)
	}
	got, err = c.Statuses(ctx, ids[:2])
	if err != nil {
		t.Fatal(err)
	}
	if st := got[ids[0]]; !st.Healthy() {
		t.Errorf("after the checks pass again: %+v", st)
	}
	if st := got[ids[1]]; len(st.Events) != 1 || st.Events[0].State != "completed" || st.Events[0].Description != "[Completed] scheduled reboot" {
		t.Errorf("after the reboot: %+v, want the event completed", st.Events)
	}
}
