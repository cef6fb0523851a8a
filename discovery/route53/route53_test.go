package route53_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/discovery/discoverytest"
	"github.com/swarm-agent/swarm-agent/discovery/locktest"
	"github.com/swarm-agent/swarm-agent/discovery/route53"
	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestFromSpec(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"minimal", "provider=route53 zone_id=Z123 name=managers.swarm.internal", ""},
		{"failover with resolver", "provider=route53 zone_id=Z123 name=m.x.internal mode=failover resolver=10.0.0.2", ""},
		{"hostedzone prefix", "provider=route53 zone_id=/hostedzone/Z123 name=m.x", ""},
		{"missing zone", "provider=route53 name=m.x", "zone_id= is required"},
		{"missing name", "provider=route53 zone_id=Z1", "name= is required"},
		{"lower-case zone", "provider=route53 zone_id=z1 name=m.x", `zone_id="z1"`},
		{"bad name", "provider=route53 zone_id=Z1 name=-bad-.x", `name="-bad-.x"`},
		{"bad mode", "provider=route53 zone_id=Z1 name=m.x mode=weighted", `mode="weighted"`},
		{"bad resolver", "provider=route53 zone_id=Z1 name=m.x resolver=dns.local", `resolver="dns.local"`},
		{"bad resolver port", "provider=route53 zone_id=Z1 name=m.x resolver=10.0.0.2:99999", "port must be"},
		{"bad ttl", "provider=route53 zone_id=Z1 name=m.x ttl=0", `ttl="0"`},
		{"bad lock ttl", "provider=route53 zone_id=Z1 name=m.x lock_ttl=1s", `lock_ttl="1s"`},
		{"unknown key", "provider=route53 zone_id=Z1 name=m.x zone=Z2", `unknown key "zone"`},
		{"wrong provider", "provider=consul service=x", `want route53`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := discovery.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := route53.FromSpec(spec, "manager")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("FromSpec(%q): %v", tt.in, err)
				}
				if cfg.ZoneID != "Z123" && cfg.ZoneID != "Z1" {
					t.Errorf("zone id %q", cfg.ZoneID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, discovery.ErrDiscoveryConfig) {
				t.Fatalf("FromSpec(%q) = %v, want ErrDiscoveryConfig containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func holder(id string) discovery.Holder { return discovery.Holder{InstanceID: id, Addr: "192.0.2.1"} }

func gone(context.Context, discovery.Holder) (bool, string) { return false, "gone (test)" }

// TestLockContract runs the contract every lock provider passes against moto and the front.
func TestLockContract(t *testing.T) {
	e := start(t, unlimited)
	var n atomic.Int64
	locktest.Run(t, locktest.Env{
		TTL:    5 * time.Second,
		Margin: 2 * time.Second,
		Namespace: func(t *testing.T) func(time.Duration) discovery.Locker {
			name := fmt.Sprintf("lock%d.swarm.internal", n.Add(1))
			return func(skew time.Duration) discovery.Locker {
				spec, err := discovery.Parse(fmt.Sprintf("provider=route53 zone_id=%s name=%s lock_ttl=5s", e.zone, name))
				if err != nil {
					t.Fatal(err)
				}
				cfg, err := route53.FromSpec(spec, "manager")
				if err != nil {
					t.Fatal(err)
				}
				p := route53.New(cfg, e.R53, zerolog.Nop())
				route53.SetClock(p, func() time.Time { return time.Now().Add(-skew) })
				return p
			}
		},
	})
}

type env struct {
	*fronttest.Env
	zone string
}

func (e *env) provider(t *testing.T, extra string) *route53.Provider {
	t.Helper()
	return route53.New(e.config(t, extra), e.R53, zerolog.Nop())
}

// config is a manager's configuration for the test zone, DNS through the front.
func (e *env) config(t *testing.T, extra string) route53.Config {
	t.Helper()
	spec, err := discovery.Parse(fmt.Sprintf("provider=route53 zone_id=%s name=managers.swarm.internal resolver=%s %s", e.zone, e.Front.DNSAddr(), extra))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := route53.FromSpec(spec, "manager")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func start(t *testing.T, limits map[string]awsfront.Limit) *env {
	e := fronttest.Start(t, limits)
	return &env{Env: e, zone: e.Zone(t, "swarm.internal")}
}

// unlimited keeps Route 53 unthrottled for tests that are not about throttling.
var unlimited = map[string]awsfront.Limit{"route53": {}, "ssm": {}}

// TestConformance runs every Route 53 operation the provider uses, and the errors it must
// handle, through the real SDK against moto and the front.
func TestConformance(t *testing.T) {
	e := start(t, unlimited)
	ctx := t.Context()

	t.Run("lock is exclusive under a race", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []discovery.Lock
		var held int
		for i := range 6 {
			wg.Go(func() {
				l, err := e.provider(t, "").TryLock(ctx, holder(fmt.Sprintf("i-%017x", i+1)), gone)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won = append(won, l)
				case errors.Is(err, discovery.ErrLockHeld):
					held++
				default:
					t.Errorf("TryLock: %v", err)
				}
			})
		}
		wg.Wait()
		if len(won) != 1 || held != 5 {
			t.Fatalf("%d winners and %d ErrLockHeld, want 1 and 5", len(won), held)
		}
		if _, err := e.provider(t, "").TryLock(ctx, holder("i-0000000000000000f"), gone); !errors.Is(err, discovery.ErrLockHeld) || !strings.Contains(err.Error(), "held by i-") {
			t.Fatalf("TryLock while held: %v, want ErrLockHeld naming the holder", err)
		}
		if err := won[0].Release(ctx); err != nil {
			t.Fatalf("release: %v", err)
		}
		l, err := e.provider(t, "").TryLock(ctx, holder("i-0000000000000000f"), gone)
		if err != nil {
			t.Fatalf("TryLock after release: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("expired lock is taken over by exactly one", func(t *testing.T) {
		dead, err := e.provider(t, "lock_ttl=5s").TryLock(ctx, holder("i-0000000000000dead"), gone)
		if err != nil {
			t.Fatal(err)
		}
		// Each contender times the lock on its own clock from the moment it first sees it.
		var contenders []*route53.Provider
		for range 4 {
			p := e.provider(t, "lock_ttl=5s")
			if _, err := p.TryLock(ctx, holder("i-00000000000000001"), gone); !errors.Is(err, discovery.ErrLockHeld) {
				t.Fatalf("before expiry: %v, want ErrLockHeld", err)
			}
			contenders = append(contenders, p)
		}
		time.Sleep(6 * time.Second)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []discovery.Lock
		for i, p := range contenders {
			wg.Go(func() {
				l, err := p.TryLock(ctx, holder(fmt.Sprintf("i-%017x", i+100)), gone)
				if err != nil && !errors.Is(err, discovery.ErrLockHeld) {
					t.Errorf("TryLock: %v", err)
				}
				if err == nil {
					mu.Lock()
					won = append(won, l)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("%d nodes took over the expired lock, want exactly 1", len(won))
		}
		// The dead holder coming back must not delete the new holder's lock.
		if err := dead.Release(ctx); err != nil {
			t.Fatalf("late release: %v", err)
		}
		if _, err := e.provider(t, "").TryLock(ctx, holder("i-00000000000000002"), gone); !errors.Is(err, discovery.ErrLockHeld) {
			t.Fatalf("after the old holder's late release: %v, want the new holder to still hold it", err)
		}
		if err := won[0].Release(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("multivalue register is idempotent and DNS answers", func(t *testing.T) {
		p := e.provider(t, "mode=multivalue")
		ms := []swarm.Member{{InstanceID: "i-0000000000000000a", Addr: "10.0.0.11"},
			{InstanceID: "i-0000000000000000b", Addr: "10.0.0.12"}, {InstanceID: "i-0000000000000000c", Addr: "10.0.0.13"}}
		for _, m := range ms {
			if err := p.Register(ctx, m); err != nil {
				t.Fatalf("register %s: %v", m.Addr, err)
			}
		}
		e.Front.ResetRequests()
		for _, m := range ms {
			if err := e.provider(t, "mode=multivalue").Register(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.Count("route53", "ChangeResourceRecordSets"); n != 0 {
			t.Errorf("registering again made %d changes, want 0", n)
		}
		got, err := e.provider(t, "").Managers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"10.0.0.11:2377", "10.0.0.12:2377", "10.0.0.13:2377"}
		if !slices.Equal(got, want) {
			t.Fatalf("DNS managers %v, want %v", got, want)
		}
		if err := p.Deregister(ctx, ms[1]); err != nil {
			t.Fatal(err)
		}
		got, _ = p.ConfirmManagers(ctx)
		if !slices.Equal(got, []string{"10.0.0.11:2377", "10.0.0.13:2377"}) {
			t.Fatalf("after deregister: %v", got)
		}
		for _, m := range ms {
			if err := p.Deregister(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("failover: PRIMARY, SECONDARY, promotion on deregister", func(t *testing.T) {
		p := e.provider(t, "mode=failover")
		a := swarm.Member{InstanceID: "i-0000000000000000a", Addr: "10.0.0.21"}
		b := swarm.Member{InstanceID: "i-0000000000000000b", Addr: "10.0.0.22"}
		c := swarm.Member{InstanceID: "i-0000000000000000c", Addr: "10.0.0.23"}
		for _, m := range []swarm.Member{a, b, c} {
			if err := p.Register(ctx, m); err != nil {
				t.Fatalf("register %s: %v", m.Addr, err)
			}
		}
		sets := failoverSets(t, e)
		if sets["PRIMARY"] != a.Addr || sets["SECONDARY"] != b.Addr || len(sets) != 2 {
			t.Fatalf("sets %v, want PRIMARY %s SECONDARY %s", sets, a.Addr, b.Addr)
		}
		if got, _ := p.Managers(ctx); !slices.Equal(got, []string{a.Addr + ":2377"}) {
			t.Fatalf("DNS answers %v, want the PRIMARY only", got)
		}
		if err := p.Deregister(ctx, a); err != nil {
			t.Fatal(err)
		}
		sets = failoverSets(t, e)
		if sets["PRIMARY"] != b.Addr || len(sets) != 1 {
			t.Fatalf("after the PRIMARY left: %v, want %s promoted", sets, b.Addr)
		}
		if err := p.Register(ctx, c); err != nil {
			t.Fatal(err)
		}
		if sets = failoverSets(t, e); sets["SECONDARY"] != c.Addr {
			t.Fatalf("third manager not made SECONDARY: %v", sets)
		}
		for _, m := range []swarm.Member{b, c} {
			if err := p.Deregister(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if sets = failoverSets(t, e); len(sets) != 0 {
			t.Fatalf("sets left: %v", sets)
		}
	})

	t.Run("the same set can be created again after its deletion", func(t *testing.T) {
		// A record sorting after the managers' name (the lock) must not make Route 53 (or the
		// doubles) refuse re-creating a set that was deleted: seen with moto's change journal.
		p := e.provider(t, "mode=failover")
		l, err := p.TryLock(ctx, holder("i-0000000000000000a"), gone)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Release(ctx) }()
		m := swarm.Member{InstanceID: "i-0000000000000000a", Addr: "10.0.0.51"}
		for round := range 3 {
			if err := p.Register(ctx, m); err != nil {
				t.Fatalf("round %d: register: %v", round, err)
			}
			if sets := failoverSets(t, e); sets["PRIMARY"] != m.Addr {
				t.Fatalf("round %d: sets %v", round, sets)
			}
			if err := p.Deregister(ctx, m); err != nil {
				t.Fatalf("round %d: deregister: %v", round, err)
			}
		}
	})

	t.Run("leader reconciles the record to the live managers", func(t *testing.T) {
		a := swarm.Member{InstanceID: "i-0000000000000000a", Addr: "10.0.0.61"}
		b := swarm.Member{InstanceID: "i-0000000000000000b", Addr: "10.0.0.62"}
		c := swarm.Member{InstanceID: "i-0000000000000000c", Addr: "10.0.0.63"}
		mv := e.provider(t, "mode=multivalue")
		for _, m := range []swarm.Member{a, b} {
			if err := mv.Register(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		// a died; b leads; c is a live manager that never registered.
		if err := mv.Reconcile(ctx, b, []swarm.Member{b, c}); err != nil {
			t.Fatal(err)
		}
		if got, _ := mv.ConfirmManagers(ctx); !slices.Equal(got, []string{"10.0.0.62:2377", "10.0.0.63:2377"}) {
			t.Fatalf("multivalue after reconcile: %v", got)
		}
		e.Front.ResetRequests()
		if err := mv.Reconcile(ctx, b, []swarm.Member{c, b}); err != nil {
			t.Fatal(err)
		}
		if n := e.Count("route53", "ChangeResourceRecordSets"); n != 0 {
			t.Fatalf("reconciling a right record made %d changes", n)
		}
		if err := mv.Reconcile(ctx, b, nil); err != nil { // clean up
			t.Fatal(err)
		}

		fo := e.provider(t, "mode=failover")
		for _, m := range []swarm.Member{a, b} {
			if err := fo.Register(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		// PRIMARY a, SECONDARY b; b becomes leader, a is dead, c live: PRIMARY b, SECONDARY c.
		if err := fo.Reconcile(ctx, b, []swarm.Member{b, c}); err != nil {
			t.Fatal(err)
		}
		if sets := failoverSets(t, e); sets["PRIMARY"] != b.Addr || sets["SECONDARY"] != c.Addr {
			t.Fatalf("failover after reconcile: %v", sets)
		}
		if got, _ := fo.Managers(ctx); !slices.Equal(got, []string{b.Addr + ":2377"}) {
			t.Fatalf("DNS answers %v, want the leader", got)
		}
		// Leadership moves to c, b still live: the two swap in one batch.
		if err := fo.Reconcile(ctx, c, []swarm.Member{b, c}); err != nil {
			t.Fatal(err)
		}
		if sets := failoverSets(t, e); sets["PRIMARY"] != c.Addr || sets["SECONDARY"] != b.Addr {
			t.Fatalf("failover after the leader moved: %v", sets)
		}
		if err := fo.Reconcile(ctx, swarm.Member{}, nil); err != nil { // clean up
			t.Fatal(err)
		}
		if sets := failoverSets(t, e); len(sets) != 0 {
			t.Fatalf("sets left: %v", sets)
		}
	})

	t.Run("mixing routing kinds is refused clearly", func(t *testing.T) {
		if err := e.provider(t, "mode=failover").Register(ctx, swarm.Member{InstanceID: "i-0000000000000000a", Addr: "10.0.0.31"}); err != nil {
			t.Fatal(err)
		}
		err := e.provider(t, "mode=multivalue").Register(ctx, swarm.Member{InstanceID: "i-0000000000000000b", Addr: "10.0.0.32"})
		if !errors.Is(err, discovery.ErrDiscoveryConfig) || !strings.Contains(err.Error(), "failover") {
			t.Fatalf("multivalue beside failover: %v, want a configuration error", err)
		}
		_ = e.provider(t, "mode=failover").Deregister(ctx, swarm.Member{InstanceID: "i-0000000000000000a", Addr: "10.0.0.31"})
	})

	t.Run("throttling and PriorRequestNotComplete are retried", func(t *testing.T) {
		e.Front.ResetRequests()
		e.Front.InjectFault(awsfront.Fault{Service: "route53", Operation: "ChangeResourceRecordSets", Kind: awsfront.FaultThrottle, Count: 1})
		e.Front.InjectFault(awsfront.Fault{Service: "route53", Operation: "ChangeResourceRecordSets", Kind: awsfront.FaultPriorReqNC, Count: 1})
		m := swarm.Member{InstanceID: "i-0000000000000000e", Addr: "10.0.0.41"}
		if err := e.provider(t, "").Register(ctx, m); err != nil {
			t.Fatalf("register through faults: %v", err)
		}
		var codes []string
		for _, r := range e.Front.Requests() {
			if r.Operation == "ChangeResourceRecordSets" {
				codes = append(codes, fmt.Sprintf("%d:%s", r.Attempt, r.ErrorCode))
			}
		}
		if !slices.Equal(codes, []string{"1:Throttling", "2:PriorRequestNotComplete", "3:"}) {
			t.Fatalf("attempts %v, want Throttling, PriorRequestNotComplete, then success", codes)
		}
		_ = e.provider(t, "").Deregister(ctx, m)
	})

	t.Run("negative DNS answers fall back to the API only after api_after", func(t *testing.T) {
		e.Front.ResetRequests()
		// api_every is long: the second read below must be rate limited however long the machine
		// takes between the two calls (a read every 1s, jittered to 0.5s, was not).
		p := e.provider(t, "api_after=2s api_every=1h")
		if got, err := p.Managers(ctx); err != nil || len(got) != 0 {
			t.Fatalf("no managers: %v %v", got, err)
		}
		if n := e.Count("route53", ""); n != 0 {
			t.Fatalf("%d Route 53 calls before api_after", n)
		}
		time.Sleep(2100 * time.Millisecond)
		if _, err := p.Managers(ctx); err != nil {
			t.Fatal(err)
		}
		if n := e.Count("route53", "ListResourceRecordSets"); n != 1 {
			t.Fatalf("%d API reads after api_after, want 1", n)
		}
		if _, err := p.Managers(ctx); err != nil {
			t.Fatal(err)
		}
		if n := e.Count("route53", "ListResourceRecordSets"); n != 1 {
			t.Fatalf("%d API reads after the first within api_every, want 1 (rate limited)", n)
		}
	})
}

// TestDNSTimeoutsNeverReachTheAPI: a resolver that does not answer (timeouts, as under load)
// is not a negative answer: the node asks DNS again and never falls back to the Route 53 API,
// which a thousand nodes would storm.
func TestDNSTimeoutsNeverReachTheAPI(t *testing.T) {
	e := start(t, unlimited)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() { // read and drop every query
		buf := make([]byte, 2048)
		for {
			if _, _, err := silent.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	retriesOverDNS(t, e, silent.LocalAddr(), "a silent resolver")
}

// retriesOverDNS asks for the managers through resolver with api_after=0s: the answer must be
// an error to retry over DNS (no negative answer), and no Route 53 API call made.
func retriesOverDNS(t *testing.T, e *env, resolver net.Addr, what string) {
	t.Helper()
	spec, err := discovery.Parse(fmt.Sprintf("provider=route53 zone_id=%s name=managers.swarm.internal resolver=%s api_after=0s api_every=1s",
		e.zone, resolver))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := route53.FromSpec(spec, "worker")
	if err != nil {
		t.Fatal(err)
	}
	p := route53.New(cfg, e.R53, zerolog.Nop())
	e.Front.ResetRequests()
	got, err := p.Managers(t.Context())
	if err == nil || len(got) != 0 {
		t.Fatalf("Managers with %s = %v, %v; want an error to retry over DNS", what, got, err)
	}
	if n := e.Count("route53", ""); n != 0 {
		t.Fatalf("%d Route 53 API calls with %s, want 0", n, what)
	}
}

func failoverSets(t *testing.T, e *env) map[string]string {
	t.Helper()
	out, err := e.R53.ListResourceRecordSets(t.Context(), &awsroute53.ListResourceRecordSetsInput{HostedZoneId: aws.String(e.zone)})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, s := range out.ResourceRecordSets {
		if s.Type == types.RRTypeA && s.Failover != "" {
			m[string(s.Failover)] = aws.ToString(s.ResourceRecords[0].Value)
		}
	}
	return m
}

// TestDiscoveryContract runs the contract every discovery provider passes, in both modes,
// against moto and the front (DNS answers from the front's resolver).
func TestDiscoveryContract(t *testing.T) {
	e := start(t, unlimited)
	var n atomic.Int64
	for _, mode := range []string{route53.ModeMultivalue, route53.ModeFailover} {
		t.Run(mode, func(t *testing.T) {
			env := discoverytest.Env{
				InstanceIDs: mode == route53.ModeMultivalue,
				Settle:      10 * time.Second,
				Namespace: func(t *testing.T, _ []swarm.Member) func() discoverytest.Provider {
					name := fmt.Sprintf("contract%d.swarm.internal", n.Add(1))
					return func() discoverytest.Provider {
						spec, err := discovery.Parse(fmt.Sprintf("provider=route53 zone_id=%s name=%s mode=%s resolver=%s",
							e.zone, name, mode, e.Front.DNSAddr()))
						if err != nil {
							t.Fatal(err)
						}
						cfg, err := route53.FromSpec(spec, "manager")
						if err != nil {
							t.Fatal(err)
						}
						return route53.New(cfg, e.R53, zerolog.Nop())
					}
				},
			}
			if mode == route53.ModeFailover {
				env.Capacity, env.AnswersOne = 2, true
			}
			discoverytest.Run(t, env)
		})
	}
}
