package discovery

import (
	"maps"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		provider string
		args     map[string]string
		err      string // substring of the error; "" = success
	}{
		{name: "route53", in: "provider=route53 zone_id=Z123 name=managers.swarm.internal",
			provider: "route53", args: map[string]string{"zone_id": "Z123", "name": "managers.swarm.internal"}},
		{name: "extra spaces", in: "  provider=static   managers=10.0.0.1,10.0.0.2  ",
			provider: "static", args: map[string]string{"managers": "10.0.0.1,10.0.0.2"}},
		{name: "double quoted", in: `provider=consul service="swarm manager"`,
			provider: "consul", args: map[string]string{"service": "swarm manager"}},
		{name: "single quoted", in: `provider=consul service='a b' dc=x`,
			provider: "consul", args: map[string]string{"service": "a b", "dc": "x"}},
		{name: "empty value", in: "provider=static managers=", provider: "static", args: map[string]string{"managers": ""}},
		{name: "provider last", in: "zone_id=Z1 provider=route53", provider: "route53", args: map[string]string{"zone_id": "Z1"}},
		{name: "empty", in: "   ", err: "discovery string is empty"},
		{name: "no provider", in: "zone_id=Z1", err: "provider=NAME is missing"},
		{name: "bare word", in: "provider=route53 zone", err: `"zone" is not key=value`},
		{name: "upper-case key", in: "provider=route53 Zone_ID=Z", err: `key "Zone_ID"`},
		{name: "duplicate key", in: "provider=route53 name=a name=b", err: `key "name" given twice`},
		{name: "duplicate provider", in: "provider=route53 provider=consul", err: `key "provider" given twice`},
		{name: "unterminated quote", in: `provider=consul service="abc`, err: "unterminated quote"},
		{name: "text after quote", in: `provider=consul service="a"b`, err: "text after closing quote"},
		{name: "quote inside value", in: `provider=consul service=a"b`, err: "quote inside unquoted value"},
		{name: "empty key", in: "provider=x =v", err: `key ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got.Provider != tt.provider || !maps.Equal(got.Args, tt.args) {
				t.Fatalf("Parse(%q) = %q %v, want %q %v", tt.in, got.Provider, got.Args, tt.provider, tt.args)
			}
		})
	}
}

func TestCheckKeysAndRequire(t *testing.T) {
	s, err := Parse("provider=route53 zone_id=Z1 nmae=x")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckKeys("zone_id", "name"); err == nil || !strings.Contains(err.Error(), `unknown key "nmae"`) {
		t.Errorf("CheckKeys = %v, want unknown key nmae", err)
	}
	if err := s.Require("zone_id", "name"); err == nil || !strings.Contains(err.Error(), "name= is required") {
		t.Errorf("Require = %v, want name= is required", err)
	}
	if got := s.Get("missing", "def"); got != "def" {
		t.Errorf("Get default = %q", got)
	}
}

// FuzzParse: any input either parses into a spec that a re-rendering parses identically,
// or fails with an error; it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"provider=route53 zone_id=Z123 name=managers.swarm.internal mode=failover",
		`provider=consul service="swarm manager" token_file=/etc/consul.token`,
		"provider=static managers=10.0.0.1:2377,10.0.0.2",
		"provider='' a=\"\"", "=", "provider", "provider==", "a=b=c provider=x", "provider=x\tk=\"v\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if s.Provider == "" {
			t.Fatalf("Parse(%q) succeeded without a provider", in)
		}
		var b strings.Builder
		b.WriteString("provider=" + quoteFor(s.Provider))
		for k, v := range s.Args {
			b.WriteString(" " + k + "=" + quoteFor(v))
		}
		if !validQuotable(s.Provider) || !allQuotable(s.Args) {
			return
		}
		again, err := Parse(b.String())
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", b.String(), in, err)
		}
		if again.Provider != s.Provider || !maps.Equal(again.Args, s.Args) {
			t.Fatalf("round trip of %q changed it: %v -> %v", in, s, again)
		}
	})
}

func quoteFor(v string) string {
	if strings.ContainsRune(v, '"') {
		return "'" + v + "'"
	}
	return `"` + v + `"`
}

func validQuotable(v string) bool {
	return !(strings.ContainsRune(v, '"') && strings.ContainsRune(v, '\''))
}

func allQuotable(m map[string]string) bool {
	for _, v := range m {
		if !validQuotable(v) {
			return false
		}
	}
	return true
}
