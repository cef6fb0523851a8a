// Package notify tells people about drains: an HTTP POST to an operator's webhook when a drain
// starts and when it ends. Sending never blocks the drain: events go through a small queue that
// one goroutine delivers, with a timeout per attempt and a few retries; what cannot be delivered
// is logged and counted, never retried forever.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"text/template"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/retry"
)

// Event is what a notification says. Its JSON form is the default body; a template sees the
// same fields.
type Event struct {
	Event      string    `json:"event"` // drain_started | drain_finished
	Cluster    string    `json:"cluster"`
	InstanceID string    `json:"instance_id"`
	NodeID     string    `json:"node_id,omitempty"`
	Kind       string    `json:"kind"`   // scale-in | spot | rebalance | manual
	Source     string    `json:"source"` // imds | queue | command
	Result     string    `json:"result,omitempty"`
	Error      string    `json:"error,omitempty"`
	Seconds    float64   `json:"duration_seconds,omitempty"`
	Time       time.Time `json:"time"`
}

// Event names.
const (
	DrainStarted  = "drain_started"
	DrainFinished = "drain_finished"
)

// Options configure a Notifier.
type Options struct {
	URL string
	// Cluster fills Event.Cluster when an event leaves it empty.
	Cluster string
	// Template renders the body (text/template over Event); empty sends Event as JSON.
	Template string
	// Timeout bounds one attempt; 0 means 5 s.
	Timeout time.Duration
	// Attempts per event; 0 means 4 (waits of 1, 2 and 4 s between them).
	Attempts int
	Client   *http.Client
	Log      zerolog.Logger
	// Result, when set, is called once per event with "sent", "failed" or "dropped" (metrics).
	Result func(result string)
}

// queueSize bounds the events waiting for delivery; a drain sends two.
const queueSize = 16

// Notifier delivers events. The zero value is not usable; a nil *Notifier drops everything.
type Notifier struct {
	opts  Options
	tmpl  *template.Template
	host  string // logged instead of the URL, which may carry a secret (Slack puts one in the path)
	queue chan Event
	done  chan struct{}
	once  sync.Once
	// ctx ends when Close gives up: the attempt under way and the wait between attempts end,
	// and what is still queued is dropped, so the goroutine is gone when Close returns.
	ctx    context.Context
	cancel context.CancelFunc
}

// Check validates a webhook URL and template: one error naming what is wrong, never echoing
// the URL's path or query (they may hold a secret).
func Check(rawURL, tmpl string) error {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q: must be http or https", cut(u.Scheme, 16))
	case u.Host == "":
		return errors.New("no host: want e.g. https://hooks.example.com/services/T0/B0/X")
	case u.User != nil:
		return fmt.Errorf("user info in the URL of host %s: put credentials in the path or query the service expects", u.Hostname())
	}
	if tmpl != "" {
		if _, err := template.New("notify").Option("missingkey=error").Parse(tmpl); err != nil {
			return fmt.Errorf("template: %w", err)
		}
	}
	return nil
}

// New starts a notifier whose goroutine delivers until Close.
func New(opts Options) (*Notifier, error) {
	if err := Check(opts.URL, opts.Template); err != nil {
		return nil, err
	}
	u, _ := url.Parse(opts.URL) // checked
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 4
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	n := &Notifier{opts: opts, host: u.Scheme + "://" + u.Host, queue: make(chan Event, queueSize), done: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if opts.Template != "" {
		n.tmpl = template.Must(template.New("notify").Option("missingkey=error").Parse(opts.Template))
	}
	go n.deliver()
	return n, nil
}

// Notify queues ev and returns at once. When the queue is full (the webhook is down and events
// pile up) ev is dropped, logged and counted.
func (n *Notifier) Notify(ev Event) {
	if n == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if ev.Cluster == "" {
		ev.Cluster = n.opts.Cluster
	}
	select {
	case n.queue <- ev:
	case <-n.done:
		n.result("dropped")
	default:
		n.opts.Log.Warn().Str("event", ev.Event).Str("webhook", n.host).Msg("notification dropped: queue full")
		n.result("dropped")
	}
}

// Close stops taking events and waits until those queued were delivered or given up, or ctx
// ends: then the attempt under way is cut short and the rest are dropped. Either way the
// delivering goroutine has ended when Close returns.
func (n *Notifier) Close(ctx context.Context) {
	if n == nil {
		return
	}
	n.once.Do(func() { close(n.queue) })
	select {
	case <-n.done:
	case <-ctx.Done():
		n.cancel()
		<-n.done
		n.opts.Log.Warn().Str("webhook", n.host).Msg("notifications still queued at exit were dropped")
	}
	n.cancel()
}

func (n *Notifier) result(r string) {
	if n.opts.Result != nil {
		n.opts.Result(r)
	}
}

// deliver is the notifier's one goroutine: it sends each event in order until the queue is
// closed and empty.
func (n *Notifier) deliver() {
	defer close(n.done)
	for ev := range n.queue {
		if n.ctx.Err() != nil {
			n.result("dropped")
			continue
		}
		err := n.send(ev)
		if err != nil {
			n.opts.Log.Warn().Err(err).Str("event", ev.Event).Str("webhook", n.host).Msg("notification not delivered")
			n.result("failed")
			continue
		}
		n.opts.Log.Debug().Str("event", ev.Event).Str("webhook", n.host).Msg("notification delivered")
		n.result("sent")
	}
}

// send tries ev up to Attempts times.
func (n *Notifier) send(ev Event) error {
	body, ctype, err := n.body(ev)
	if err != nil {
		return err
	}
	wait := time.Second
	var last error
	for attempt := 1; attempt <= n.opts.Attempts; attempt++ {
		if attempt > 1 {
			if !retry.Sleep(n.ctx, wait) {
				return fmt.Errorf("%d of %d attempts, then the agent stopped: %w", attempt-1, n.opts.Attempts, last)
			}
			wait *= 2
		}
		var again bool
		again, last = n.post(body, ctype)
		if last == nil || !again {
			return last
		}
	}
	return fmt.Errorf("%d attempts: %w", n.opts.Attempts, last)
}

// post makes one attempt; again reports whether another may help (network errors, 429, 5xx).
func (n *Notifier) post(body []byte, ctype string) (again bool, err error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opts.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "swarm-agent")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		// The error names the URL: keep only what happened.
		return true, fmt.Errorf("post to %s: %w", n.host, unwrapURL(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("%s answered %s", n.host, resp.Status)
	}
	return false, fmt.Errorf("%s refused it: %s", n.host, resp.Status)
}

func (n *Notifier) body(ev Event) ([]byte, string, error) {
	if n.tmpl == nil {
		b, err := json.Marshal(ev)
		return b, "application/json", err
	}
	var b bytes.Buffer
	if err := n.tmpl.Execute(&b, ev); err != nil {
		return nil, "", fmt.Errorf("render template: %w", err)
	}
	ctype := "text/plain; charset=utf-8"
	if json.Valid(b.Bytes()) {
		ctype = "application/json"
	}
	return b.Bytes(), ctype, nil
}

// unwrapURL drops the *url.Error wrapper (whose text repeats the whole URL).
func unwrapURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
