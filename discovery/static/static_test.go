package static

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/discovery/discoverytest"
	"github.com/swarm-agent/swarm-agent/swarm"
)

func mustParse(t *testing.T, s string) discovery.Spec {
	t.Helper()
	spec, err := discovery.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return spec
}

func TestFromSpec(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		managers []string
		init     string
		errHas   string
	}{
		{name: "default port and first is init", in: "provider=static managers=10.0.0.1,10.0.0.2:2400",
			managers: []string{"10.0.0.1:2377", "10.0.0.2:2400"}, init: "10.0.0.1"},
		{name: "explicit init", in: "provider=static managers=10.0.0.1,10.0.0.2 init=10.0.0.2",
			managers: []string{"10.0.0.1:2377", "10.0.0.2:2377"}, init: "10.0.0.2"},
		{name: "ipv6", in: "provider=static managers=[fd00::1]:2377,fd00::2",
			managers: []string{"[fd00::1]:2377", "[fd00::2]:2377"}, init: "fd00::1"},
		{name: "spaces around entries", in: "provider=static managers='10.0.0.1, 10.0.0.2'",
			managers: []string{"10.0.0.1:2377", "10.0.0.2:2377"}, init: "10.0.0.1"},
		{name: "missing managers", in: "provider=static init=10.0.0.1", errHas: "managers= is required"},
		{name: "unknown key", in: "provider=static managers=10.0.0.1 zone=x", errHas: `unknown key "zone"`},
		{name: "hostname", in: "provider=static managers=mgr.local", errHas: `entry "mgr.local": must be an IP address`},
		{name: "bad port", in: "provider=static managers=10.0.0.1:70000", errHas: `entry "10.0.0.1:70000": port must be 1..65535`},
		{name: "empty entry", in: "provider=static managers=10.0.0.1,,10.0.0.2", errHas: "empty entry"},
		{name: "duplicate", in: "provider=static managers=10.0.0.1,10.0.0.1:2377", errHas: "listed twice"},
		{name: "init not a manager", in: "provider=static managers=10.0.0.1 init=10.0.0.9", errHas: `init="10.0.0.9": must be one of managers`},
		{name: "init with port", in: "provider=static managers=10.0.0.1 init=10.0.0.1:2377", errHas: "must be an IP address without port"},
		{name: "wrong provider", in: "provider=route53 managers=10.0.0.1", errHas: `provider "route53"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := FromSpec(mustParse(t, tt.in))
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("FromSpec(%q) error = %v, want it to contain %q", tt.in, err, tt.errHas)
				}
				if !errors.Is(err, discovery.ErrDiscoveryConfig) {
					t.Errorf("error %v does not wrap ErrDiscoveryConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromSpec(%q): %v", tt.in, err)
			}
			if !slices.Equal(cfg.Managers, tt.managers) {
				t.Errorf("managers = %v, want %v", cfg.Managers, tt.managers)
			}
			if cfg.Init.String() != tt.init {
				t.Errorf("init = %s, want %s", cfg.Init, tt.init)
			}
		})
	}
}

func TestProviderLock(t *testing.T) {
	spec := "provider=static managers=10.0.0.1,10.0.0.2,10.0.0.3 init=10.0.0.2"
	tests := []struct {
		self   string
		wantOK bool
	}{
		{"10.0.0.1", false},
		{"10.0.0.2", true},
		{"10.0.0.3", false},
		{"10.0.0.77", false}, // a worker or an unlisted node
		{"::ffff:10.0.0.2", true},
	}
	for _, tt := range tests {
		t.Run(tt.self, func(t *testing.T) {
			p, err := New(mustParse(t, spec), tt.self)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Managers(t.Context())
			if err != nil || len(got) != 3 {
				t.Fatalf("Managers = %v, %v; want the 3 configured", got, err)
			}
			got[0] = "changed" // callers must not be able to alter the config
			if again, _ := p.Managers(t.Context()); again[0] != "10.0.0.1:2377" {
				t.Errorf("Managers shares its slice with callers: %v", again)
			}
			l, err := p.TryLock(t.Context(), discovery.Holder{InstanceID: "i-0123456789abcdef0"}, nil)
			if tt.wantOK {
				if err != nil {
					t.Fatalf("TryLock on the init node: %v", err)
				}
				if err := l.Release(t.Context()); err != nil {
					t.Errorf("Release: %v", err)
				}
				// The rule holds on every boot, also after a release.
				if _, err := p.TryLock(t.Context(), discovery.Holder{InstanceID: "i-0123456789abcdef0"}, nil); err != nil {
					t.Errorf("second TryLock on the init node: %v", err)
				}
				return
			}
			if !errors.Is(err, discovery.ErrLockHeld) {
				t.Fatalf("TryLock on %s = %v, want ErrLockHeld", tt.self, err)
			}
		})
	}
}

func TestNewBadSelf(t *testing.T) {
	_, err := New(mustParse(t, "provider=static managers=10.0.0.1"), "not-an-ip")
	if err == nil || !strings.Contains(err.Error(), `"not-an-ip"`) {
		t.Fatalf("New with bad own address: err = %v, want one naming the value", err)
	}
}

// TestContract runs the contract every discovery provider passes: the static list is what
// Managers lists.
func TestContract(t *testing.T) {
	discoverytest.Run(t, discoverytest.Env{
		Namespace: func(t *testing.T, seed []swarm.Member) func() discoverytest.Provider {
			return func() discoverytest.Provider {
				p, err := New(mustParse(t, "provider=static managers="+discoverytest.Static(seed)), seed[0].Addr)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
		},
	})
}
