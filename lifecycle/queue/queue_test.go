package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// recorder is a handler whose outcome per call is scripted.
type recorder struct {
	mu       sync.Mutex
	calls    []lifecycle.Notice
	times    []time.Time
	inFlight int
	maxIn    int
	// fail returns the error for the n-th call (1-based); nil means success.
	fail func(n int) error
	// hold is how long each call takes.
	hold time.Duration
}

func (r *recorder) handle(ctx context.Context, n lifecycle.Notice) error {
	r.mu.Lock()
	r.calls = append(r.calls, n)
	r.times = append(r.times, time.Now())
	call := len(r.calls)
	r.inFlight++
	r.maxIn = max(r.maxIn, r.inFlight)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
	}()
	if r.hold > 0 {
		select {
		case <-time.After(r.hold):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.fail != nil {
		return r.fail(call)
	}
	return nil
}

func (r *recorder) snapshot() (calls []lifecycle.Notice, times []time.Time, maxIn int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]lifecycle.Notice(nil), r.calls...), append([]time.Time(nil), r.times...), r.maxIn
}

// start runs a consumer on q in the current synctest bubble; stop cancels it and returns Run's error.
func start(t *testing.T, q *fakeSQS, opts Options, h Handler) (stop func() error) {
	t.Helper()
	opts.QueueURL = q.url
	opts.Log = zerolog.Nop()
	c, err := New(q, opts)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	return func() error {
		cancel()
		return <-done
	}
}

func TestConsumerSettlesEachKind(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		wantHandled int
	}{
		{name: "termination notice", body: hookTerminating, wantHandled: 1},
		{name: "eventbridge via SNS", body: sns(eventTerminate), wantHandled: 1},
		{name: "test notification", body: testNotice, wantHandled: 0},
		{name: "launching", body: hookLaunching, wantHandled: 1},
		{name: "eventbridge launching into the warm pool", body: eventWarmLaunch, wantHandled: 1},
		{name: "malformed", body: `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":"bogus"}`, wantHandled: 0},
		{name: "not json", body: `hello`, wantHandled: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newFakeSQS()
				id := q.send(tt.body)
				var r recorder
				stop := start(t, q, Options{}, r.handle)
				time.Sleep(time.Hour)
				if err := stop(); err != nil {
					t.Fatalf("Run() error = %v", err)
				}
				calls, _, _ := r.snapshot()
				if len(calls) != tt.wantHandled {
					t.Errorf("handler called %d times, want %d", len(calls), tt.wantHandled)
				}
				m := q.get(id)
				if !m.deleted {
					t.Errorf("message not deleted")
				}
				if m.receives != 1 {
					t.Errorf("message received %d times, want 1", m.receives)
				}
			})
		})
	}
}

func TestConsumerRetriesFailedNotice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeSQS()
		id := q.send(hookTerminating)
		r := recorder{fail: func(n int) error {
			if n < 3 {
				return errors.New("manager unreachable")
			}
			return nil
		}}
		stop := start(t, q, Options{VisibilityTimeout: time.Minute, RetryBase: 10 * time.Second}, r.handle)
		time.Sleep(time.Hour)
		if err := stop(); err != nil {
			t.Fatalf("Run() error = %v", err)
		}
		calls, times, _ := r.snapshot()
		if len(calls) != 3 {
			t.Fatalf("handler called %d times, want 3", len(calls))
		}
		for i := 1; i < len(times); i++ {
			gap := times[i].Sub(times[i-1])
			// Redelivery comes after the backoff (>= half of RetryBase), well before the
			// 1-minute visibility timeout would have expired on its own.
			if gap < 5*time.Second || gap >= time.Minute {
				t.Errorf("retry %d came after %s, want within [5s, 1m)", i, gap)
			}
		}
		if m := q.get(id); !m.deleted || m.receives != 3 {
			t.Errorf("message deleted=%v receives=%d, want deleted after 3 receives", m.deleted, m.receives)
		}
	})
}

