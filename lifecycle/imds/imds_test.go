package imds_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/imds"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func client(url string) *imds.Client {
	return imds.New(awsimds.New(awsimds.Options{Endpoint: url, EnableFallback: aws.FalseTernary}))
}

func fake(t *testing.T, in imdsfake.Instance) (*imdsfake.Server, string) {
	s := imdsfake.New()
	in.PrivateIP = "127.0.0.1" // the fake tells instances apart by the caller's address
	s.Put(in)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

var base = imdsfake.Instance{ID: "i-0123456789abcdef0", AZ: "eu-west-1b", Region: "eu-west-1", InstanceType: "t3.medium", ASG: "workers"}

func TestIdentity(t *testing.T) {
	t.Run("without tags", func(t *testing.T) {
		_, url := fake(t, base)
		id, err := client(url).Identity(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := swarm.Identity{InstanceID: "i-0123456789abcdef0", PrivateIP: "127.0.0.1", AZ: "eu-west-1b", Region: "eu-west-1", InstanceType: "t3.medium"}
		if id.InstanceID != want.InstanceID || id.PrivateIP != want.PrivateIP || id.AZ != want.AZ || id.Region != want.Region || id.InstanceType != want.InstanceType || id.Tags != nil {
			t.Fatalf("got %+v, want %+v", id, want)
		}
	})
	t.Run("with tags enabled", func(t *testing.T) {
		in := base
		in.TagsEnabled, in.Tags = true, map[string]string{"workload": "database", "Name": "node 1"}
		_, url := fake(t, in)
		id, err := client(url).Identity(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if id.Tags["workload"] != "database" || id.Tags["Name"] != "node 1" || len(id.Tags) != 2 {
			t.Fatalf("tags %v", id.Tags)
		}
	})
	t.Run("in a Local Zone", func(t *testing.T) {
		in := base
		in.AZ, in.Region = "us-west-2-lax-1a", "us-west-2"
		_, url := fake(t, in)
		id, err := client(url).Identity(t.Context())
		if err != nil || id.AZ != in.AZ || id.Region != in.Region {
			t.Fatalf("got %+v, %v; want zone %s of %s", id, err, in.AZ, in.Region)
		}
	})
	t.Run("IMDS absent", func(t *testing.T) {
		_, err := client("http://127.0.0.1:1").Identity(t.Context())
		if err == nil || !strings.Contains(err.Error(), "instance-id") {
			t.Fatalf("err %v, want one naming the path", err)
		}
	})
}

// TestIdentityRejectsBadAnswers serves malformed metadata and wants an error naming the
// path and the value, never a panic.
func TestIdentityRejectsBadAnswers(t *testing.T) {
	good := map[string]string{"instance-id": "i-0123456789abcdef0", "local-ipv4": "10.0.0.5",
		"placement/availability-zone": "us-east-1a", "placement/region": "us-east-1", "instance-type": "m5.large"}
	tests := []struct{ path, value string }{
		{"instance-id", "not-an-id"},
		{"local-ipv4", "10.0.0.300"},
		{"local-ipv4", "fe80::1"},
		{"placement/availability-zone", "<html>"},
		{"placement/availability-zone", "us-east-1a; reboot"},
		{"placement/availability-zone", "us-west-2a"}, // a zone of another region
		{"placement/availability-zone", "us-east-" + strings.Repeat("a", 70) + "-1a"},
		{"placement/region", ""},
		{"placement/region", "eu-west-1"}, // the zone is us-east-1a
		{"placement/region", "us-east-1\"}"},
		{"instance-type", "m5 large"},
		{"instance-type", "m5.large\",\"x\":\"y"},
		{"instance-type", "m5"},
	}
	for _, tt := range tests {
		t.Run(tt.path+"="+tt.value, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/latest/api/token" {
					w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
					_, _ = w.Write([]byte("tok"))
					return
				}
				p := strings.TrimPrefix(r.URL.Path, "/latest/meta-data/")
				v, ok := good[p]
				if p == tt.path {
					v, ok = tt.value, true
				}
				if !ok {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write([]byte(v))
			}))
			defer srv.Close()
			_, err := client(srv.URL).Identity(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), "want") {
				t.Fatalf("err %v, want one naming %s and the rule", err, tt.path)
			}
		})
	}
}

