package queue

// The consumer's handling of one message: keeping it invisible while it is handled, changing
// its visibility, deleting it, and counting its receives.

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/retry"
)

// handleWithKeepalive runs handle while extending the message's visibility every third of
// the visibility timeout, so that no other consumer receives it meanwhile.
func (c *Consumer) handleWithKeepalive(ctx context.Context, m types.Message, n lifecycle.Notice, handle Handler, log zerolog.Logger) error {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(c.opts.VisibilityTimeout / 3)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				c.changeVisibility(hctx, m, c.opts.VisibilityTimeout, log)
			}
		}
	})
	err := handle(hctx, n)
	cancel()
	wg.Wait()
	return err
}

func (c *Consumer) changeVisibility(ctx context.Context, m types.Message, d time.Duration, log zerolog.Logger) {
	_, err := c.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.opts.QueueURL),
		ReceiptHandle:     m.ReceiptHandle,
		VisibilityTimeout: int32((min(d, maxVisibility) + time.Second - 1) / time.Second), // round up
	})
	if err != nil && ctx.Err() == nil {
		log.Warn().Err(err).Msg("change visibility of queue message failed")
	}
}

// delete deletes m, retrying a few times; a message that cannot be deleted comes back later
// and is handled again. The attempts run even while shutting down (ctx done), to settle what
// was handled; only the waits between them end with ctx.
func (c *Consumer) delete(ctx context.Context, m types.Message, log zerolog.Logger) {
	settle := context.WithoutCancel(ctx)
	const attempts = 3
	var err error
	for i := 1; i <= attempts; i++ {
		actx, cancel := context.WithTimeout(settle, 10*time.Second)
		_, err = c.client.DeleteMessage(actx, &sqs.DeleteMessageInput{
			QueueUrl:      aws.String(c.opts.QueueURL),
			ReceiptHandle: m.ReceiptHandle,
		})
		cancel()
		if err == nil {
			c.forget(aws.ToString(m.MessageId))
			return
		}
		if i < attempts {
			retry.Sleep(ctx, retry.Backoff(i, c.opts.RetryBase, 10*time.Second))
		}
	}
	log.Error().Err(err).Msg("delete queue message failed; it will be received again")
}

// receiveCount is SQS's ApproximateReceiveCount, or this consumer's own count when SQS gave
// none, so that a failing message is given up on either way.
func (c *Consumer) receiveCount(m types.Message) int {
	id := aws.ToString(m.MessageId)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.received[id]++
	n := c.received[id]
	if v, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil && v > n {
		n = v
	}
	if len(c.received) > 10000 {
		// Bound the fallback map; SQS's own count is the one that matters.
		clear(c.received)
	}
	return n
}

func (c *Consumer) forget(id string) {
	c.mu.Lock()
	delete(c.received, id)
	delete(c.own, id)
	c.mu.Unlock()
}

// ownCount counts one more receive of a notice of this cluster, and returns the count.
func (c *Consumer) ownCount(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.own) > 10000 {
		clear(c.own)
	}
	c.own[id]++
	return c.own[id]
}

func (c *Consumer) forgetOwn(id string) {
	c.mu.Lock()
	delete(c.own, id)
	c.mu.Unlock()
}
