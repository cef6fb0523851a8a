package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/imds"
	"github.com/swarm-agent/swarm-agent/lifecycle/scaleout"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// TestNoticeFromInstanceMetadata: what run's watch makes of instance metadata.
func TestNoticeFromInstanceMetadata(t *testing.T) {
	at := time.Now().Add(2 * time.Minute).UTC().Truncate(time.Second)
	tests := []struct {
		name      string
		set       func(*imdsfake.Instance)
		rebalance bool
		wantKind  string // "" = no notice
	}{
		{"in service", func(*imdsfake.Instance) {}, true, ""},
		{"scale-in", func(in *imdsfake.Instance) { in.TargetLifecycleState = "Terminated" }, false, "scale-in"},
		{"spot", func(in *imdsfake.Instance) { in.SpotAction = &imdsfake.SpotAction{Action: "terminate", Time: at} }, false, "spot"},
		{"rebalance ignored unless asked", func(in *imdsfake.Instance) { in.RebalanceAt = &at }, false, ""},
		{"rebalance when asked", func(in *imdsfake.Instance) { in.RebalanceAt = &at }, true, "rebalance"},
		{"standby is not an end", func(in *imdsfake.Instance) { in.TargetLifecycleState = "Standby" }, true, ""},
		{"scheduled stop within the lead", func(in *imdsfake.Instance) {
			in.Events = []imdsfake.Event{{ID: "instance-event-1", Code: "instance-stop", NotBefore: at}}
		}, false, "instance-stop"},
		{"scheduled retirement within the lead", func(in *imdsfake.Instance) {
			in.Events = []imdsfake.Event{{ID: "instance-event-1", Code: "instance-retirement", NotBefore: at}}
		}, false, "instance-retirement"},
		{"scheduled stop beyond the lead", func(in *imdsfake.Instance) {
			in.Events = []imdsfake.Event{{ID: "instance-event-1", Code: "instance-stop", NotBefore: at.Add(2 * time.Hour)}}
		}, false, ""},
		{"scheduled stop completed", func(in *imdsfake.Instance) {
			in.Events = []imdsfake.Event{{ID: "instance-event-1", Code: "instance-stop", State: "completed", NotBefore: at}}
		}, false, ""},
		{"a scheduled reboot is not an end", func(in *imdsfake.Instance) {
			in.Events = []imdsfake.Event{{ID: "instance-event-1", Code: "system-reboot", NotBefore: at}}
		}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := imdsfake.New()
			in := imdsfake.Instance{ID: "i-0123456789abcdef0", PrivateIP: "127.0.0.1", AZ: "us-east-1a", Region: "us-east-1", ASG: "workers"}
			tt.set(&in)
			s.Put(in)
			srv := httptest.NewServer(s)
			defer srv.Close()
			d := &daemon{cfg: Config{DrainOnRebalance: tt.rebalance, MaintenanceLead: 30 * time.Minute}, log: zerolog.Nop(),
				imds: imds.New(awsimds.New(awsimds.Options{Endpoint: srv.URL, EnableFallback: aws.FalseTernary}))}
			n, ok := d.notice(t.Context(), in.ID, d.cfg.DrainOnRebalance)
			if got := map[bool]string{true: n.Kind}[ok]; got != tt.wantKind {
				t.Fatalf("notice %q (%v), want %q", n.Kind, ok, tt.wantKind)
			}
			if ok && n.InstanceID != in.ID {
				t.Errorf("notice for %q, want %q", n.InstanceID, in.ID)
			}
			if (tt.wantKind == "spot" || strings.HasPrefix(tt.wantKind, "instance-")) && !n.Deadline.Equal(at) {
				t.Errorf("spot deadline %v, want %v", n.Deadline, at)
			}
		})
	}
}

// hookAnswers is a lifecycle.Hook whose Complete answers the next error of a list.
type hookAnswers struct {
	lifecycle.Hook
	errs []error
}

func (h *hookAnswers) Complete(context.Context, string, string, string, string) error {
	err := h.errs[0]
	h.errs = h.errs[1:]
	return err
}