// TestShapes: the names AWS gives regions, zones (Local and Wavelength Zones too) and instance
// types pass; anything else, and anything too long to be one, does not.
func TestShapes(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		name  string
		valid func(string) bool
		good  []string
		bad   []string
	}{
		{"region", imds.ValidRegion,
			[]string{"us-east-1", "eu-central-2", "us-gov-west-1", "cn-north-1", "ap-southeast-4", "us-isob-east-1", "il-central-1"},
			[]string{"", "us-east", "us-east-1a", "US-EAST-1", "useast1", "us-east-1 ", "us-east-1\nx", "us-" + long + "-1", "us-east-123", "$(id)-1"}},
		{"zone", imds.ValidAZ,
			[]string{"us-east-1a", "eu-central-2b", "us-gov-west-1a", "cn-north-1a", "us-west-2-lax-1a", "us-east-1-bos-1a", "us-east-1-wl1-bos-wlz-1", "ap-northeast-1-wl1-kix-wlz-1"},
			[]string{"", "us-east-1", "us-east-1ab", "us-east-1A", "use1-az1", "us-east-1a\n", "us-east-1a;id", "us-west-2-lax-1", "us-" + long + "-1a"}},
		{"instance type", imds.ValidInstanceType,
			[]string{"t3.medium", "m5.24xlarge", "m7i-flex.large", "u-6tb1.metal", "c7i.metal-24xl", "mac2-m2pro.metal"},
			[]string{"", "t3", "t3 medium", "T3.MEDIUM", "t3.medium\n", ".large", "t3.medium;id", "t3." + long}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range tt.good {
				if !tt.valid(s) {
					t.Errorf("%q refused", s)
				}
			}
			for _, s := range tt.bad {
				if tt.valid(s) {
					t.Errorf("%q accepted", s)
				}
			}
		})
	}
	for az, want := range map[string]string{"us-east-1a": "us-east-1", "us-west-2-lax-1a": "us-west-2", "us-east-1-wl1-bos-wlz-1": "us-east-1", "bad": ""} {
		if got := imds.AZRegion(az); got != want {
			t.Errorf("AZRegion(%q) = %q, want %q", az, got, want)
		}
	}
}

func TestLifecycleSignals(t *testing.T) {
	s, url := fake(t, base)
	c := client(url)
	ctx := t.Context()
	if st, err := c.TargetLifecycleState(ctx); err != nil || st != "InService" {
		t.Fatalf("state %q %v, want InService", st, err)
	}
	if _, err := c.SpotInstanceAction(ctx); !errors.Is(err, imds.ErrNotFound) {
		t.Fatalf("spot without notice: %v, want ErrNotFound", err)
	}
	if _, err := c.RebalanceRecommendation(ctx); !errors.Is(err, imds.ErrNotFound) {
		t.Fatalf("rebalance without notice: %v, want ErrNotFound", err)
	}
	at := time.Now().Add(2 * time.Minute).UTC().Truncate(time.Second)
	_ = s.Update(base.ID, func(in *imdsfake.Instance) {
		in.TargetLifecycleState = "Terminated"
		in.SpotAction = &imdsfake.SpotAction{Action: "terminate", Time: at}
		in.RebalanceAt = &at
	})
	if st, err := c.TargetLifecycleState(ctx); err != nil || st != "Terminated" {
		t.Fatalf("state %q %v, want Terminated", st, err)
	}
	sa, err := c.SpotInstanceAction(ctx)
	if err != nil || sa.Action != "terminate" || !sa.Time.Equal(at) {
		t.Fatalf("spot %+v %v", sa, err)
	}
	if rt, err := c.RebalanceRecommendation(ctx); err != nil || !rt.Equal(at) {
		t.Fatalf("rebalance %v %v", rt, err)
	}
}

func TestParseSpotActionErrors(t *testing.T) {
	for _, in := range []string{"", "{", `{"action":"explode","time":"2026-01-01T00:00:00Z"}`, `{"action":"terminate","time":"soon"}`} {
		if _, err := imds.ParseSpotAction([]byte(in)); err == nil {
			t.Errorf("ParseSpotAction(%q) accepted", in)
		}
	}
}

