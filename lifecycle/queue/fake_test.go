package queue

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// fakeSQS is a stateful in-memory standard queue: visibility timeouts, receive counts, receipt
// handles that change on every receive, long polls, and SQS's parameter bounds. It runs on the
// clock of the synctest bubble it is used in.
type fakeSQS struct {
	sqsAPI //nolint:unused // embedded so that any call the fake does not implement panics

	url string

	mu          sync.Mutex
	seq         int
	msgs        []*fakeMsg
	receiveErrs []error // returned, in order, by the next ReceiveMessage calls
	deleteErrs  []error // returned, in order, by the next DeleteMessage calls
	calls       map[string]int
}

type fakeMsg struct {
	id, body  string
	handle    string // latest receipt handle
	receives  int
	visibleAt time.Time
	deleted   bool
}

func newFakeSQS() *fakeSQS {
	return &fakeSQS{url: "https://sqs.eu-west-1.amazonaws.com/123456789012/notices", calls: map[string]int{}}
}

func (f *fakeSQS) send(body string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	id := fmt.Sprintf("msg-%d", f.seq)
	f.msgs = append(f.msgs, &fakeMsg{id: id, body: body, visibleAt: time.Now()})
	return id
}

func (f *fakeSQS) get(id string) fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.msgs {
		if m.id == id {
			return *m
		}
	}
	panic("no message " + id)
}

func (f *fakeSQS) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeSQS) checkURL(op string, u *string) error {
	f.calls[op]++
	if aws.ToString(u) != f.url {
		return &types.QueueDoesNotExist{Message: aws.String("The specified queue does not exist.")}
	}
	return nil
}

func invalid(msg string) error {
	return &smithy.GenericAPIError{Code: "InvalidParameterValue", Message: msg, Fault: smithy.FaultClient}
}

func (f *fakeSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	if err := f.checkURL("ReceiveMessage", in.QueueUrl); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	if len(f.receiveErrs) > 0 {
		err := f.receiveErrs[0]
		f.receiveErrs = f.receiveErrs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	switch {
	case in.MaxNumberOfMessages < 1 || in.MaxNumberOfMessages > 10:
		return nil, invalid("MaxNumberOfMessages must be between 1 and 10")
	case in.WaitTimeSeconds < 0 || in.WaitTimeSeconds > 20:
		return nil, invalid("WaitTimeSeconds must be between 0 and 20")
	case in.VisibilityTimeout < 0 || in.VisibilityTimeout > 43200:
		return nil, invalid("VisibilityTimeout must be between 0 and 43200")
	}
	wantCount := false
	for _, a := range in.MessageSystemAttributeNames {
		if a == types.MessageSystemAttributeNameApproximateReceiveCount || a == types.MessageSystemAttributeNameAll {
			wantCount = true
		}
	}
	deadline := time.Now().Add(time.Duration(in.WaitTimeSeconds) * time.Second)
	for {
		f.mu.Lock()
		var out []types.Message
		now := time.Now()
		for _, m := range f.msgs {
			if len(out) == int(in.MaxNumberOfMessages) {
				break
			}
			if m.deleted || now.Before(m.visibleAt) {
				continue
			}
			m.receives++
			m.handle = fmt.Sprintf("%s-rh-%d", m.id, m.receives)
			m.visibleAt = now.Add(time.Duration(in.VisibilityTimeout) * time.Second)
			msg := types.Message{MessageId: aws.String(m.id), Body: aws.String(m.body), ReceiptHandle: aws.String(m.handle)}
			if wantCount {
				msg.Attributes = map[string]string{"ApproximateReceiveCount": strconv.Itoa(m.receives)}
			}
			out = append(out, msg)
		}
		f.mu.Unlock()
		if len(out) > 0 || !time.Now().Before(deadline) {
			return &sqs.ReceiveMessageOutput{Messages: out}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lookup finds the message of a receipt handle: current is false for an older handle.
func (f *fakeSQS) lookup(handle string) (m *fakeMsg, current bool) {
	for _, m := range f.msgs {
		if m.handle == handle {
			return m, true
		}
		for i := 1; i < m.receives; i++ {
			if handle == fmt.Sprintf("%s-rh-%d", m.id, i) {
				return m, false
			}
		}
	}
	return nil, false
}

func (f *fakeSQS) DeleteMessage(_ context.Context, in *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkURL("DeleteMessage", in.QueueUrl); err != nil {
		return nil, err
	}
	if len(f.deleteErrs) > 0 {
		err := f.deleteErrs[0]
		f.deleteErrs = f.deleteErrs[1:]
		return nil, err
	}
	m, current := f.lookup(aws.ToString(in.ReceiptHandle))
	switch {
	case m == nil:
		return nil, &types.ReceiptHandleIsInvalid{Message: aws.String("The input receipt handle is invalid.")}
	case current:
		m.deleted = true
	}
	// AWS: an older receipt handle succeeds without deleting the message.
	return &sqs.DeleteMessageOutput{}, nil
}

func (f *fakeSQS) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkURL("ChangeMessageVisibility", in.QueueUrl); err != nil {
		return nil, err
	}
	if in.VisibilityTimeout < 0 || in.VisibilityTimeout > 43200 {
		return nil, invalid("VisibilityTimeout must be between 0 and 43200")
	}
	m, current := f.lookup(aws.ToString(in.ReceiptHandle))
	if m == nil {
		return nil, &types.ReceiptHandleIsInvalid{Message: aws.String("The input receipt handle is invalid.")}
	}
	if !current || m.deleted || !time.Now().Before(m.visibleAt) {
		return nil, &types.MessageNotInflight{Message: aws.String("The message referred to isn't in flight.")}
	}
	m.visibleAt = time.Now().Add(time.Duration(in.VisibilityTimeout) * time.Second)
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}
