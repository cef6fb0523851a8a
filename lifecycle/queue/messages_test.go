package queue

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"
)

// TestDeleteRetryWaitEndsWithContext: a delete that SQS refuses twice is retried with backoff
// while the consumer runs; shutting down (ctx done), the attempts still run, to settle what was
// handled, but without the waits between them.
func TestDeleteRetryWaitEndsWithContext(t *testing.T) {
	throttled := &smithy.GenericAPIError{Code: "RequestThrottled", Message: "Rate exceeded"}
	tests := []struct {
		name      string
		cancelled bool
		minWait   time.Duration // the two waits, each at least half of Exp (jitter)
		maxWait   time.Duration
	}{
		{name: "running", minWait: 5*time.Second + 5*time.Second, maxWait: 20 * time.Second},
		{name: "shutting down", cancelled: true, minWait: 0, maxWait: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newFakeSQS()
				id := q.send(testNotice)
				c, err := New(q, Options{QueueURL: q.url, RetryBase: 10 * time.Second, Log: zerolog.Nop()})
				if err != nil {
					t.Fatalf("New() error = %v", err)
				}
				msgs, err := c.receive(t.Context(), 1)
				if err != nil || len(msgs) != 1 {
					t.Fatalf("receive() = %d messages, %v; want 1", len(msgs), err)
				}
				q.mu.Lock()
				q.deleteErrs = []error{throttled, throttled}
				q.mu.Unlock()
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tt.cancelled {
					cancel()
				}
				start := time.Now()
				c.delete(ctx, msgs[0], zerolog.Nop())
				if waited := time.Since(start); waited < tt.minWait || waited > tt.maxWait {
					t.Errorf("delete took %s, want %s..%s", waited, tt.minWait, tt.maxWait)
				}
				if n := q.count("DeleteMessage"); n != 3 {
					t.Errorf("DeleteMessage called %d times, want 3", n)
				}
				if !q.get(id).deleted {
					t.Errorf("message not deleted")
				}
			})
		})
	}
}