func FuzzParseSpotAction(f *testing.F) {
	f.Add([]byte(`{"action":"terminate","time":"2026-11-25T12:00:00Z"}`))
	f.Add([]byte(`{"action":"stop"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := imds.ParseSpotAction(b)
		if err == nil && a.Action != "terminate" && a.Action != "stop" && a.Action != "hibernate" {
			t.Fatalf("accepted action %q", a.Action)
		}
	})
}

// awsExample is AWS's documented answer of events/maintenance/scheduled (EC2 User Guide,
// "View scheduled events", instance metadata).
const awsExample = `[ 
  {
    "NotBefore" : "21 Jan 2019 09:00:43 GMT",
    "Code" : "system-reboot",
    "Description" : "scheduled reboot",
    "EventId" : "instance-event-0d59937288b749b32",
    "NotAfter" : "21 Jan 2019 09:17:23 GMT",
    "State" : "active"
  } 
]`

func TestParseScheduledEvents(t *testing.T) {
	evs, err := imds.ParseScheduledEvents([]byte(awsExample))
	if err != nil {
		t.Fatal(err)
	}
	want := lifecycle.ScheduledEvent{ID: "instance-event-0d59937288b749b32", Code: "system-reboot", Description: "scheduled reboot",
		State: "active", NotBefore: time.Date(2019, 1, 21, 9, 0, 43, 0, time.UTC), NotAfter: time.Date(2019, 1, 21, 9, 17, 23, 0, time.UTC)}
	if len(evs) != 1 || evs[0] != want {
		t.Fatalf("got %+v\nwant %+v", evs, want)
	}
	if !evs[0].Reboots() || evs[0].Stops() {
		t.Errorf("system-reboot: Reboots %v Stops %v", evs[0].Reboots(), evs[0].Stops())
	}
	for _, empty := range []string{"", " \n", "[]", "[ ]"} {
		if evs, err := imds.ParseScheduledEvents([]byte(empty)); err != nil || len(evs) != 0 {
			t.Errorf("%q: %v %v, want no events", empty, evs, err)
		}
	}
	// A stop without NotAfter (as AWS shows instance-stop events), one day digit, history
	// states, a code the agent does not know (kept, acted on by nobody).
	evs, err = imds.ParseScheduledEvents([]byte(`[{"NotBefore":"3 Feb 2027 10:00:00 GMT","Code":"instance-stop","Description":"degraded hardware","EventId":"instance-event-1","State":"active"},
		{"NotBefore":"03 Feb 2027 10:00:00 GMT","NotAfter":"03 Feb 2027 11:00:00 GMT","Code":"system-reboot","Description":"[Completed] scheduled reboot","EventId":"instance-event-2","State":"completed"},
		{"NotBefore":"2027-02-03T10:00:00Z","Code":"brand-new-code","EventId":"instance-event-3"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || !evs[0].Stops() || !evs[0].NotAfter.IsZero() || evs[1].State != "completed" || evs[2].State != "active" ||
		evs[2].Stops() || evs[2].Reboots() || !evs[0].NotBefore.Equal(evs[1].NotBefore) {
		t.Fatalf("got %+v", evs)
	}
}

func TestParseScheduledEventsErrors(t *testing.T) {
	for _, in := range []string{
		`{`, `{}`, `"x"`, `[1]`, `[null, 7]`,
		`[{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"system-reboot","EventId":"","State":"active"}]`,
		`[{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"system-reboot","EventId":"a b","State":"active"}]`,
		`[{"NotBefore":"soon","Code":"system-reboot","EventId":"e","State":"active"}]`,
		`[{"Code":"system-reboot","EventId":"e","State":"active"}]`,
		`[{"NotBefore":"21 Jan 2019 09:00:43 GMT","NotAfter":"later","Code":"system-reboot","EventId":"e"}]`,
		`[{"NotBefore":"21 Jan 2019 09:00:43 GMT","NotAfter":"20 Jan 2019 09:00:43 GMT","Code":"system-reboot","EventId":"e"}]`,
		`[{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"system-reboot","EventId":"e","State":"pending"}]`,
		`[{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"system\nreboot","EventId":"e"}]`,
		"[" + strings.Repeat(`{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"x","EventId":"e"},`, 100) + `{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"x","EventId":"e"}]`,
	} {
		if evs, err := imds.ParseScheduledEvents([]byte(in)); err == nil {
			t.Errorf("ParseScheduledEvents(%.80q) accepted: %+v", in, evs)
		}
	}
}

// TestScheduledEventsThroughIMDS reads what the front's instance metadata serves: the
// active events only, [] without any, and the history apart.
func TestScheduledEventsThroughIMDS(t *testing.T) {
	s, url := fake(t, base)
	c := client(url)
	ctx := t.Context()
	if evs, err := c.ScheduledEvents(ctx); err != nil || evs != nil {
		t.Fatalf("no events: %v %v", evs, err)
	}
	nb := time.Date(2027, 3, 4, 5, 6, 7, 0, time.UTC)
	_ = s.Update(base.ID, func(in *imdsfake.Instance) {
		in.Events = []imdsfake.Event{
			{ID: "instance-event-0aaaaaaaaaaaaaaaa", Code: "system-reboot", Description: "scheduled reboot", NotBefore: nb, NotAfter: nb.Add(15 * time.Minute)},
			{ID: "instance-event-0bbbbbbbbbbbbbbbb", Code: "instance-stop", Description: "old", State: imdsfake.EventCompleted, NotBefore: nb.Add(-time.Hour)},
		}
	})
	evs, err := c.ScheduledEvents(ctx)
	if err != nil || len(evs) != 1 || evs[0].ID != "instance-event-0aaaaaaaaaaaaaaaa" || !evs[0].NotBefore.Equal(nb) ||
		!evs[0].NotAfter.Equal(nb.Add(15*time.Minute)) || evs[0].State != "active" || evs[0].Code != "system-reboot" {
		t.Fatalf("scheduled: %+v %v", evs, err)
	}
}

func FuzzParseScheduledEvents(f *testing.F) {
	f.Add([]byte(awsExample))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"NotBefore":"3 Feb 2027 10:00:00 GMT","Code":"instance-stop","EventId":"instance-event-1"}]`))
	f.Add([]byte(`[{"NotBefore":"2027-02-03T10:00:00Z","NotAfter":"2027-02-03T10:00:00Z","Code":"x","EventId":"e","State":"canceled"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := imds.ParseScheduledEvents(b)
		if err != nil {
			return
		}
		for _, e := range evs {
			switch {
			case e.ID == "" || len(e.ID) > 128 || strings.ContainsAny(e.ID, " \n\t"):
				t.Fatalf("accepted event id %q", e.ID)
			case e.State != "active" && e.State != "completed" && e.State != "canceled":
				t.Fatalf("accepted state %q", e.State)
			case e.NotBefore.IsZero() || e.NotBefore.Location() != time.UTC:
				t.Fatalf("accepted NotBefore %v", e.NotBefore)
			case !e.NotAfter.IsZero() && e.NotAfter.Before(e.NotBefore):
				t.Fatalf("accepted NotAfter %v before NotBefore %v", e.NotAfter, e.NotBefore)
			}
		}
	})
}

func TestParseTargetLifecycleState(t *testing.T) {
	for _, ok := range []string{"InService", "Terminated", "Standby", "Detached", "Warmed:Stopped", "Warmed:Running",
		"Warmed:Hibernated", "Warmed:Terminated", "Pending:Wait", "Warmed:Pending:Wait"} {
		if got, err := imds.ParseTargetLifecycleState(ok); err != nil || got != ok {
			t.Errorf("imds.ParseTargetLifecycleState(%q) = %q, %v", ok, got, err)
		}
	}
	for _, bad := range []string{"", ":", "Warmed:", ":Stopped", "Warmed::Stopped", "A:B:C:D", "In Service", "InService\n",
		"Terminated;rm", "Warmed:Stopped1", strings.Repeat("A", 65), "<html>"} {
		if got, err := imds.ParseTargetLifecycleState(bad); err == nil {
			t.Errorf("imds.ParseTargetLifecycleState(%q) = %q, want an error", bad, got)
		}
	}
}

func FuzzParseTargetLifecycleState(f *testing.F) {
	for _, s := range []string{"InService", "Terminated", "Warmed:Stopped", "Warmed:Pending:Wait", "", "a:b:c:d", "x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, err := imds.ParseTargetLifecycleState(v)
		if err != nil {
			if got != "" {
				t.Fatalf("%q: %q with error %v", v, got, err)
			}
			if strings.Contains(err.Error(), v) && len(v) > 80 {
				t.Fatalf("error quotes a long value whole: %v", err)
			}
			return
		}
		if got != v || len(v) == 0 || len(v) > 64 || strings.Count(v, ":") > 2 || strings.ContainsFunc(v, func(r rune) bool {
			return r != ':' && !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z')
		}) {
			t.Fatalf("accepted %q as %q", v, got)
		}
	})
}

// barrierAPI answers instance metadata from values; each read of a path in together waits
// until every path of together has been asked (or fails after a deadline), so that reads made
// one after the other fail, and records whether one of them came before first was answered.
type barrierAPI struct {
	values   map[string]string
	first    string
	together []string

	mu         sync.Mutex
	firstDone  bool
	early      []string // paths of together asked before first was answered
	asked      map[string]bool
	allAsked   chan struct{}
	closedOnce sync.Once
}

func (a *barrierAPI) GetMetadata(ctx context.Context, in *awsimds.GetMetadataInput, _ ...func(*awsimds.Options)) (*awsimds.GetMetadataOutput, error) {
	v, ok := a.values[in.Path]
	if !ok {
		return nil, errors.New("unexpected path " + in.Path)
	}
	if in.Path == a.first {
		a.mu.Lock()
		a.firstDone = true
		a.mu.Unlock()
	}
	if slices.Contains(a.together, in.Path) {
		a.mu.Lock()
		if !a.firstDone {
			a.early = append(a.early, in.Path)
		}
		a.asked[in.Path] = true
		if len(a.asked) == len(a.together) {
			a.closedOnce.Do(func() { close(a.allAsked) })
		}
		a.mu.Unlock()
		select {
		case <-a.allAsked:
		case <-time.After(5 * time.Second):
			return nil, errors.New(in.Path + " read alone: the other reads did not come while it waited")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &awsimds.GetMetadataOutput{Content: io.NopCloser(strings.NewReader(v))}, nil
}

// TestIdentityReadsAtOnce: after the instance id (the read that takes the session token),
// the identity's other reads and the tags' list are made at once, and so are the tags' own
// reads: each waits until the others have been asked, so reading one after the other fails.
func TestIdentityReadsAtOnce(t *testing.T) {
	api := &barrierAPI{
		values: map[string]string{"instance-id": "i-0123456789abcdef0", "local-ipv4": "10.0.0.5",
			"placement/availability-zone": "us-east-1a", "placement/region": "us-east-1", "instance-type": "m5.large",
			"tags/instance": "workload\nteam", "tags/instance/workload": "db", "tags/instance/team": "infra"},
		first:    "instance-id",
		together: []string{"local-ipv4", "placement/availability-zone", "placement/region", "instance-type", "tags/instance"},
		asked:    map[string]bool{}, allAsked: make(chan struct{}),
	}
	id, err := imds.New(api).Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(api.early) > 0 {
		t.Errorf("%v read before the instance id was answered; want the instance id first (it takes the token)", api.early)
	}
	if id.InstanceID != "i-0123456789abcdef0" || id.PrivateIP != "10.0.0.5" || id.Region != "us-east-1" || id.Tags["workload"] != "db" || id.Tags["team"] != "infra" {
		t.Fatalf("identity %+v", id)
	}

	tags := &barrierAPI{values: api.values, together: []string{"tags/instance/workload", "tags/instance/team"},
		asked: map[string]bool{}, allAsked: make(chan struct{}), firstDone: true}
	got, err := imds.New(tags).Tags(t.Context())
	if err != nil || len(got) != 2 {
		t.Fatalf("tags %v, %v; want both, read at once", got, err)
	}
}

// countingAPI answers every tags/instance/KEY with v-KEY after a short hold, counting
// how many reads run at the same time.
type countingAPI struct {
	list  string
	mu    sync.Mutex
	now   int
	most  int
	reads int
}

func (a *countingAPI) GetMetadata(ctx context.Context, in *awsimds.GetMetadataInput, _ ...func(*awsimds.Options)) (*awsimds.GetMetadataOutput, error) {
	if in.Path == "tags/instance" {
		return &awsimds.GetMetadataOutput{Content: io.NopCloser(strings.NewReader(a.list))}, nil
	}
	a.mu.Lock()
	a.now++
	a.reads++
	a.most = max(a.most, a.now)
	a.mu.Unlock()
	// Held a moment: reads that are all started at once pile up here.
	select {
	case <-time.After(20 * time.Millisecond):
	case <-ctx.Done():
	}
	a.mu.Lock()
	a.now--
	a.mu.Unlock()
	key := strings.TrimPrefix(in.Path, "tags/instance/")
	return &awsimds.GetMetadataOutput{Content: io.NopCloser(strings.NewReader("v-" + key))}, nil
}

// TestTagReadsBounded: a tag list is an answer from outside; a long one (200 keys, four times
// what an instance may carry) is read a few keys at a time, never with a read per key at once,
// and every tag is still read.
func TestTagReadsBounded(t *testing.T) {
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	api := &countingAPI{list: strings.Join(keys, "\n")}
	tags, err := imds.New(api).Tags(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 200 || tags["k199"] != "v-k199" {
		t.Fatalf("%d tags (k199=%q), want 200", len(tags), tags["k199"])
	}
	if api.most > 8 || api.most < 2 {
		t.Errorf("at most %d tag reads ran at once, want 2..8 (at once, but bounded)", api.most)
	}
}
