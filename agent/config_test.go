package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func newFlags(c *Config, names ...string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	bindOptions(fs, c, names...)
	return fs
}

func fileReader(files map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
}

func TestResolvePrecedence(t *testing.T) {
	files := map[string]string{"/etc/sa": "SWARM_AGENT_ROLE=worker\nSWARM_AGENT_CLUSTER=from-file\nSWARM_AGENT_WAIT=3m\n"}
	tests := []struct {
		name        string
		args        []string
		env         []string
		wantRole    string
		wantCluster string
		wantWait    time.Duration
	}{
		{"file only", nil, []string{"SWARM_AGENT_CONFIG_FILE=/etc/sa"}, "worker", "from-file", 3 * time.Minute},
		{"env beats file", nil, []string{"SWARM_AGENT_CONFIG_FILE=/etc/sa", "SWARM_AGENT_CLUSTER=from-env"}, "worker", "from-env", 3 * time.Minute},
		{"flag beats env", []string{"--cluster=from-flag", "--role=manager"}, []string{"SWARM_AGENT_CONFIG_FILE=/etc/sa", "SWARM_AGENT_CLUSTER=from-env"}, "manager", "from-flag", 3 * time.Minute},
		{"config file flag", []string{"--config-file=/etc/sa"}, nil, "worker", "from-file", 3 * time.Minute},
		{"defaults", nil, nil, "", "default", 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			fs := newFlags(&c, "role", "cluster", "wait", "config-file")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := resolve(fs, tt.env, fileReader(files)); err != nil {
				t.Fatal(err)
			}
			if c.Role != tt.wantRole || c.Cluster != tt.wantCluster || c.Wait != tt.wantWait {
				t.Errorf("got role=%q cluster=%q wait=%s, want %q %q %s", c.Role, c.Cluster, c.Wait, tt.wantRole, tt.wantCluster, tt.wantWait)
			}
		})
	}
}

func TestConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want []string // substrings, one per expected line
	}{
		{"unknown role", []string{"--role=boss", "--discovery=provider=static managers=10.0.0.1"}, nil,
			[]string{`--role="boss" (SWARM_AGENT_ROLE): must be manager or worker`}},
		{"malformed discovery", []string{"--role=worker", "--discovery=provider=route53 zone_id"}, nil,
			[]string{`--discovery="provider=route53 zone_id" (SWARM_AGENT_DISCOVERY): discovery string: "zone_id" is not key=value`}},
		{"unknown provider", []string{"--role=worker", "--discovery=provider=etcd"}, nil,
			[]string{`unknown provider "etcd"`}},
		{"missing discovery", []string{"--role=worker"}, nil, []string{`--discovery="" (SWARM_AGENT_DISCOVERY): is required`}},
		{"two problems, two lines", []string{"--role=x", "--cluster=bad name", "--discovery=provider=static managers=1.2.3.4"}, nil,
			[]string{`--role="x"`, `--cluster="bad name"`}},
		{"misspelt variable", []string{"--role=worker", "--discovery=provider=static managers=1.2.3.4"}, []string{"SWARM_AGENT_ROEL=manager"},
			[]string{"environment variable SWARM_AGENT_ROEL: unknown setting"}},
		{"bad env value", []string{"--discovery=provider=static managers=1.2.3.4"}, []string{"SWARM_AGENT_WAIT=soon"},
			[]string{`environment variable SWARM_AGENT_WAIT="soon": time: invalid duration`}},
		{"static identity needs ip", []string{"--role=worker", "--discovery=provider=static managers=1.2.3.4", "--identity=static", "--instance-id=i-1"}, nil,
			[]string{`--private-ip="" (SWARM_AGENT_PRIVATE_IP): required with --identity=static`}},
		{"negative wait", []string{"--role=worker", "--discovery=provider=static managers=1.2.3.4", "--wait=-1s"}, nil,
			[]string{`--wait="-1s" (SWARM_AGENT_WAIT): must be a positive duration`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			fs := newFlags(&c, bootOptions...)
			if err := fs.Parse(append(tt.args, "--config-file=")); err != nil {
				t.Fatal(err)
			}
			err := resolve(fs, tt.env, fileReader(nil))
			if err == nil {
				err = c.validate(fs)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrUsage) || ExitCode(err) != ExitUsage {
				t.Errorf("error %v does not map to exit code %d", err, ExitUsage)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d lines %q, want %d", len(lines), lines, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{"plain", "A=1\n# c\n\nexport B=two words\n", map[string]string{"A": "1", "B": "two words"}, ""},
		{"quotes", "A=\"x \\\"y\\\" \\$z\"\nB='lit $x'\n", map[string]string{"A": `x "y" $z`, "B": "lit $x"}, ""},
		{"no equals", "A\n", nil, "line 1: want KEY=VALUE"},
		{"unterminated", "A=\"x\n", nil, "line 1: A: unterminated quote"},
		{"duplicate", "A=1\nA=2\n", nil, "line 2: A given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnvFile([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// FuzzEnvFileRoundTrip: whatever boot persists, the unit (and the next boot) reads back the same.
func FuzzEnvFileRoundTrip(f *testing.F) {
	f.Add("provider=route53 zone_id=Z1 name=m.example", "prod")
	f.Add(`a "quoted" $HOME \ value`, "x")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, disc, cluster string) {
		if strings.ContainsAny(disc+cluster, "\n\r\x00") {
			t.Skip("values are single-line")
		}
		var c Config
		fs := newFlags(&c, "discovery", "cluster")
		_ = fs.Set("discovery", disc)
		_ = fs.Set("cluster", cluster)
		m, err := ParseEnvFile(renderEnvFile(fs))
		if err != nil {
			t.Fatalf("rendered file does not parse: %v", err)
		}
		if m["SWARM_AGENT_DISCOVERY"] != disc || m["SWARM_AGENT_CLUSTER"] != cluster {
			t.Fatalf("round trip: %q %q -> %q %q", disc, cluster, m["SWARM_AGENT_DISCOVERY"], m["SWARM_AGENT_CLUSTER"])
		}
	})
}

// FuzzParseEnvFile: hand-written files never panic the parser.
func FuzzParseEnvFile(f *testing.F) {
	f.Add([]byte("A=1\nexport B='x'\n# c\n"))
	f.Add([]byte("A=\"\\\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseEnvFile(data)
	})
}

func TestRunBadInputExitCodes(t *testing.T) {
	dir := t.TempDir()
	base := []string{"--config-file=", "--status-file=" + filepath.Join(dir, "st.json"), "--persist=false"}
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		wantMsg  string
	}{
		{"unknown role", []string{"boot", "--role=captain", "--discovery=provider=static managers=10.0.0.1"}, nil, ExitUsage, "must be manager or worker"},
		{"malformed discovery", []string{"boot", "--role=worker", "--discovery=zone_id=Z1"}, nil, ExitUsage, "provider=NAME is missing"},
		{"unknown flag", []string{"boot", "--rolle=worker"}, nil, ExitUsage, "unknown flag"},
		{"unknown command", []string{"bootstrap"}, nil, ExitUsage, "unknown command"},
		{"drain: bad on-timeout", []string{"drain", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--on-timeout=maybe", "--config-file="}, nil, ExitUsage, "must be continue or abandon"},
		{"run: watch interval too long", []string{"run", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--watch-interval=5m", "--config-file="}, nil, ExitUsage, "must be 100ms..1m"},
		{"boot: log opts without a driver", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--docker-log-opts=max-size=10m"}, nil, ExitUsage, "needs --docker-log-driver"},
		{"run: reap grace too short", []string{"run", "--role=manager", "--discovery=provider=static managers=10.0.0.1", "--reap-grace=5s", "--config-file="}, nil, ExitUsage, "at least 1m"},
		{"drain: unreachable docker", []string{"drain", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--config-file=",
			"--docker-host=unix://" + filepath.Join(dir, "nope.sock"), "--identity=static", "--instance-id=i-1", "--private-ip=10.0.0.2"}, nil,
			ExitDocker, "not answering"},
		{"unreachable docker", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1",
			"--docker-host=unix://" + filepath.Join(dir, "nope.sock"), "--identity=static", "--instance-id=i-1", "--private-ip=10.0.0.2"}, nil,
			ExitDocker, "not answering"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := tt.args
			if args[0] == "boot" {
				args = append(args, base...)
			}
			code := run(context.Background(), env{stdout: &out, stderr: &errb, environ: tt.env, readFile: os.ReadFile}, args)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errb.String())
			}
			last := lastLine(errb.String())
			if !strings.HasPrefix(last, "swarm-agent: ") || !strings.Contains(last, tt.wantMsg) {
				t.Errorf("last stderr line %q, want \"swarm-agent: ...%s...\"", last, tt.wantMsg)
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestPersistedFileReadsBack: the file boot writes is read back by resolve (the unit, the next
// boot) to the same settings, with and without labels.
func TestPersistedFileReadsBack(t *testing.T) {
	for _, labels := range []string{"", "workload=database,tier=a"} {
		t.Run("labels="+labels, func(t *testing.T) {
			var c Config
			fs := newFlags(&c, "discovery", "cluster", "labels", "role")
			_ = fs.Set("discovery", "provider=static managers=10.0.0.1")
			_ = fs.Set("role", "worker")
			if labels != "" {
				_ = fs.Set("labels", labels)
			}
			data := renderEnvFile(fs)
			var back Config
			fs2 := newFlags(&back, "discovery", "cluster", "labels", "role")
			err := resolve(fs2, nil, func(string) ([]byte, error) { return data, nil })
			if err != nil {
				t.Fatalf("reading back %q: %v", data, err)
			}
			if back.Discovery != c.Discovery || back.Role != "worker" || len(back.Labels) != len(c.Labels) || back.Labels["workload"] != c.Labels["workload"] {
				t.Fatalf("read back %+v, want %+v", back, c)
			}
		})
	}
}
