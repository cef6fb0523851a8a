package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/internal/waitfor"
	"github.com/swarm-agent/swarm-agent/notify"
)

// hook is a webhook that records what it got and answers with the statuses queued for it.
type hook struct {
	mu       sync.Mutex
	bodies   []string
	types    []string
	statuses []int // answered in order; then 200
	hold     chan struct{}
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.hold != nil {
		select {
		case <-h.hold:
		case <-r.Context().Done():
			return
		}
	}
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, string(b))
	h.types = append(h.types, r.Header.Get("Content-Type"))
	status := http.StatusOK
	if len(h.statuses) > 0 {
		status, h.statuses = h.statuses[0], h.statuses[1:]
	}
	h.mu.Unlock()
	w.WriteHeader(status)
}

func (h *hook) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.bodies...)
}

type results struct {
	mu sync.Mutex
	rs []string
}

func (r *results) add(s string) { r.mu.Lock(); r.rs = append(r.rs, s); r.mu.Unlock() }
func (r *results) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.rs...)
}

func TestStartAndEndAreDeliveredInOrderAsJSON(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var res results
	n, err := notify.New(notify.Options{URL: srv.URL + "/T000/B000/secret-part", Cluster: "prod", Log: zerolog.Nop(), Result: res.add})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(notify.Event{Event: notify.DrainStarted, InstanceID: "i-1", Kind: "scale-in", Source: "imds"})
	n.Notify(notify.Event{Event: notify.DrainFinished, InstanceID: "i-1", NodeID: "n1", Kind: "scale-in", Source: "imds", Result: "completed", Seconds: 12.5})
	n.Close(t.Context())
	got := h.got()
	if len(got) != 2 {
		t.Fatalf("webhook got %d posts, want 2: %q", len(got), got)
	}
	var first, second notify.Event
	if err := json.Unmarshal([]byte(got[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(got[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first.Event != notify.DrainStarted || first.Cluster != "prod" || first.InstanceID != "i-1" || first.Time.IsZero() {
		t.Errorf("first post %+v", first)
	}
	if second.Event != notify.DrainFinished || second.Result != "completed" || second.NodeID != "n1" || second.Seconds != 12.5 {
		t.Errorf("second post %+v", second)
	}
	if h.types[0] != "application/json" {
		t.Errorf("Content-Type %q", h.types[0])
	}
	if r := res.all(); len(r) != 2 || r[0] != "sent" || r[1] != "sent" {
		t.Errorf("results %v, want sent twice", r)
	}
}

func TestServerErrorsAreRetriedAndRefusalsAreNot(t *testing.T) {
	h := &hook{statuses: []int{503, 500, 200, 400}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var res results
	var logs bytes.Buffer
	n, err := notify.New(notify.Options{URL: srv.URL + "/hooks/secret-part", Log: zerolog.New(&logs), Result: res.add})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(notify.Event{Event: notify.DrainStarted})  // 503, 500, then 200
	n.Notify(notify.Event{Event: notify.DrainFinished}) // 400: not retried
	n.Close(t.Context())
	if got := len(h.got()); got != 4 {
		t.Fatalf("webhook got %d posts, want 4 (3 for the first event, 1 for the refused second)", got)
	}
	if r := res.all(); len(r) != 2 || r[0] != "sent" || r[1] != "failed" {
		t.Errorf("results %v, want sent then failed", r)
	}
	if strings.Contains(logs.String(), "secret-part") {
		t.Errorf("the webhook's path reached the log: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "400") {
		t.Errorf("the refusal is not logged: %s", logs.String())
	}
}

// A webhook that never answers does not hold up the drain: Notify returns at once, each attempt
// ends at its timeout, a full queue drops, and Close gives up when its context ends.
func TestAHangingWebhookNeverBlocks(t *testing.T) {
	h := &hook{hold: make(chan struct{})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(h.hold)
	var res results
	n, err := notify.New(notify.Options{URL: srv.URL, Timeout: 50 * time.Millisecond, Attempts: 1, Log: zerolog.Nop(), Result: res.add})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 100 {
		n.Notify(notify.Event{Event: notify.DrainStarted})
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("100 Notify calls took %s with a hanging webhook", took)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	n.Close(ctx)
	r := res.all()
	dropped := 0
	for _, x := range r {
		if x == "dropped" {
			dropped++
		}
	}
	if dropped == 0 {
		t.Errorf("results %v: a full queue must drop", r)
	}
}

func TestTemplateBody(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n, err := notify.New(notify.Options{URL: srv.URL, Cluster: "prod", Log: zerolog.Nop(),
		Template: `{"text":"{{.Cluster}}: {{.InstanceID}} {{.Event}} {{.Result}}"}`})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(notify.Event{Event: notify.DrainFinished, InstanceID: "i-9", Result: "abandoned"})
	n.Close(t.Context())
	got := h.got()
	if len(got) != 1 || got[0] != `{"text":"prod: i-9 drain_finished abandoned"}` || h.types[0] != "application/json" {
		t.Fatalf("posts %q types %q", got, h.types)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct{ url, tmpl, want string }{
		{"ftp://x/y", "", "scheme"},
		{"https:///path-only", "", "no host"},
		{"https://user:pw@hooks.example.com/x", "", "user info"},
		{"://", "", "not a URL"},
		{"https://hooks.example.com/x", "{{.Nope", "template"},
	} {
		err := notify.Check(c.url, c.tmpl)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%q, %q) = %v, want an error saying %q", c.url, c.tmpl, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "/x")) {
			t.Errorf("Check(%q) echoes the URL: %v", c.url, err)
		}
	}
	if err := notify.Check("https://hooks.example.com/services/T/B/X", `{{.Event}}`); err != nil {
		t.Errorf("a good URL and template: %v", err)
	}
}

func TestNilNotifierDropsQuietly(t *testing.T) {
	var n *notify.Notifier
	n.Notify(notify.Event{Event: notify.DrainStarted})
	n.Close(t.Context())
}

// Close that gives up ends the delivery too: the wait between attempts and the attempt under
// way are cut short and what is still queued is dropped, so that no goroutine outlives Close
// (the agent exits, or the next notifier starts, with nothing left sending).
func TestCloseThatGivesUpEndsTheDelivery(t *testing.T) {
	h := &hook{statuses: []int{503, 503, 503, 503}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var res results
	n, err := notify.New(notify.Options{URL: srv.URL, Attempts: 4, Log: zerolog.Nop(), Result: res.add})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(notify.Event{Event: notify.DrainStarted})  // 503: waits 1 s, then 2 s, then 4 s between attempts
	n.Notify(notify.Event{Event: notify.DrainFinished}) // queued behind it
	waitfor.Until(t, time.Minute, "the first attempt", func() error {
		if len(h.got()) == 0 {
			return errors.New("no post yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	n.Close(ctx)
	// The retries left would wait 1+2+4 s: Close must not sit them out.
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %s: it waited out the retries instead of cutting them short", took.Round(time.Millisecond))
	}
	// Close has returned: the goroutine has settled both events, none is still being sent.
	if r := res.all(); len(r) != 2 || r[0] != "failed" || r[1] != "dropped" {
		t.Fatalf("results when Close returned: %v, want [failed dropped] (the first cut short in its retry wait, the second never sent)", r)
	}
	if got := len(h.got()); got != 1 {
		t.Errorf("webhook got %d posts, want the 1 made before Close", got)
	}
}