// TestCountedHook: the reaper's completions show in swarm_agent_lifecycle_completions_total
// like the drains' ones; failures are not counted as completions.
func TestCountedHook(t *testing.T) {
	m := newMetrics()
	h := countedHook{&hookAnswers{errs: []error{nil, fmt.Errorf("gone: %w", lifecycle.ErrNoAction), errors.New("throttled")}}, m}
	for range 3 {
		_ = h.Complete(t.Context(), "g", "drain", "i-1", lifecycle.ResultContinue)
	}
	for label, want := range map[string]float64{"CONTINUE": 1, "already": 1} {
		if got := testutil.ToFloat64(m.hookCompletions.WithLabelValues(label)); got != want {
			t.Errorf("completions{result=%q} = %v, want %v", label, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.hookCompletions); n != 2 {
		t.Errorf("%d result labels, want 2 (a failure is no completion)", n)
	}
}

// TestScaleOutMetrics: what the scale-out reports lands in the series the README names.
func TestScaleOutMetrics(t *testing.T) {
	m := newMetrics()
	for _, e := range []scaleout.Event{
		{Kind: scaleout.KindRebalance, Service: "web", Started: true},
		{Kind: scaleout.KindRebalance, Service: "web", Result: scaleout.ResultCompleted, Moved: 3},
		{Kind: scaleout.KindRebalance, Service: "api", Result: scaleout.ResultPaused, Moved: 1},
		{Kind: scaleout.KindResize, Service: "web", From: 6, To: 10},
		{Kind: scaleout.KindResize, Service: "web", From: 10, To: 6},
		{Kind: scaleout.KindResize, Service: "web", From: 6, To: 8},
	} {
		m.scaled(e)
	}
	for name, got := range map[string]float64{
		"started":            testutil.ToFloat64(m.rebalancesStarted),
		"finished completed": testutil.ToFloat64(m.rebalancesFinished.WithLabelValues("completed")),
		"finished paused":    testutil.ToFloat64(m.rebalancesFinished.WithLabelValues("paused")),
		"moved":              testutil.ToFloat64(m.rebalanceMoved),
		"resizes up":         testutil.ToFloat64(m.resizes.WithLabelValues("up")),
		"resizes down":       testutil.ToFloat64(m.resizes.WithLabelValues("down")),
	} {
		want := map[string]float64{"started": 1, "finished completed": 1, "finished paused": 1, "moved": 4, "resizes up": 2, "resizes down": 1}[name]
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	var nilM *metrics
	nilM.scaled(scaleout.Event{Kind: scaleout.KindResize}) // a nil metrics counts nothing, safely
}

// TestAWSErrorMetrics: every AWS client built from the run's configuration counts its errors
// by service and code (through the wiring's awsConfig, as run builds them).
func TestAWSErrorMetrics(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"__type":"ParameterNotFound","message":"no such parameter"}`))
	}))
	defer srv.Close()
	m := newMetrics()
	w := &wiring{m: m, identity: swarm.Identity{Region: "us-east-1"}}
	ac, err := w.awsConfig(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := ssm.NewFromConfig(ac, func(o *ssm.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	if _, err := c.GetParameter(t.Context(), &ssm.GetParameterInput{Name: aws.String("/x")}); err == nil {
		t.Fatal("GetParameter: no error")
	}
	if got := testutil.ToFloat64(m.awsErrors.WithLabelValues("SSM", "ParameterNotFound")); got != 1 {
		t.Fatalf("swarm_agent_aws_errors_total{service=SSM,code=ParameterNotFound} = %v, want 1", got)
	}
	// Without metrics (boot, drain commands) nothing is added.
	var none *metrics
	before := len(ac.APIOptions)
	none.countAWSErrors(&ac)
	if len(ac.APIOptions) != before {
		t.Fatal("a nil metrics added a middleware")
	}
}

// TestDockerErrorMetrics: the engine run builds reports its failed calls to the metrics.
func TestDockerErrorMetrics(t *testing.T) {
	m := newMetrics()
	// A socket nobody listens on: the engine is unreachable.
	e, err := engine.New("unix://"+filepath.Join(t.TempDir(), "docker.sock"), m.engineOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	if _, err := e.Check(t.Context(), ""); err == nil {
		t.Fatal("Check: no error")
	}
	if got := testutil.ToFloat64(m.dockerErrors.WithLabelValues("dial", "unreachable")); got < 1 {
		t.Fatalf(`swarm_agent_docker_errors_total{op="dial",kind="unreachable"} = %v, want at least 1`, got)
	}
	if (*metrics)(nil).engineOptions() != nil {
		t.Fatal("a nil metrics gave engine options")
	}
}

// TestEngineKeeper: run starts docker.service again once the engine failed two watches in a
// row, at most once a minute, and never while the engine answers.
func TestEngineKeeper(t *testing.T) {
	saved := startEngine
	t.Cleanup(func() { startEngine = saved })
	starts := 0
	startEngine = func(context.Context) (bool, error) { starts++; return true, nil }
	down, err := engine.New("unix://" + filepath.Join(t.TempDir(), "absent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	var k engineKeeper
	k.watch(t.Context(), down, "", zerolog.Nop())
	if starts != 0 {
		t.Fatalf("started docker after one failed watch")
	}
	k.watch(t.Context(), down, "", zerolog.Nop())
	if starts != 1 {
		t.Fatalf("%d starts after two failed watches, want 1", starts)
	}
	k.watch(t.Context(), down, "", zerolog.Nop())
	k.watch(t.Context(), down, "", zerolog.Nop())
	if starts != 1 {
		t.Fatalf("%d starts within a minute, want 1", starts)
	}
	k.last = time.Now().Add(-2 * time.Minute)
	k.watch(t.Context(), down, "", zerolog.Nop())
	if starts != 2 {
		t.Fatalf("%d starts a minute later, want 2", starts)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"Version":"27.0.0","ApiVersion":"1.47","Os":"linux","Arch":"amd64"}`)
	}))
	defer srv.Close()
	up, err := engine.New("tcp://" + srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	k = engineKeeper{}
	for range 3 {
		k.watch(t.Context(), up, "", zerolog.Nop())
	}
	if starts != 2 || k.down != 0 {
		t.Fatalf("an answering engine: %d starts, down count %d", starts, k.down)
	}
}
