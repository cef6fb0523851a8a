package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/discovery"
)

const secret = "9f1c7a52-5b1e-4a0b-8c1e-5d1b2e3f4a5b"

func TestFromSpec(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokenFile := write("token", secret+"\n")
	emptyFile := write("empty", "  \n")
	twoLines := write("two", secret+"\n"+secret+"\n")
	ca := write("ca.pem", "not checked here")
	cert := write("cert.pem", "x")
	key := write("key.pem", "x")
	missing := filepath.Join(dir, "missing")

	defaults := Config{Service: "swarm-manager", Scheme: "http", Address: "127.0.0.1:8500",
		LockTTL: 15 * time.Second, Prefix: "swarm-agent/prod", Port: 2377, Cluster: "prod"}
	with := func(f func(*Config)) Config {
		c := defaults
		f(&c)
		return c
	}

	tests := []struct {
		name    string
		in      string
		cluster string // "prod" when empty
		env     map[string]string
		want    Config
		err     string // substring; empty means success
	}{
		{name: "defaults", in: "provider=consul", want: defaults},
		{name: "every key", in: "provider=consul service=mgr address=https://consul.internal:8501 datacenter=eu-1 " +
			"token_file=" + tokenFile + " ca_file=" + ca + " cert_file=" + cert + " key_file=" + key +
			" tls_server_name=server.eu-1.consul lock_ttl=30s prefix=infra/swarm",
			want: Config{Service: "mgr", Scheme: "https", Address: "consul.internal:8501", Datacenter: "eu-1",
				Token: secret, TokenSource: "token_file=" + tokenFile, CAFile: ca, CertFile: cert, KeyFile: key,
				TLSServerName: "server.eu-1.consul", LockTTL: 30 * time.Second, Prefix: "infra/swarm", Port: 2377, Cluster: "prod"}},
		{name: "http scheme", in: "provider=consul address=http://10.0.0.5:8500",
			want: with(func(c *Config) { c.Address = "10.0.0.5:8500" })},
		{name: "ipv6 address", in: "provider=consul address=[::1]:8500",
			want: with(func(c *Config) { c.Address = "[::1]:8500" })},
		{name: "address from environment", in: "provider=consul", env: map[string]string{"CONSUL_HTTP_ADDR": "https://c:8501", "CONSUL_CACERT": ca},
			want: with(func(c *Config) { c.Scheme, c.Address, c.CAFile = "https", "c:8501", ca })},
		{name: "environment TLS ignored over http", in: "provider=consul", env: map[string]string{"CONSUL_CACERT": missing},
			want: defaults},
		{name: "other cluster", in: "provider=consul", cluster: "blue.green",
			want: with(func(c *Config) { c.Prefix, c.Cluster = "swarm-agent/blue.green", "blue.green" })},

		{name: "token from file", in: "provider=consul token_file=" + tokenFile,
			env:  map[string]string{"CONSUL_HTTP_TOKEN": "other"},
			want: with(func(c *Config) { c.Token, c.TokenSource = secret, "token_file="+tokenFile })},
		{name: "token from CONSUL_HTTP_TOKEN", in: "provider=consul", env: map[string]string{"CONSUL_HTTP_TOKEN": " " + secret + " "},
			want: with(func(c *Config) { c.Token, c.TokenSource = secret, "CONSUL_HTTP_TOKEN" })},
		{name: "SWARM_AGENT_CONSUL_TOKEN wins over CONSUL_HTTP_TOKEN", in: "provider=consul",
			env:  map[string]string{"CONSUL_HTTP_TOKEN": "other", "SWARM_AGENT_CONSUL_TOKEN": secret},
			want: with(func(c *Config) { c.Token, c.TokenSource = secret, "SWARM_AGENT_CONSUL_TOKEN" })},
		{name: "token from CONSUL_HTTP_TOKEN_FILE", in: "provider=consul", env: map[string]string{"CONSUL_HTTP_TOKEN_FILE": tokenFile},
			want: with(func(c *Config) { c.Token, c.TokenSource = secret, "CONSUL_HTTP_TOKEN_FILE="+tokenFile })},
		{name: "token file missing", in: "provider=consul token_file=" + missing,
			err: `token_file="` + missing + `": cannot read the ACL token`},
		{name: "token file empty", in: "provider=consul token_file=" + emptyFile, err: "the file is empty"},
		{name: "token file with two lines", in: "provider=consul token_file=" + twoLines, err: "one ACL token on one line"},
		{name: "token file empty path", in: "provider=consul token_file=", err: "token_file=\"\": must be a file path"},
		{name: "CONSUL_HTTP_TOKEN_FILE missing", in: "provider=consul", env: map[string]string{"CONSUL_HTTP_TOKEN_FILE": missing},
			err: `CONSUL_HTTP_TOKEN_FILE="` + missing + `"`},
		{name: "token as a key", in: "provider=consul token=" + secret, err: "token=<redacted>: the ACL token is never a discovery key"},

		{name: "wrong provider", in: "provider=static managers=10.0.0.1", err: `provider "static": want consul`},
		{name: "unknown key", in: "provider=consul servce=x", err: `unknown key "servce"`},
		{name: "bad service", in: "provider=consul service=-x", err: `service="-x": must be 1-63 letters`},
		{name: "service with space", in: `provider=consul service="swarm manager"`, err: `service="swarm manager"`},
		{name: "address without port", in: "provider=consul address=consul", err: `address="consul": must be [http[s]://]HOST:PORT`},
		{name: "address bad port", in: "provider=consul address=consul:0", err: `address="consul:0": port must be 1..65535`},
		{name: "address bad scheme", in: "provider=consul address=unix:///run/consul.sock", err: `scheme "unix": must be http or https`},
		{name: "address from environment bad", in: "provider=consul", env: map[string]string{"CONSUL_HTTP_ADDR": "nope"},
			err: `address (from CONSUL_HTTP_ADDR)="nope"`},
		{name: "bad datacenter", in: "provider=consul datacenter=eu/1", err: `datacenter="eu/1"`},
		{name: "ca_file over http", in: "provider=consul ca_file=" + ca, err: "TLS settings need an https:// address"},
		{name: "ca_file missing", in: "provider=consul address=https://c:8501 ca_file=" + missing, err: `ca_file="` + missing + `": must be a readable file`},
		{name: "cert without key", in: "provider=consul address=https://c:8501 cert_file=" + cert, err: "give both or neither"},
		{name: "lock_ttl not a duration", in: "provider=consul lock_ttl=15", err: `lock_ttl="15": must be a duration`},
		{name: "lock_ttl below Consul minimum", in: "provider=consul lock_ttl=5s", err: `lock_ttl="5s": must be between 10s and 24h0m0s`},
		{name: "lock_ttl above Consul maximum", in: "provider=consul lock_ttl=25h", err: `lock_ttl="25h": must be between`},
		{name: "prefix with leading slash", in: "provider=consul prefix=/swarm", err: `prefix="/swarm": must be a KV path`},
		{name: "prefix with empty segment", in: "provider=consul prefix=a//b", err: `prefix="a//b": must not hold empty`},
		{name: "prefix with dot-dot", in: "provider=consul prefix=a/../b", err: `prefix="a/../b"`},
		{name: "no cluster and no prefix", in: "provider=consul", cluster: "-", err: "no cluster name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := discovery.Parse(tt.in)
			if err != nil {
				t.Fatalf("parse %q: %v", tt.in, err)
			}
			cluster := tt.cluster
			switch cluster {
			case "":
				cluster = "prod"
			case "-":
				cluster = ""
			}
			getenv := func(k string) string { return tt.env[k] }
			got, err := FromSpec(spec, cluster, getenv)
			if tt.err != "" {
				if err == nil {
					t.Fatalf("got %+v, want error containing %q", got, tt.err)
				}
				if !errors.Is(err, discovery.ErrDiscoveryConfig) {
					t.Errorf("error %q does not wrap ErrDiscoveryConfig", err)
				}
				if !strings.Contains(err.Error(), tt.err) {
					t.Errorf("got error %q, want it to contain %q", err, tt.err)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows the ACL token", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %+v", err, tt.want)
			}
			if got != tt.want {
				t.Errorf("got  %#v\nwant %#v (tokens equal: %v)", got, tt.want, got.Token == tt.want.Token)
			}
		})
	}
}

func TestConfigNeverShowsToken(t *testing.T) {
	c := Config{Token: secret, TokenSource: "CONSUL_HTTP_TOKEN"}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c.Token), string(b)} {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows the token", s)
		}
	}
}

func TestHelpListsEveryKey(t *testing.T) {
	h := Help()
	for _, k := range knownKeys {
		if !strings.Contains(h, k+"=") {
			t.Errorf("Help() does not mention %s=", k)
		}
	}
}
