package imdsfake

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// fakeClock is a settable clock for token expiry.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// countingHandler counts token requests that reached the server.
type countingHandler struct {
	h      http.Handler
	tokens atomic.Int64
	reads  atomic.Int64
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		c.tokens.Add(1)
	} else {
		c.reads.Add(1)
	}
	c.h.ServeHTTP(w, r)
}

type fixture struct {
	srv     *Server
	clock   *fakeClock
	counter *countingHandler
	url     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{srv: New(), clock: &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	f.srv.SetClock(f.clock.Now)
	f.counter = &countingHandler{h: f.srv}
	hs := httptest.NewServer(f.counter) // listens on 127.0.0.1
	t.Cleanup(hs.Close)
	f.url = hs.URL
	return f
}

// httpFrom returns an HTTP client whose connections leave from the given loopback address.
func httpFrom(t *testing.T, localIP string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (f *fixture) sdk(t *testing.T, localIP string) *imds.Client {
	return imds.New(imds.Options{
		Endpoint:       f.url,
		EnableFallback: aws.FalseTernary,
		HTTPClient:     httpFrom(t, localIP),
	})
}

func (f *fixture) getMetadata(t *testing.T, c *imds.Client, path string) (string, error) {
	t.Helper()
	out, err := c.GetMetadata(t.Context(), &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b), nil
}

func statusOf(err error) int {
	var se interface{ HTTPStatusCode() int }
	if errors.As(err, &se) {
		return se.HTTPStatusCode()
	}
	return 0
}

func sampleInstance() Instance {
	return Instance{
		ID:           "i-0123456789abcdef0",
		PrivateIP:    "127.0.0.1",
		AZ:           "eu-west-1b",
		Region:       "eu-west-1",
		InstanceType: "t3.small",
		ASG:          "swarm-managers",
		Tags:         map[string]string{"Name": "mgr-1", "swarm-agent:cluster": "prod"},
		TagsEnabled:  true,
	}
}

func TestGetMetadataThroughSDK(t *testing.T) {
	spot := time.Date(2026, 3, 1, 12, 2, 0, 0, time.UTC)
	rebalance := time.Date(2026, 3, 1, 11, 58, 30, 0, time.UTC)
	tests := []struct {
		name     string
		mutate   func(*Instance)
		path     string
		want     string
		wantCode int // 0: success
	}{
		{name: "instance-id", path: "instance-id", want: "i-0123456789abcdef0"},
		{name: "local-ipv4", path: "local-ipv4", want: "127.0.0.1"},
		{name: "availability zone", path: "placement/availability-zone", want: "eu-west-1b"},
		{name: "region", path: "placement/region", want: "eu-west-1"},
		{name: "region derived from zone", mutate: func(in *Instance) { in.Region = "" }, path: "placement/region", want: "eu-west-1"},
		{name: "instance type", path: "instance-type", want: "t3.small"},
		{name: "tag keys", path: "tags/instance", want: "Name\nswarm-agent:cluster"},
		{name: "tag value", path: "tags/instance/swarm-agent:cluster", want: "prod"},
		{name: "missing tag", path: "tags/instance/nope", wantCode: 404},
		{name: "tags disabled: keys", mutate: func(in *Instance) { in.TagsEnabled = false }, path: "tags/instance", wantCode: 404},
		{name: "tags disabled: value", mutate: func(in *Instance) { in.TagsEnabled = false }, path: "tags/instance/Name", wantCode: 404},
		{name: "lifecycle default in ASG", path: "autoscaling/target-lifecycle-state", want: "InService"},
		{name: "lifecycle terminated", mutate: func(in *Instance) { in.TargetLifecycleState = StateTerminated }, path: "autoscaling/target-lifecycle-state", want: "Terminated"},
		{name: "lifecycle without ASG", mutate: func(in *Instance) { in.ASG = "" }, path: "autoscaling/target-lifecycle-state", wantCode: 404},
		{name: "no spot notice", path: "spot/instance-action", wantCode: 404},
		{
			name:   "spot notice",
			mutate: func(in *Instance) { in.SpotAction = &SpotAction{Action: "terminate", Time: spot} },
			path:   "spot/instance-action",
			want:   `{"action":"terminate","time":"2026-03-01T12:02:00Z"}`,
		},
		{
			name:   "spot termination time",
			mutate: func(in *Instance) { in.SpotAction = &SpotAction{Action: "terminate", Time: spot} },
			path:   "spot/termination-time",
			want:   "2026-03-01T12:02:00Z",
		},
		{name: "no rebalance", path: "events/recommendations/rebalance", wantCode: 404},
		{
			name:   "rebalance",
			mutate: func(in *Instance) { in.RebalanceAt = &rebalance },
			path:   "events/recommendations/rebalance",
			want:   `{"noticeTime":"2026-03-01T11:58:30Z"}`,
		},
		{name: "unknown item", path: "no/such/item", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			in := sampleInstance()
			if tt.mutate != nil {
				tt.mutate(&in)
			}
			f.srv.Put(in)
			got, err := f.getMetadata(t, f.sdk(t, "127.0.0.1"), tt.path)
			if tt.wantCode != 0 {
				if code := statusOf(err); code != tt.wantCode {
					t.Fatalf("GetMetadata(%s): got status %d (err %v), want %d", tt.path, code, err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetMetadata(%s): %v", tt.path, err)
			}
			if got != tt.want {
				t.Errorf("GetMetadata(%s) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestIdentityDocumentThroughSDK(t *testing.T) {
	f := newFixture(t)
	f.srv.Put(sampleInstance())
	c := f.sdk(t, "127.0.0.1")
	doc, err := c.GetInstanceIdentityDocument(t.Context(), &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		t.Fatalf("GetInstanceIdentityDocument: %v", err)
	}
	want := sampleInstance()
	got := [][2]string{
		{doc.InstanceID, want.ID}, {doc.Region, want.Region}, {doc.AvailabilityZone, want.AZ},
		{doc.PrivateIP, want.PrivateIP}, {doc.InstanceType, want.InstanceType},
	}
	for _, g := range got {
		if g[0] != g[1] {
			t.Errorf("identity document field = %q, want %q (doc %+v)", g[0], g[1], doc.InstanceIdentityDocument)
		}
	}
	region, err := c.GetRegion(t.Context(), &imds.GetRegionInput{})
	if err != nil {
		t.Fatalf("GetRegion: %v", err)
	}
	if region.Region != want.Region {
		t.Errorf("GetRegion = %q, want %q", region.Region, want.Region)
	}
}

func TestTokenRules(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		header   map[string]string
		wantCode int
		wantTTL  string
	}{
		{name: "valid ttl", method: http.MethodPut, header: map[string]string{TokenTTLHeader: "300"}, wantCode: 200, wantTTL: "300"},
		{name: "minimum ttl", method: http.MethodPut, header: map[string]string{TokenTTLHeader: "1"}, wantCode: 200, wantTTL: "1"},
		{name: "maximum ttl", method: http.MethodPut, header: map[string]string{TokenTTLHeader: "21600"}, wantCode: 200, wantTTL: "21600"},
		{name: "ttl too long", method: http.MethodPut, header: map[string]string{TokenTTLHeader: "21601"}, wantCode: 400},
		{name: "ttl zero", method: http.MethodPut, header: map[string]string{TokenTTLHeader: "0"}, wantCode: 400},
		{name: "ttl not a number", method: http.MethodPut, header: map[string]string{TokenTTLHeader: "5m"}, wantCode: 400},
		{name: "ttl missing", method: http.MethodPut, wantCode: 400},
		{name: "through a proxy", method: http.MethodPut, header: map[string]string{TokenTTLHeader: "300", "X-Forwarded-For": "10.0.0.9"}, wantCode: 403},
		{name: "GET token", method: http.MethodGet, header: map[string]string{TokenTTLHeader: "300"}, wantCode: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			req, err := http.NewRequestWithContext(t.Context(), tt.method, f.url+"/latest/api/token", nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := httpFrom(t, "127.0.0.1").Do(req)
			if err != nil {
				t.Fatalf("PUT token: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantCode != 200 {
				if f.srv.TokensIssued() != 0 {
					t.Errorf("refused request still issued a token")
				}
				return
			}
			if got := resp.Header.Get(TokenTTLHeader); got != tt.wantTTL {
				t.Errorf("TTL header = %q, want %q", got, tt.wantTTL)
			}
			if len(body) < 32 {
				t.Errorf("token %q is too short to be unguessable", body)
			}
		})
	}
}

func TestTokensAreDistinct(t *testing.T) {
	f := newFixture(t)
	c := httpFrom(t, "127.0.0.1")
	seen := map[string]bool{}
	for range 20 {
		tok := rawToken(t, c, f.url, 60)
		if seen[tok] {
			t.Fatalf("token %q issued twice", tok)
		}
		seen[tok] = true
	}
}

func rawToken(t *testing.T, c *http.Client, url string, ttl int) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, url+"/latest/api/token", nil)
	req.Header.Set(TokenTTLHeader, strconv.Itoa(ttl))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PUT token: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT token: status %d", resp.StatusCode)
	}
	return string(b)
}

func rawGet(t *testing.T, c *http.Client, url, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url+path, nil)
	if token != "" {
		req.Header.Set(TokenHeader, token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadsNeedValidToken(t *testing.T) {
	const path = "/latest/meta-data/instance-id"
	tests := []struct {
		name     string
		token    func(t *testing.T, f *fixture, c *http.Client) string
		caller   string
		wantCode int
	}{
		{name: "no token", token: func(*testing.T, *fixture, *http.Client) string { return "" }, caller: "127.0.0.1", wantCode: 401},
		{name: "made-up token", token: func(*testing.T, *fixture, *http.Client) string { return strings.Repeat("A", 43) }, caller: "127.0.0.1", wantCode: 401},
		{name: "valid token", token: func(t *testing.T, f *fixture, c *http.Client) string { return rawToken(t, c, f.url, 60) }, caller: "127.0.0.1", wantCode: 200},
		{
			name: "expired token",
			token: func(t *testing.T, f *fixture, c *http.Client) string {
				tok := rawToken(t, c, f.url, 60)
				f.clock.Advance(60 * time.Second)
				return tok
			},
			caller: "127.0.0.1", wantCode: 401,
		},
		{
			name: "token about to expire",
			token: func(t *testing.T, f *fixture, c *http.Client) string {
				tok := rawToken(t, c, f.url, 60)
				f.clock.Advance(59 * time.Second)
				return tok
			},
			caller: "127.0.0.1", wantCode: 200,
		},
		{name: "unknown caller, no token", token: func(*testing.T, *fixture, *http.Client) string { return "" }, caller: "127.0.0.9", wantCode: 401},
		{name: "unknown caller, valid token", token: func(t *testing.T, f *fixture, c *http.Client) string { return rawToken(t, c, f.url, 60) }, caller: "127.0.0.9", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.srv.Put(sampleInstance())
			c := httpFrom(t, tt.caller)
			code, body := rawGet(t, c, f.url, path, tt.token(t, f, c))
			if code != tt.wantCode {
				t.Fatalf("GET %s: status %d, want %d", path, code, tt.wantCode)
			}
			if code == 200 && body != sampleInstance().ID {
				t.Errorf("GET %s = %q, want %q", path, body, sampleInstance().ID)
			}
		})
	}
}

// The SDK caches its token for five minutes by its own clock; when the server has already
// expired it, the read gets 401 and the SDK must fetch a new token and retry.
func TestSDKRecoversFromExpiredToken(t *testing.T) {
	f := newFixture(t)
	f.srv.Put(sampleInstance())
	c := f.sdk(t, "127.0.0.1")
	if _, err := f.getMetadata(t, c, "instance-id"); err != nil {
		t.Fatalf("first read: %v", err)
	}
	if got := f.counter.tokens.Load(); got != 1 {
		t.Fatalf("token requests after first read = %d, want 1", got)
	}
	if _, err := f.getMetadata(t, c, "instance-id"); err != nil {
		t.Fatalf("second read: %v", err)
	}
	if got := f.counter.tokens.Load(); got != 1 {
		t.Fatalf("token requests after a read with a cached token = %d, want 1", got)
	}
	f.clock.Advance(6 * time.Minute) // past the SDK's 5-minute token
	got, err := f.getMetadata(t, c, "instance-id")
	if err != nil {
		t.Fatalf("read after expiry: %v", err)
	}
	if got != sampleInstance().ID {
		t.Errorf("read after expiry = %q, want %q", got, sampleInstance().ID)
	}
	if got := f.counter.tokens.Load(); got != 2 {
		t.Errorf("token requests after expiry = %d, want 2", got)
	}
	if got := f.counter.reads.Load(); got != 4 {
		t.Errorf("reads = %d, want 4 (two cached, one refused with 401, one retried)", got)
	}
}

func TestInstancesToldApartBySourceAddress(t *testing.T) {
	f := newFixture(t)
	a := sampleInstance()
	b := sampleInstance()
	b.ID, b.PrivateIP, b.AZ, b.ASG = "i-0000000000000000b", "127.0.0.2", "eu-west-1c", ""
	f.srv.Put(a)
	f.srv.Put(b)
	tests := []struct {
		caller, path, want string
		wantCode           int
	}{
		{caller: "127.0.0.1", path: "instance-id", want: a.ID},
		{caller: "127.0.0.2", path: "instance-id", want: b.ID},
		{caller: "127.0.0.1", path: "local-ipv4", want: "127.0.0.1"},
		{caller: "127.0.0.2", path: "local-ipv4", want: "127.0.0.2"},
		{caller: "127.0.0.2", path: "placement/availability-zone", want: "eu-west-1c"},
		{caller: "127.0.0.1", path: "autoscaling/target-lifecycle-state", want: "InService"},
		{caller: "127.0.0.2", path: "autoscaling/target-lifecycle-state", wantCode: 404},
		{caller: "127.0.0.3", path: "instance-id", wantCode: 404},
	}
	clients := map[string]*imds.Client{}
	for _, tt := range tests {
		t.Run(tt.caller+" "+tt.path, func(t *testing.T) {
			c, ok := clients[tt.caller]
			if !ok {
				c = f.sdk(t, tt.caller)
				clients[tt.caller] = c
			}
			got, err := f.getMetadata(t, c, tt.path)
			if tt.wantCode != 0 {
				if code := statusOf(err); code != tt.wantCode {
					t.Fatalf("status %d (err %v), want %d", code, err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetMetadata: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStateChangesShowAtOnce(t *testing.T) {
	f := newFixture(t)
	f.srv.Put(sampleInstance())
	c := f.sdk(t, "127.0.0.1")
	read := func(path string) (string, int) {
		got, err := f.getMetadata(t, c, path)
		return got, statusOf(err)
	}
	if got, _ := read("autoscaling/target-lifecycle-state"); got != "InService" {
		t.Fatalf("before scale-in: %q, want InService", got)
	}
	when := time.Date(2026, 3, 1, 12, 2, 0, 0, time.UTC)
	if err := f.srv.Update(sampleInstance().ID, func(in *Instance) {
		in.TargetLifecycleState = StateTerminated
		in.SpotAction = &SpotAction{Action: "stop", Time: when}
		in.ID = "i-changed" // ignored: Update keeps the ID
	}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got, _ := read("autoscaling/target-lifecycle-state"); got != "Terminated" {
		t.Errorf("after scale-in: %q, want Terminated", got)
	}
	if got, _ := read("instance-id"); got != sampleInstance().ID {
		t.Errorf("instance-id after Update = %q, want %q", got, sampleInstance().ID)
	}
	if _, code := read("spot/termination-time"); code != 404 {
		t.Errorf("termination-time for a stop notice: status %d, want 404", code)
	}
	f.srv.Remove(sampleInstance().ID)
	if _, code := read("instance-id"); code != 404 {
		t.Errorf("after Remove: status %d, want 404", code)
	}
	if err := f.srv.Update("i-missing", func(*Instance) {}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update of unknown instance: %v, want ErrNotFound", err)
	}
}

func TestStoreCopiesAndAddressReuse(t *testing.T) {
	s := New()
	in := sampleInstance()
	s.Put(in)
	in.Tags["Name"] = "changed by caller"
	got, ok := s.Get(in.ID)
	if !ok || got.Tags["Name"] != "mgr-1" {
		t.Fatalf("Put kept a reference to the caller's map: %v", got.Tags)
	}
	got.Tags["Name"] = "changed by reader"
	if again, _ := s.Get(in.ID); again.Tags["Name"] != "mgr-1" {
		t.Fatalf("Get returned a shared map: %v", again.Tags)
	}
	next := sampleInstance()
	next.ID = "i-reused-address"
	s.Put(next)
	if _, ok := s.Get(in.ID); ok {
		t.Errorf("old instance still present after its address was reused")
	}
	if byIP, ok := s.ByIP("127.0.0.1"); !ok || byIP.ID != next.ID {
		t.Errorf("ByIP = %q, %v; want %q", byIP.ID, ok, next.ID)
	}
	if byIP, ok := s.ByIP("::ffff:127.0.0.1"); !ok || byIP.ID != next.ID {
		t.Errorf("ByIP(IPv4-mapped) = %q, %v; want %q", byIP.ID, ok, next.ID)
	}
	if n := len(s.Instances()); n != 1 {
		t.Errorf("Instances() has %d entries, want 1", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	f := newFixture(t)
	f.srv.Put(sampleInstance())
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			c := f.sdk(t, "127.0.0.1")
			for j := range 10 {
				if i%2 == 0 {
					_ = f.srv.Update(sampleInstance().ID, func(in *Instance) { in.Tags["n"] = strconv.Itoa(j) })
				}
				out, err := c.GetMetadata(t.Context(), &imds.GetMetadataInput{Path: "instance-id"})
				if err != nil {
					errs <- err
					return
				}
				out.Content.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent read: %v", err)
	}
}
