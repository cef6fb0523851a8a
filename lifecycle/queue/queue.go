// Package queue consumes termination notices (Auto Scaling lifecycle hook notifications and
// EventBridge events, directly or through SNS) from an SQS queue.
package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/retry"
)

// sqsAPI is the part of *sqs.Client the consumer uses, exposed for testing.
type sqsAPI interface {
	ReceiveMessage(ctx context.Context, params *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, params *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, params *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Defaults and bounds of Options.
const (
	DefaultVisibilityTimeout = 2 * time.Minute
	DefaultMaxReceives       = 5
	DefaultConcurrency       = 10

	waitTimeSeconds = 20 // the longest long poll SQS allows
	maxMessages     = 10 // the most messages one ReceiveMessage returns
	maxVisibility   = 12 * time.Hour
)

// Options configure a Consumer.
type Options struct {
	// QueueURL is the queue to read (required).
	QueueURL string
	// VisibilityTimeout hides a received message from other consumers; while the handler runs
	// the consumer extends it every third of this period. 0 means DefaultVisibilityTimeout;
	// range 10 s .. 12 h.
	VisibilityTimeout time.Duration
	// MaxReceives is how many times a message is received (ApproximateReceiveCount) before a
	// failing message is deleted unhandled. 0 means DefaultMaxReceives.
	MaxReceives int
	// Concurrency is how many messages are handled at once. 0 means DefaultConcurrency.
	Concurrency int
	// RetryBase and RetryMax bound the backoff after SQS errors and before a failed message
	// is redelivered. 0 means 1 s and 5 min.
	RetryBase, RetryMax time.Duration
	// Owns, when set, tells whether a notice belongs to this consumer's cluster, for a queue
	// that several clusters' leaders read (one queue per account). A notice of another
	// cluster is handed back to the queue for its own leader (visible again after
	// ForeignDelay), never handled nor deleted here; one whose cluster cannot be told now
	// comes back after a backoff. Since SQS counts the other leaders' receives too, a
	// consumer with Owns gives up on a failing notice after MaxReceives receives of its own
	// (counted in memory), not SQS's count.
	Owns func(ctx context.Context, n lifecycle.Notice) (bool, error)
	// ForeignDelay is how long another cluster's notice stays hidden from this consumer
	// (jittered by half). 0 means DefaultForeignDelay.
	ForeignDelay time.Duration
	// Health, when set, handles AWS Health scheduled changes of EC2 instances (KindHealth):
	// it returns how long until the event is to be looked at again (0: done, the message is
	// deleted), e.g. until its window is near. An error leaves it for a redelivery after a
	// backoff. Without Health such events are deleted as needing no action.
	Health func(ctx context.Context, ev HealthEvent) (again time.Duration, err error)
	Log    zerolog.Logger
}

// DefaultForeignDelay is how long a consumer hides another cluster's notice from itself.
const DefaultForeignDelay = 5 * time.Second

// Consumer reads termination notices from SQS and hands each to a handler.
type Consumer struct {
	client sqsAPI
	opts   Options
	log    zerolog.Logger

	mu       sync.Mutex
	received map[string]int // message id -> receives seen here, when SQS gives no count
	own      map[string]int // message id -> receives of notices of this cluster (with Owns)
}

// New returns a Consumer reading opts.QueueURL through client (an *sqs.Client).
func New(client sqsAPI, opts Options) (*Consumer, error) {
	if client == nil {
		return nil, errors.New("queue: nil SQS client")
	}
	if opts.QueueURL == "" {
		return nil, errors.New("queue: QueueURL is empty")
	}
	if opts.VisibilityTimeout == 0 {
		opts.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if opts.VisibilityTimeout < 10*time.Second || opts.VisibilityTimeout > maxVisibility {
		return nil, fmt.Errorf("queue: VisibilityTimeout %s is outside 10s..12h", opts.VisibilityTimeout)
	}
	if opts.MaxReceives == 0 {
		opts.MaxReceives = DefaultMaxReceives
	}
	if opts.MaxReceives < 1 || opts.MaxReceives > 1000 {
		return nil, fmt.Errorf("queue: MaxReceives %d is outside 1..1000", opts.MaxReceives)
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Concurrency < 1 || opts.Concurrency > 100 {
		return nil, fmt.Errorf("queue: Concurrency %d is outside 1..100", opts.Concurrency)
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Minute
	}
	if opts.ForeignDelay <= 0 {
		opts.ForeignDelay = DefaultForeignDelay
	}
	if opts.RetryMax < opts.RetryBase {
		return nil, fmt.Errorf("queue: RetryMax %s is below RetryBase %s", opts.RetryMax, opts.RetryBase)
	}
	return &Consumer{
		client:   client,
		opts:     opts,
		log:      opts.Log.With().Str("component", "queue").Logger(),
		received: map[string]int{},
		own:      map[string]int{},
	}, nil
}

// Handler acts on one notice (termination or launch). It must be idempotent: a notice can arrive twice
// (SQS delivers at least once, and a delete can fail after the handler succeeded).
type Handler func(ctx context.Context, n lifecycle.Notice) error

// Run long-polls the queue until ctx is done and hands every termination notice to handle,
// up to Options.Concurrency at a time. A message is deleted after handle succeeds, and at once
// when it is a test notification, needs no action or cannot be parsed. After a handler error
// the message stays in the queue and comes back after a backoff; once it has been received
// Options.MaxReceives times a failing message is deleted and logged at error level. While a
// handler runs the message's visibility is extended. SQS errors are retried with capped,
// jittered backoff, except a queue that does not exist, which ends Run with an error.
// Run returns nil once ctx is done and every handler it started has returned.
func (c *Consumer) Run(ctx context.Context, handle Handler) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, c.opts.Concurrency)
	failures := 0
	for {
		// Wait for at least one free slot, then ask for as many messages as there are.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1
		for free < maxMessages && len(slots) < cap(slots) {
			slots <- struct{}{}
			free++
		}
		msgs, err := c.receive(ctx, free)
		for range free - len(msgs) {
			<-slots
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isQueueMissing(err) {
				return fmt.Errorf("receive from queue %s: %w", c.opts.QueueURL, err)
			}
			failures++
			d := retry.Backoff(failures, c.opts.RetryBase, min(c.opts.RetryMax, time.Minute))
			c.log.Warn().Err(err).Int("attempt", failures).Dur("retry_in", d).Msg("receive from queue failed")
			if !retry.Sleep(ctx, d) {
				return nil
			}
			continue
		}
		failures = 0
		for _, m := range msgs {
			wg.Go(func() {
				defer func() { <-slots }()
				c.process(ctx, m, handle)
			})
		}
	}
}

func (c *Consumer) receive(ctx context.Context, n int) ([]types.Message, error) {
	out, err := c.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(c.opts.QueueURL),
		MaxNumberOfMessages: int32(n),
		WaitTimeSeconds:     waitTimeSeconds,
		VisibilityTimeout:   int32(c.opts.VisibilityTimeout / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{
			types.MessageSystemAttributeNameApproximateReceiveCount,
		},
	})
	if err != nil {
		return nil, err
	}
	return out.Messages, nil
}

// process parses, handles and settles one message.
func (c *Consumer) process(ctx context.Context, m types.Message, handle Handler) {
	id := aws.ToString(m.MessageId)
	count := c.receiveCount(m)
	log := c.log.With().Str("message_id", id).Int("attempt", count).Logger()

	notice, kind, err := Parse([]byte(aws.ToString(m.Body)))
	switch {
	case err != nil:
		log.Error().Err(err).Msg("deleting malformed queue message")
		c.delete(ctx, m, log)
		return
	case kind == KindTest:
		log.Info().Msg("deleting Auto Scaling test notification")
		c.delete(ctx, m, log)
		return
	case kind == KindIgnore, kind == KindHealth && c.opts.Health == nil:
		log.Debug().Msg("deleting queue message that needs no action")
		c.delete(ctx, m, log)
		return
	case kind == KindHealth:
		c.processHealth(ctx, m, count, log)
		return
	}
	log = log.With().Str("instance_id", notice.InstanceID).Str("asg_name", notice.ASG).
		Str("hook_name", notice.Hook).Logger()
	if c.opts.Owns != nil {
		mine, err := c.opts.Owns(ctx, notice)
		switch {
		case err != nil && ctx.Err() == nil:
			d := retry.Backoff(count, max(c.opts.RetryBase, time.Second), c.opts.RetryMax)
			log.Warn().Err(err).Dur("retry_in", d).Msg("cannot tell which cluster the termination notice belongs to; leaving it for redelivery")
			c.changeVisibility(ctx, m, d, log)
			return
		case err != nil:
			return
		case !mine:
			c.forgetOwn(id)
			log.Debug().Msg("termination notice of another cluster: left in the queue for its leader")
			c.changeVisibility(ctx, m, retry.Jitter(c.opts.ForeignDelay), log)
			return
		}
		count = c.ownCount(id)
		log = log.With().Int("attempt", count).Logger()
	}
	if count > c.opts.MaxReceives {
		// A handler that crashed the agent (or never returned) on earlier receives.
		log.Error().Int("max_receives", c.opts.MaxReceives).
			Msg("giving up on a notice received too often; deleting it unhandled")
		c.delete(ctx, m, log)
		return
	}

	err = c.handleWithKeepalive(ctx, m, notice, handle, log)
	switch {
	case err == nil:
		log.Info().Msg("notice handled")
		c.delete(ctx, m, log)
	case ctx.Err() != nil:
		// Shutting down: hand the message to another consumer at once.
		log.Warn().Err(err).Msg("notice interrupted by shutdown; releasing it")
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		c.changeVisibility(rctx, m, 0, log)
	case count >= c.opts.MaxReceives:
		log.Error().Err(err).Int("max_receives", c.opts.MaxReceives).
			Msg("notice failed on its last allowed receive; deleting it unhandled")
		c.delete(ctx, m, log)
	default:
		d := retry.Backoff(count, max(c.opts.RetryBase, time.Second), c.opts.RetryMax)
		log.Warn().Err(err).Dur("retry_in", d).Msg("notice failed; leaving it for redelivery")
		c.changeVisibility(ctx, m, d, log)
	}
}

// processHealth hands an AWS Health event to Options.Health and settles its message: deleted
// when handled, hidden until the handler wants to look again (not counted as a failure: a
// retirement is announced two weeks ahead), or left for a redelivery after a failure.
func (c *Consumer) processHealth(ctx context.Context, m types.Message, count int, log zerolog.Logger) {
	ev, err := ParseHealth([]byte(aws.ToString(m.Body)))
	if err != nil {
		log.Error().Err(err).Msg("deleting malformed AWS Health event")
		c.delete(ctx, m, log)
		return
	}
	log = log.With().Str("reason", ev.Event.Code).Str("value", ev.Event.ID).Strs("instance_ids", ev.Instances).Logger()
	var again time.Duration
	err = c.handleWithKeepalive(ctx, m, lifecycle.Notice{}, func(ctx context.Context, _ lifecycle.Notice) error {
		var herr error
		again, herr = c.opts.Health(ctx, ev)
		return herr
	}, log)
	switch {
	case err == nil && again <= 0:
		log.Info().Msg("AWS Health event handled")
		c.delete(ctx, m, log)
	case err == nil:
		log.Debug().Dur("retry_in", again).Msg("AWS Health event: looking again later")
		c.changeVisibility(ctx, m, again, log)
	case ctx.Err() != nil:
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		c.changeVisibility(rctx, m, 0, log)
	default:
		d := retry.Backoff(count, max(c.opts.RetryBase, time.Second), c.opts.RetryMax)
		log.Warn().Err(err).Dur("retry_in", d).Msg("AWS Health event failed; leaving it for redelivery")
		c.changeVisibility(ctx, m, d, log)
	}
}

func isQueueMissing(err error) bool {
	var missing *types.QueueDoesNotExist
	if errors.As(err, &missing) {
		return true
	}
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "AWS.SimpleQueueService.NonExistentQueue"
}
