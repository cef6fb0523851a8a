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

// staticArgs is a valid command line with a static identity, which bad values are added to.
var staticArgs = []string{"--role=worker", "--discovery=provider=static managers=10.0.0.1", "--identity=static", "--instance-id=i-1", "--private-ip=10.0.0.2"}

// long is a 100 KB bad value: error lines show its start and its length, never all of it.
var long = strings.Repeat("a", 100000)

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
		{"az: shell syntax", append(staticArgs, "--az=us-east-1a$(reboot)"), nil,
			[]string{`--az="us-east-1a$(reboot)" (SWARM_AGENT_AZ): must be an availability zone such as us-east-1a`}},
		{"az: a region", append(staticArgs, "--az=us-east-1"), nil, []string{`--az="us-east-1" (SWARM_AGENT_AZ): must be an availability zone`}},
		{"az: newline", append(staticArgs, "--az=us-east-1a\nlabels=x"), nil,
			[]string{`--az="us-east-1a\nlabels=x" (SWARM_AGENT_AZ): must be one line without control characters`}},
		{"az: 100 KB, cut", append(staticArgs, "--az="+long), nil,
			[]string{`--az="` + long[:64] + `..." (100000 bytes) (SWARM_AGENT_AZ): must be at most 4096 bytes`}},
		{"az: 1000 bytes of a zone's shape, cut", append(staticArgs, "--az=us-"+strings.Repeat("e", 1000)+"-1a"), nil,
			[]string{`--az="us-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee..." (1006 bytes) (SWARM_AGENT_AZ): must be an availability zone`}},
		{"az: another region's zone", append(staticArgs, "--az=us-west-2-lax-1a", "--region=us-east-1"), nil,
			[]string{`--az="us-west-2-lax-1a" (SWARM_AGENT_AZ): is a zone of us-west-2, not of --region=us-east-1`}},
		{"region: a zone", append(staticArgs, "--region=us-east-1a"), nil,
			[]string{`--region="us-east-1a" (SWARM_AGENT_REGION): must be an AWS region such as us-east-1`}},
		{"region: underscores", append(staticArgs, "--region=eu_west_1"), nil, []string{`--region="eu_west_1" (SWARM_AGENT_REGION): must be an AWS region`}},
		{"region: from the environment, cut", staticArgs, []string{"SWARM_AGENT_REGION=" + long},
			[]string{`--region="` + long[:64] + `..." (100000 bytes) (SWARM_AGENT_REGION): must be at most 4096 bytes`}},
		{"log driver: shell syntax", append(staticArgs, "--docker-log-driver=journald; reboot"), nil,
			[]string{`--docker-log-driver="journald; reboot" (SWARM_AGENT_DOCKER_LOG_DRIVER): must be one of Docker's log drivers (json-file, local, journald,`}},
		{"log driver: upper case", append(staticArgs, "--docker-log-driver=JSON-FILE"), nil, []string{`--docker-log-driver="JSON-FILE"`}},
		{"log driver: a path", append(staticArgs, "--docker-log-driver=../../etc/passwd"), nil, []string{`--docker-log-driver="../../etc/passwd"`}},
		{"log driver: empty tag", append(staticArgs, "--docker-log-driver=grafana/loki-docker-driver:"), nil, []string{`--docker-log-driver="grafana/loki-docker-driver:"`}},
		{"log driver: too long a plugin", append(staticArgs, "--docker-log-driver="+strings.Repeat("a", 300)), nil,
			[]string{`--docker-log-driver="` + strings.Repeat("a", 64) + `..." (300 bytes) (SWARM_AGENT_DOCKER_LOG_DRIVER): must be one of`}},
		{"log opts: bad name", append(staticArgs, "--docker-log-driver=awslogs", "--docker-log-opts=awslogs group=x"), nil,
			[]string{`--docker-log-opts="awslogs group=x" (SWARM_AGENT_DOCKER_LOG_OPTS): option names are 1-64 letters`}},
		{"log opts: long value, cut", append(staticArgs, "--docker-log-driver=awslogs", "--docker-log-opts=tag="+strings.Repeat("t", 2000)), nil,
			[]string{`--docker-log-opts="tag=` + strings.Repeat("t", 60) + `..." (2004 bytes) (SWARM_AGENT_DOCKER_LOG_OPTS): values are one line of at most 1024 bytes`}},
		{"warm images: shell syntax", append(staticArgs, "--warm-pull-images=nginx:1.27,busybox;reboot"), nil,
			[]string{`--warm-pull-images="busybox;reboot" (SWARM_AGENT_WARM_PULL_IMAGES): must be image references as docker pull takes them`}},
		{"warm images: upper case", append(staticArgs, "--warm-pull-images=Nginx"), nil, []string{`--warm-pull-images="Nginx"`}},
		{"warm images: empty entry", append(staticArgs, "--warm-pull-images=nginx,,busybox"), nil, []string{`--warm-pull-images="" (SWARM_AGENT_WARM_PULL_IMAGES): must be image references`}},
		{"warm images: too many", append(staticArgs, "--warm-pull-images="+strings.Repeat("a,", 100)+"a"), nil, []string{`at most 100 images`}},
		{"labels: newline in a value", append(staticArgs, "--labels=workload=db\nx"), nil,
			[]string{`--labels="workload=db\nx" (SWARM_AGENT_LABELS): values are one line`}},
		{"labels: bad key", append(staticArgs, "--labels=work load=db"), nil, []string{`--labels="work load=db" (SWARM_AGENT_LABELS): label keys are`}},
		{"docker host without a scheme", append(staticArgs, "--docker-host=/var/run/docker.sock"), nil,
			[]string{`--docker-host="/var/run/docker.sock" (SWARM_AGENT_DOCKER_HOST): must be unix:///path/docker.sock`}},
		{"min docker version", append(staticArgs, "--min-docker-version=latest"), nil,
			[]string{`--min-docker-version="latest" (SWARM_AGENT_MIN_DOCKER_VERSION): must be a version such as 20.10.0`}},
		{"a path with a newline", append(staticArgs, "--daemon-config=/etc/docker/daemon.json\n"), nil,
			[]string{`--daemon-config="/etc/docker/daemon.json\n" (SWARM_AGENT_DAEMON_CONFIG): must be one line`}},
		{"bad env value, cut", staticArgs, []string{"SWARM_AGENT_WAIT=" + long},
			[]string{`environment variable SWARM_AGENT_WAIT="` + long[:64] + `..." (100000 bytes): not a valid duration`}},
		{"autolock on a worker", append(staticArgs, "--autolock"), nil,
			[]string{`--autolock="true" (SWARM_AGENT_AUTOLOCK): only managers keep the unlock key`}},
		{"two bad settings, one line each", append(staticArgs, "--az=x", "--region=y", "--docker-log-driver=Z"), nil,
			[]string{`--region="y"`, `--az="x"`, `--docker-log-driver="Z"`}},
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