func TestConsumerGivesUpAfterMaxReceives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeSQS()
		id := q.send(hookTerminating)
		other := q.send(eventTerminate)
		r := recorder{fail: func(int) error { return errors.New("always fails") }}
		stop := start(t, q, Options{MaxReceives: 4, RetryBase: time.Second, RetryMax: 30 * time.Second}, r.handle)
		time.Sleep(6 * time.Hour)
		if err := stop(); err != nil {
			t.Fatalf("Run() error = %v", err)
		}
		calls, _, _ := r.snapshot()
		if len(calls) != 8 {
			t.Errorf("handler called %d times, want 4 per message", len(calls))
		}
		for _, id := range []string{id, other} {
			if m := q.get(id); !m.deleted || m.receives != 4 {
				t.Errorf("%s: deleted=%v receives=%d, want deleted after 4 receives", id, m.deleted, m.receives)
			}
		}
	})
}

func TestConsumerDropsMessageReceivedTooOften(t *testing.T) {
	// Earlier receives ended without a verdict (say the agent crashed while handling):
	// the message's count is already past the limit when this consumer sees it.
	synctest.Test(t, func(t *testing.T) {
		q := newFakeSQS()
		id := q.send(hookTerminating)
		q.mu.Lock()
		q.msgs[0].receives = 5
		q.mu.Unlock()
		var r recorder
		stop := start(t, q, Options{MaxReceives: 5}, r.handle)
		time.Sleep(time.Minute)
		if err := stop(); err != nil {
			t.Fatalf("Run() error = %v", err)
		}
		if calls, _, _ := r.snapshot(); len(calls) != 0 {
			t.Errorf("handler called %d times, want 0", len(calls))
		}
		if m := q.get(id); !m.deleted {
			t.Errorf("message not deleted")
		}
	})
}

func TestConsumerKeepsSlowNoticeHidden(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeSQS()
		id := q.send(hookTerminating)
		r := recorder{hold: 25 * time.Minute}
		stop := start(t, q, Options{VisibilityTimeout: 30 * time.Second}, r.handle)
		time.Sleep(time.Hour)
		if err := stop(); err != nil {
			t.Fatalf("Run() error = %v", err)
		}
		if calls, _, _ := r.snapshot(); len(calls) != 1 {
			t.Errorf("handler called %d times, want 1 (the message must stay hidden while it runs)", len(calls))
		}
		if m := q.get(id); !m.deleted || m.receives != 1 {
			t.Errorf("deleted=%v receives=%d, want deleted after 1 receive", m.deleted, m.receives)
		}
		// 25 minutes at one extension per 10 s.
		if n := q.count("ChangeMessageVisibility"); n < 140 || n > 160 {
			t.Errorf("ChangeMessageVisibility called %d times, want about 150", n)
		}
	})
}

func TestConsumerReleasesNoticeOnShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeSQS()
		id := q.send(hookTerminating)
		r := recorder{hold: time.Hour}
		stop := start(t, q, Options{VisibilityTimeout: 10 * time.Minute}, r.handle)
		time.Sleep(time.Minute)
		if err := stop(); err != nil {
			t.Fatalf("Run() error = %v", err)
		}
		m := q.get(id)
		if m.deleted {
			t.Fatal("interrupted notice was deleted")
		}
		if m.visibleAt.After(time.Now()) {
			t.Errorf("interrupted notice hidden until %s, want visible now", m.visibleAt)
		}
	})
}

func TestConsumerRetriesReceiveErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeSQS()
		throttled := &smithy.GenericAPIError{Code: "RequestThrottled", Message: "Rate exceeded"}
		q.receiveErrs = []error{throttled, throttled, errors.New("connection reset"), throttled}
		id := q.send(hookTerminating)
		var r recorder
		stop := start(t, q, Options{RetryBase: time.Second}, r.handle)
		time.Sleep(10 * time.Minute)
		if err := stop(); err != nil {
			t.Fatalf("Run() error = %v", err)
		}
		if calls, _, _ := r.snapshot(); len(calls) != 1 {
			t.Errorf("handler called %d times, want 1", len(calls))
		}
		if !q.get(id).deleted {
			t.Errorf("message not deleted")
		}
		if n := q.count("ReceiveMessage"); n < 5 {
			t.Errorf("ReceiveMessage called %d times, want at least 5", n)
		}
	})
}

func TestConsumerEndsOnMissingQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeSQS()
		c, err := New(q, Options{QueueURL: q.url + "-typo", Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Run(t.Context(), (&recorder{}).handle)
		if err == nil || !strings.Contains(err.Error(), "notices-typo") {
			t.Errorf("Run() error = %v, want one naming the queue", err)
		}
	})
}

func TestConsumerConcurrency(t *testing.T) {
	tests := []struct {
		concurrency, messages, want int
	}{
		{concurrency: 1, messages: 3, want: 1},
		{concurrency: 2, messages: 5, want: 2},
		{concurrency: 10, messages: 4, want: 4},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("concurrency %d messages %d", tt.concurrency, tt.messages), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newFakeSQS()
				for range tt.messages {
					q.send(hookTerminating)
				}
				r := recorder{hold: 5 * time.Minute}
				stop := start(t, q, Options{Concurrency: tt.concurrency}, r.handle)
				time.Sleep(time.Duration(tt.messages) * 6 * time.Minute)
				if err := stop(); err != nil {
					t.Fatalf("Run() error = %v", err)
				}
				calls, _, maxIn := r.snapshot()
				if len(calls) != tt.messages {
					t.Errorf("handled %d notices, want %d", len(calls), tt.messages)
				}
				if maxIn != tt.want {
					t.Errorf("at most %d handlers ran at once, want %d", maxIn, tt.want)
				}
			})
		})
	}
}

func TestNewValidates(t *testing.T) {
	q := newFakeSQS()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "no url", opts: Options{}, wantErr: "QueueURL is empty"},
		{name: "visibility too short", opts: Options{QueueURL: "u", VisibilityTimeout: time.Second}, wantErr: "VisibilityTimeout 1s"},
		{name: "visibility too long", opts: Options{QueueURL: "u", VisibilityTimeout: 13 * time.Hour}, wantErr: "VisibilityTimeout 13h0m0s"},
		{name: "max receives", opts: Options{QueueURL: "u", MaxReceives: -1}, wantErr: "MaxReceives -1"},
		{name: "concurrency", opts: Options{QueueURL: "u", Concurrency: 1000}, wantErr: "Concurrency 1000"},
		{name: "retry bounds", opts: Options{QueueURL: "u", RetryBase: time.Minute, RetryMax: time.Second}, wantErr: "RetryMax 1s is below RetryBase 1m0s"},
		{name: "defaults", opts: Options{QueueURL: "u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(q, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New() error = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestConsumerLeavesOtherClustersNotices: two clusters' leaders read one queue. A notice of
// another cluster is never handled nor deleted here: it goes back to the queue, again and
// again, for its own leader; SQS's count of those foreign receives does not make this
// consumer give up on a notice of its own (it counts its own receives); a notice whose
// cluster cannot be told now comes back later.
func TestConsumerLeavesOtherClustersNotices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeSQS()
		foreign := q.send(hookTerminating) // group swarm-workers: the other cluster's
		ours := q.send(eventTerminate)
		q.mu.Lock()
		q.msgs[1].receives = 7 // received by the other cluster's leader meanwhile
		q.mu.Unlock()
		unsure := 0
		owns := func(_ context.Context, n lifecycle.Notice) (bool, error) {
			if n.ASG == "swarm-workers" {
				return false, nil
			}
			if unsure++; unsure <= 2 {
				return false, errors.New("ec2 describe instances: RequestLimitExceeded")
			}
			return true, nil
		}
		var r recorder
		stop := start(t, q, Options{MaxReceives: 3, Owns: owns}, r.handle)
		time.Sleep(10 * time.Minute)
		if err := stop(); err != nil {
			t.Fatalf("Run() error = %v", err)
		}
		calls, _, _ := r.snapshot()
		if len(calls) != 1 || calls[0].ASG == "swarm-workers" {
			t.Fatalf("handled %+v, want only this cluster's notice, once", calls)
		}
		if m := q.get(ours); !m.deleted {
			t.Errorf("this cluster's notice not deleted after it was handled")
		}
		m := q.get(foreign)
		if m.deleted {
			t.Fatalf("another cluster's notice was deleted")
		}
		// Hidden 2.5..5 s each time: received again and again in 10 minutes.
		if m.receives < 100 {
			t.Errorf("another cluster's notice received %d times in 10 min, want it back in the queue every few seconds", m.receives)
		}
	})
}
