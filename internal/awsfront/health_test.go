package awsfront_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/queue"
)

// TestHealthEvents: with a health queue set, a scheduled event the front gives an instance
// reaches the queue (read through the real SDK) as the AWS Health event of EC2's scheduled
// change, which the leader's parser reads back as the event instance metadata shows: upcoming
// while ahead, closed once ended. Without a health queue nothing is sent.
func TestHealthEvents(t *testing.T) {
	e := fronttest.Start(t, nil)
	ctx := t.Context()
	const id = "i-0feed000000000001"
	e.Front.AddInstance(imdsfake.Instance{ID: id, PrivateIP: "127.0.0.1", AZ: "us-east-1a", InstanceType: "t3.micro"})
	q := sqs.NewFromConfig(e.AWS, func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.Front.APIURL()) })
	qo, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("health")})
	if err != nil {
		t.Fatal(err)
	}
	receive := func() []string {
		t.Helper()
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: qo.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		var bodies []string
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: qo.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
		return bodies
	}
	start := time.Now().Add(3 * time.Hour).Truncate(time.Second).UTC()
	if _, err := e.Front.ScheduleEvent(id, imdsfake.Event{Code: "instance-stop", NotBefore: start}); err != nil {
		t.Fatal(err)
	}
	if got := receive(); len(got) != 0 {
		t.Fatalf("%d messages without a health queue", len(got))
	}
	e.Front.SetHealthQueue(aws.ToString(qo.QueueUrl))
	ev, err := e.Front.ScheduleEvent(id, imdsfake.Event{Code: "system-reboot", Description: "scheduled reboot", NotBefore: start, NotAfter: start.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	got := receive()
	if len(got) != 1 {
		t.Fatalf("%d messages, want the health event", len(got))
	}
	h, err := queue.ParseHealth([]byte(got[0]))
	if err != nil {
		t.Fatalf("the leader cannot read the front's health event: %v\n%s", err, got[0])
	}
	if h.TypeCode != "AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED" || h.Event.Code != lifecycle.EventSystemReboot || h.Event.State != lifecycle.EventActive ||
		!h.Event.NotBefore.Equal(start) || !h.Event.NotAfter.Equal(start.Add(2*time.Hour)) || len(h.Instances) != 1 || h.Instances[0] != id || h.Event.Description != "scheduled reboot" {
		t.Fatalf("health event %+v, want the system reboot of %s from %s", h, id, start)
	}
	if err := e.Front.EndEvent(id, ev.ID, imdsfake.EventCanceled); err != nil {
		t.Fatal(err)
	}
	got = receive()
	if len(got) != 1 {
		t.Fatalf("%d messages after the event ended, want its closing", len(got))
	}
	if h, err := queue.ParseHealth([]byte(got[0])); err != nil || h.Event.State != lifecycle.EventCompleted {
		t.Fatalf("closing event %+v %v, want it closed", h, err)
	}
}