// TestConfigAcceptsRealNames: the names AWS and Docker really use pass validation.
func TestConfigAcceptsRealNames(t *testing.T) {
	tests := [][]string{
		{"--az=us-east-1a", "--region=us-east-1"},
		{"--az=us-west-2-lax-1a", "--region=us-west-2"},
		{"--az=us-east-1-wl1-bos-wlz-1"},
		{"--az=us-gov-west-1a", "--region=us-gov-west-1"},
		{"--region=cn-north-1"},
		{"--region=eu-central-2"},
		{"--az=", "--region="},
		{"--docker-log-driver=json-file", "--docker-log-opts=max-size=10m,max-file=3"},
		{"--docker-log-driver=awslogs", "--docker-log-opts=awslogs-group=swarm,tag={{.Name}}/{{.ID}}"},
		{"--docker-log-driver=none"},
		{"--docker-log-driver=loki"}, // a plugin installed with --alias loki
		{"--docker-log-driver=grafana/loki-docker-driver:3.3.2-amd64"},
		{"--docker-log-driver=registry.example.com:5000/team/log-plugin:v1"},
		{"--labels=workload=database,tier=a/b"},
		{"--docker-host=unix:///var/run/docker.sock"},
		{"--docker-host=tcp://127.0.0.1:2375"},
		{"--min-docker-version=24.0"},
		{"--min-docker-version=v20.10.7-ce"},
		{"--warm-pull-images=nginx:1.27,registry.example.com:5000/team/app@sha256:" + strings.Repeat("0", 64) + ",localhost:1/busybox:test"},
		{"--warm-pull-images="},
		{"--role=manager", "--autolock"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var c Config
			fs := newFlags(&c, bootOptions...)
			if err := fs.Parse(append(append(append([]string{}, staticArgs...), args...), "--config-file=")); err != nil {
				t.Fatal(err)
			}
			if err := resolve(fs, nil, fileReader(nil)); err != nil {
				t.Fatal(err)
			}
			if err := c.validate(fs); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

// TestShowValue: a bad value in an error line is quoted whole up to 64 bytes, else cut on a
// character boundary and followed by its length.
func TestShowValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"us-east-1a", `"us-east-1a"`},
		{"a\nb", `"a\nb"`},
		{strings.Repeat("x", 64), `"` + strings.Repeat("x", 64) + `"`},
		{strings.Repeat("x", 65), `"` + strings.Repeat("x", 64) + `..." (65 bytes)`},
		{strings.Repeat("x", 63) + "é" + "x", `"` + strings.Repeat("x", 63) + `..." (66 bytes)`}, // é is 2 bytes: not split
		{long, `"` + long[:64] + `..." (100000 bytes)`},
	}
	for _, tt := range tests {
		if got := showValue(tt.in); got != tt.want {
			t.Errorf("showValue(%d bytes) = %s, want %s", len(tt.in), got, tt.want)
		}
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
		{"boot: bad az", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--az=us-east-1a`reboot`"}, nil, ExitUsage, "must be an availability zone"},
		{"boot: bad region", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--region=moon-1"}, nil, ExitUsage, "must be an AWS region"},
		{"boot: bad log driver", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--docker-log-driver=json file"}, nil, ExitUsage, "must be one of Docker's log drivers"},
		{"drain: bad az", []string{"drain", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--az=x", "--config-file="}, nil, ExitUsage, "must be an availability zone"},
		{"run: bad region", []string{"run", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--region=us-east-1\n", "--config-file="}, nil, ExitUsage, "must be one line"},
		{"boot: long bad duration, cut", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--wait=" + long}, nil, ExitUsage,
			`--wait="` + long[:64] + `..." (100000 bytes) (SWARM_AGENT_WAIT): not a valid duration`},
		{"boot: short bad duration, whole", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--wait=soon"}, nil, ExitUsage,
			`--wait="soon" (SWARM_AGENT_WAIT): time: invalid duration "soon"`},
		{"long unknown flag, cut", []string{"boot", "--" + long + "=1"}, nil, ExitUsage, `unknown flag: "--` + long[:62] + `..." (100002 bytes)`},
		{"long unknown shorthand, cut", []string{"boot", "-" + long}, nil, ExitUsage, `"unknown shorthand flag: 'a' in -aaaa`},
		{"drain: bad on-timeout", []string{"drain", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--on-timeout=maybe", "--config-file="}, nil, ExitUsage, "must be continue or abandon"},
		{"drain: notify url without a host, the URL not echoed", []string{"drain", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--notify-url=https:///T0/B0/hook-secret", "--config-file="}, nil, ExitUsage, "--notify-url/--notify-template (SWARM_AGENT_NOTIFY_URL, SWARM_AGENT_NOTIFY_TEMPLATE): no host"},
		{"run: notify template that does not parse", []string{"run", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--notify-url=https://hooks.example.com/x", "--notify-template={{.Event", "--config-file="}, nil, ExitUsage, "template:"},
		{"run: notify timeout too long", []string{"run", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--notify-timeout=10m", "--config-file="}, nil, ExitUsage, "up to 1m"},
		{"run: watch interval too long", []string{"run", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--watch-interval=5m", "--config-file="}, nil, ExitUsage, "must be 100ms..1m"},
		{"boot: log opts without a driver", []string{"boot", "--role=worker", "--discovery=provider=static managers=10.0.0.1", "--docker-log-opts=max-size=10m"}, nil, ExitUsage, "needs --docker-log-driver"},
		{"run: rebalance cooldown too short", []string{"run", "--role=manager", "--discovery=provider=static managers=10.0.0.1", "--rebalance-cooldown=0s", "--config-file="}, nil, ExitUsage, "--rebalance-cooldown=\"0s\" (SWARM_AGENT_REBALANCE_COOLDOWN): must be 1s..1h"},
		{"run: resize interval too long", []string{"run", "--role=manager", "--discovery=provider=static managers=10.0.0.1", "--resize-interval=2m", "--config-file="}, nil, ExitUsage, "must be 1s..1m"},
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
				t.Errorf("last stderr line %q, want \"swarm-agent: ...%s...\"", showValue(last), tt.wantMsg)
			}
			if strings.Contains(errb.String(), "hook-secret") {
				t.Errorf("stderr shows the webhook's path: %s", errb.String())
			}
			if errb.Len() > 2000 {
				t.Errorf("stderr is %d bytes: a long value was echoed whole", errb.Len())
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
