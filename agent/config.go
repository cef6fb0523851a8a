package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/control"
	"github.com/swarm-agent/swarm-agent/lifecycle/imds"
	"github.com/swarm-agent/swarm-agent/notify"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// EnvPrefix prefixes every environment variable (and config-file key) the agent reads.
const EnvPrefix = "SWARM_AGENT_"

// DefaultConfigFile is where boot persists its configuration for the systemd unit.
const DefaultConfigFile = "/etc/default/swarm-agent"

// Config is the agent's configuration: flags, then SWARM_AGENT_* environment, then the
// config file, then defaults.
type Config struct {
	Role             string
	Cluster          string
	Discovery        string
	Wait             time.Duration
	DryRun           bool
	DockerHost       string
	Labels           map[string]string
	Availability     string
	LogFormat        string
	LogLevel         string
	Identity         string // imds | static
	InstanceID       string // static identity
	PrivateIP        string // static identity
	AZ               string // static identity
	Region           string
	TokenStore       string // auto | ssm | secretsmanager | consul
	KMSKeyID         string
	Autolock         bool // managers: keep the swarm autolocked, its unlock key in the token store
	SwarmPort        int
	MinDockerVersion string
	StatusFile       string
	ConfigFile       string
	Persist          bool
	MetricsListen    string
	DrainDeadline    time.Duration
	OnTimeout        string
	ForceLastManager bool
	ControlPort      int
	ReapGrace        time.Duration
	WatchInterval    time.Duration
	HeartbeatEvery   time.Duration
	QueueURL         string
	DaemonConfig     string
	DrainOnRebalance bool
	MaintenanceLead  time.Duration
	DockerLogDriver  string
	DockerLogOpts    map[string]string
	DockerPIDFile    string
	QueueGrace       time.Duration
	NotifyURL        string
	NotifyTemplate   string
	NotifyTimeout    time.Duration
	LaunchHookName   string
	// WarmPullImages are the images an instance in its group's warm pool pulls while it
	// prepares (engine.ParseImageRef's normalized forms once validated).
	WarmPullImages []string
	// RebalanceCooldown and ResizeInterval tune the leader's scale-out (lifecycle/scaleout).
	RebalanceCooldown time.Duration
	ResizeInterval    time.Duration
	// Spec is Discovery parsed.
	Spec discovery.Spec
}

// option ties one setting to its flag, variable and validation.
type option struct {
	name    string // flag name; env is SWARM_AGENT_ + upper snake
	usage   string
	persist bool // written to the config file by boot
	bind    func(fs *pflag.FlagSet, c *Config)
}

func envName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// options lists every setting once; commands pick the ones they take.
var options = map[string]option{
	"role": {"role", "swarm role of this node: manager or worker", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.Role, "role", "", "")
	}},
	"cluster": {"cluster", "cluster name: scopes the token store paths and the lock (letters, digits, . _ -; up to 64)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.Cluster, "cluster", "default", "")
	}},
	"discovery": {"discovery", `how managers are found: "provider=route53 zone_id=Z.. name=managers.example.internal", "provider=consul service=swarm-manager" or "provider=static managers=10.0.0.1,10.0.0.2"`, true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.Discovery, "discovery", "", "")
	}},
	"wait": {"wait", "give up booting after this long (exit code 6)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.Wait, "wait", 10*time.Minute, "")
	}},
	"dry-run": {"dry-run", "print the decision boot would take and change nothing", false, func(fs *pflag.FlagSet, c *Config) {
		fs.BoolVar(&c.DryRun, "dry-run", false, "")
	}},
	"docker-host": {"docker-host", "Docker engine address (default: DOCKER_HOST or unix:///var/run/docker.sock)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.DockerHost, "docker-host", "", "")
	}},
	"labels": {"labels", "operator node labels, key=value[,key=value] (e.g. workload=database)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringToStringVar(&c.Labels, "labels", nil, "")
	}},
	"availability": {"availability", "availability of a manager node: active or drain (keep managers free of tasks)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.Availability, "availability", "active", "")
	}},
	"log-format": {"log-format", "json, console or auto (console on a terminal)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.LogFormat, "log-format", "auto", "")
	}},
	"log-level": {"log-level", "debug, info, warn or error", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.LogLevel, "log-level", "info", "")
	}},
	"identity": {"identity", "where the node's identity comes from: imds (EC2 instance metadata, IMDSv2) or static", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.Identity, "identity", "imds", "")
	}},
	"instance-id": {"instance-id", "static identity: instance id", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.InstanceID, "instance-id", "", "")
	}},
	"private-ip": {"private-ip", "static identity: private IPv4 address to advertise", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.PrivateIP, "private-ip", "", "")
	}},
	"az": {"az", "static identity: availability zone", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.AZ, "az", "", "")
	}},
	"region": {"region", "AWS region (default: from instance metadata)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.Region, "region", "", "")
	}},
	"token-store": {"token-store", "where join tokens live: auto (consul for provider=consul, else ssm), ssm, secretsmanager (for clusters where hundreds of nodes boot at once) or consul", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.TokenStore, "token-store", "auto", "")
	}},
	"kms-key-id": {"kms-key-id", "KMS key for the join tokens in SSM (SecureString) or Secrets Manager (default: the account's aws/ssm or aws/secretsmanager key)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.KMSKeyID, "kms-key-id", "", "")
	}},
	"autolock": {"autolock", "managers: create the swarm autolocked (or turn autolock on), keep its unlock key in the token store (readable by managers only) and unlock a restarted manager with it; the leader republishes it after `docker swarm unlock-key --rotate`", true, func(fs *pflag.FlagSet, c *Config) {
		fs.BoolVar(&c.Autolock, "autolock", false, "")
	}},
	"swarm-port": {"swarm-port", "swarm manager port", true, func(fs *pflag.FlagSet, c *Config) {
		fs.IntVar(&c.SwarmPort, "swarm-port", 2377, "")
	}},
	"min-docker-version": {"min-docker-version", "lowest Docker Engine version accepted", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.MinDockerVersion, "min-docker-version", "20.10.0", "")
	}},
	"status-file": {"status-file", "where boot and run record what they are doing (read by status)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.StatusFile, "status-file", "/run/swarm-agent/status.json", "")
	}},
	"config-file": {"config-file", "environment file read after flags and environment; boot writes its settings there", false, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.ConfigFile, "config-file", DefaultConfigFile, "")
	}},
	"persist": {"persist", "boot: write the effective settings to --config-file for the systemd unit and reboots", false, func(fs *pflag.FlagSet, c *Config) {
		fs.BoolVar(&c.Persist, "persist", true, "")
	}},
	"notify-url": {"notify-url", "drain: webhook (http or https URL) that gets a POST when a drain starts and when it ends; never blocks the drain, never logged (only its host)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.NotifyURL, "notify-url", "", "")
	}},
	"notify-template": {"notify-template", "drain: Go text/template of the webhook's body over the event (.Event .Cluster .InstanceID .NodeID .Kind .Source .Result .Error .Seconds .Time); default: the event as JSON", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.NotifyTemplate, "notify-template", "", "")
	}},
	"notify-timeout": {"notify-timeout", "drain: timeout of one webhook attempt (4 attempts, 1, 2 and 4 s apart)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.NotifyTimeout, "notify-timeout", 5*time.Second, "")
	}},
	"drain-deadline": {"drain-deadline", "drain: how long tasks may take to start elsewhere before --on-timeout applies", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.DrainDeadline, "drain-deadline", 10*time.Minute, "")
	}},
	"on-timeout": {"on-timeout", "drain: after --drain-deadline, continue (complete the hook with CONTINUE) or abandon (ABANDON)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.OnTimeout, "on-timeout", "continue", "")
	}},
	"force-last-manager": {"force-last-manager", "drain: allow demoting and removing the last manager (the swarm ends)", false, func(fs *pflag.FlagSet, c *Config) {
		fs.BoolVar(&c.ForceLastManager, "force-last-manager", false, "")
	}},
	"control-port": {"control-port", "port of the managers' control API (mutual TLS with the swarm's node certificates)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.IntVar(&c.ControlPort, "control-port", control.DefaultPort, "")
	}},
	"reap-grace": {"reap-grace", "run (leader): how long a node must be down, with its instance gone or held by the termination hook, before it is removed", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.ReapGrace, "reap-grace", 5*time.Minute, "")
	}},
	"watch-interval": {"watch-interval", "run: how often instance metadata is read for a termination or spot notice", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.WatchInterval, "watch-interval", 5*time.Second, "")
	}},
	"launch-hook-name": {"launch-hook-name", "boot: the group's launch lifecycle hook (EC2_INSTANCE_LAUNCHING), heartbeated while boot works and completed once the node is in the swarm; empty: boot makes no Auto Scaling call and completes none (in queue mode the leader does, after --queue-grace, picking the group's only launch hook unless this names one)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.LaunchHookName, "launch-hook-name", "", "")
	}},
	"warm-pull-images": {"warm-pull-images", "boot and run on an instance in its group's warm pool (target lifecycle state Warmed:*): images to pull while it prepares, image[,image]; such an instance does not join the swarm until it goes InService", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringSliceVar(&c.WarmPullImages, "warm-pull-images", nil, "")
	}},
	"heartbeat-interval": {"heartbeat-interval", "boot and drain: lifecycle heartbeat interval (default: a third of the hook's HeartbeatTimeout)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.HeartbeatEvery, "heartbeat-interval", 0, "")
	}},
	"daemon-config": {"daemon-config", "Docker's daemon.json, where boot merges the engine labels (instance id, AZ, instance type, role, --labels) and live-restore=false; \"\" leaves it alone", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.DaemonConfig, "daemon-config", "/etc/docker/daemon.json", "")
	}},
	"docker-log-driver": {"docker-log-driver", "log driver written to daemon.json for the engine (e.g. awslogs, journald); empty keeps the file's", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.DockerLogDriver, "docker-log-driver", "", "")
	}},
	"docker-log-opts": {"docker-log-opts", "log options written to daemon.json with --docker-log-driver, key=value[,key=value]", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringToStringVar(&c.DockerLogOpts, "docker-log-opts", nil, "")
	}},
	"docker-pidfile": {"docker-pidfile", "dockerd's pid file, to reload daemon.json with SIGHUP when systemd does not run the machine", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.DockerPIDFile, "docker-pidfile", "/var/run/docker.pid", "")
	}},
	"drain-on-rebalance": {"drain-on-rebalance", "run: also drain on an EC2 rebalance recommendation (a spot instance at elevated risk of interruption)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.BoolVar(&c.DrainOnRebalance, "drain-on-rebalance", false, "")
	}},
	"maintenance-lead": {"maintenance-lead", "run: how long before an EC2 scheduled event's window (instance metadata events/maintenance/scheduled) the node drains: a reboot or host maintenance drains it and makes it active again once the instance is back, a stop or retirement drains it out of the swarm; 0 ignores scheduled events", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.MaintenanceLead, "maintenance-lead", lifecycle.DefaultMaintenanceLead, "")
	}},
	"queue-url": {"queue-url", "run (leader): SQS queue of lifecycle notices (hook notifications, EventBridge or SNS) for any node of the cluster, so that a node whose own agent is dead is still drained, and one in the swarm whose agent did not complete its launch action gets it completed", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.QueueURL, "queue-url", "", "")
	}},
	"queue-grace": {"queue-grace", "run (leader): how long a queued notice waits for the node's own agent to start draining before the leader drains it (launch: to complete its launch action once its node is in the swarm)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.QueueGrace, "queue-grace", 30*time.Second, "")
	}},
	"rebalance-cooldown": {"rebalance-cooldown", "run (leader): how long after the last node joined before services labelled swarm-agent.rebalance=true are spread onto the new nodes and swarm-agent.replicas-per-node services grow: joins within it make one rebalance", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.RebalanceCooldown, "rebalance-cooldown", time.Minute, "")
	}},
	"resize-interval": {"resize-interval", "run (leader): least time between two changes of the replicas of one swarm-agent.replicas-per-node service (1s..1m: a leaving node's drain waits for its shrink)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.DurationVar(&c.ResizeInterval, "resize-interval", 30*time.Second, "")
	}},
	"metrics-listen": {"metrics-listen", "run: address of the metrics and health endpoint (localhost only)", true, func(fs *pflag.FlagSet, c *Config) {
		fs.StringVar(&c.MetricsListen, "metrics-listen", "127.0.0.1:9477", "")
	}},
}

// bindOptions registers the named options on fs.
func bindOptions(fs *pflag.FlagSet, c *Config, names ...string) {
	for _, n := range names {
		o, ok := options[n]
		if !ok {
			panic("unknown option " + n) // programming error, caught by tests
		}
		o.bind(fs, c)
		f := fs.Lookup(n)
		f.Usage = fmt.Sprintf("%s [%s]", o.usage, envName(n))
	}
}

// ConfigError lists every problem found in the configuration, one line each.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string { return strings.Join(e.Problems, "\n") }

// ErrUsage marks usage errors (exit code 2).
var ErrUsage = errors.New("usage")

func (e *ConfigError) Unwrap() error { return ErrUsage }

// resolve fills every flag the user did not set from the environment, then the config file.
// Unknown SWARM_AGENT_* names are reported: a misspelt variable must not pass silently.
func resolve(fs *pflag.FlagSet, environ []string, readFile func(string) ([]byte, error)) error {
	var problems []string
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	known := map[string]bool{}
	for n := range options {
		known[envName(n)] = true
	}
	known[EnvPrefix+"CONFIG_FILE"] = true
	for k := range env {
		if !known[k] && !strings.HasPrefix(k, EnvPrefix+"TEST_") {
			problems = append(problems, fmt.Sprintf("environment variable %s: unknown setting", k))
		}
	}
	// Which config file: flag, then env, then default.
	path := DefaultConfigFile
	if f := fs.Lookup("config-file"); f != nil && f.Changed {
		path = f.Value.String()
	} else if v, ok := env[EnvPrefix+"CONFIG_FILE"]; ok {
		path = v
	}
	file := map[string]string{}
	if path != "" && readFile != nil {
		data, err := readFile(path)
		switch {
		case err == nil:
			file, err = ParseEnvFile(data)
			if err != nil {
				problems = append(problems, fmt.Sprintf("config file %s: %v", path, err))
			}
			for k := range file {
				if !known[k] {
					problems = append(problems, fmt.Sprintf("config file %s: %s: unknown setting", path, k))
				}
			}
		case errors.Is(err, os.ErrNotExist):
		default:
			problems = append(problems, fmt.Sprintf("config file %s: %v", path, err))
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := envName(f.Name)
		src, v, ok := "environment variable "+name, env[name], false
		if _, ok = env[name]; !ok {
			v, ok = file[name]
			src = fmt.Sprintf("%s in %s", name, path)
		}
		if f.Name == "config-file" {
			if ev, eok := env[name]; eok {
				v, ok, src = ev, true, "environment variable "+name
			} else {
				ok = false
			}
		}
		if !ok {
			return
		}
		if v == "" && f.Value.Type() == "stringToString" {
			return // an empty map, as renderEnvFile writes it
		}
		if err := f.Value.Set(v); err != nil {
			problems = append(problems, fmt.Sprintf("%s=%s: %s", src, showValue(v), parseRule(f, v, err)))
		}
	})
	if len(problems) > 0 {
		sort.Strings(problems)
		return &ConfigError{problems}
	}
	return nil
}

var (
	clusterRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)
	instanceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// hookNameRE is Auto Scaling's rule for a lifecycle hook name.
	hookNameRE = regexp.MustCompile(`^[A-Za-z0-9\-_/]{1,255}$`)
	// A log driver plugin: [registry[:port]/]path[/path...][:tag], as docker plugin install names it.
	logPluginRE  = regexp.MustCompile(`^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)
	logOptKeyRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	versionRE    = regexp.MustCompile(`^v?[0-9]{1,4}(?:\.[0-9]{1,4}){0,3}(?:[-+][0-9A-Za-z.-]{1,32})?$`)
	dockerHostRE = regexp.MustCompile(`^(unix|tcp|ssh|npipe)://.+$`)
)

// Docker's built-in log drivers (docker info: Plugins.Log).
var logDrivers = []string{"json-file", "local", "journald", "syslog", "gelf", "fluentd", "awslogs",
	"splunk", "etwlogs", "gcplogs", "logentries", "none"}

// Bounds of string settings. Every string setting is one line of at most maxValueLen bytes
// (boot persists it in an environment file; it flows into labels and daemon.json); some have
// tighter bounds of their own.
const (
	maxValueLen     = 4096 // PATH_MAX; the longest paths and URLs
	maxLogDriverLen = 255  // a plugin reference
	maxMapValueLen  = 1024 // a --labels or --docker-log-opts value
	maxWarmImages   = 100  // --warm-pull-images
	maxShown        = 64   // how much of a bad value an error line shows
)

// showValue quotes a value for an error line. A value longer than maxShown bytes is cut to its
// first maxShown bytes (on a character boundary) and followed by its length, so that a 100 KB
// value makes a readable line: "aaaa..." (100000 bytes).
func showValue(v string) string {
	if len(v) <= maxShown {
		return strconv.Quote(v)
	}
	n := maxShown
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return fmt.Sprintf("%s (%d bytes)", strconv.Quote(v[:n]+"..."), len(v))
}

// parseRule is what a line says of a value v that does not parse as flag f's type. The parser's
// message repeats the value whole, so it is kept only for a value that showValue shows whole.
func parseRule(f *pflag.Flag, v string, err error) string {
	if len(v) > maxShown {
		return "not a valid " + f.Value.Type()
	}
	return err.Error()
}

// flagError is the usage error for a command line that does not parse, with a bad value or
// unknown flag name shown as showValue shows it.
func flagError(err error) error {
	var invalid *pflag.InvalidValueError
	var unknown *pflag.NotExistError
	switch {
	case errors.As(err, &invalid) && invalid.GetFlag() != nil:
		f, v := invalid.GetFlag(), invalid.GetValue()
		return &ConfigError{[]string{fmt.Sprintf("--%s=%s (%s): %s", f.Name, showValue(v), envName(f.Name), parseRule(f, v, invalid.Unwrap()))}}
	case errors.As(err, &unknown) && len(unknown.GetSpecifiedName()) > maxShown:
		return &ConfigError{[]string{"unknown flag: " + showValue("--"+unknown.GetSpecifiedName())}}
	case len(err.Error()) > 4*maxShown:
		return &ConfigError{[]string{showValue(err.Error())}}
	}
	return &ConfigError{[]string{err.Error()}}
}

// controlChar reports whether s holds a control character (newline, tab, NUL, DEL, ...).
func controlChar(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// validLogDriver: one of Docker's log drivers or a log driver plugin reference.
func validLogDriver(s string) bool {
	return slices.Contains(logDrivers, s) || (len(s) <= maxLogDriverLen && logPluginRE.MatchString(s))
}

// validate checks the settings a command uses and parses the discovery string.
func (c *Config) validate(fs *pflag.FlagSet) error {
	var p []string
	has := func(n string) bool { return fs.Lookup(n) != nil }
	failed := map[string]bool{} // one line per flag: the first rule it breaks
	bad := func(flag, val, rule string) {
		if failed[flag] {
			return
		}
		failed[flag] = true
		p = append(p, fmt.Sprintf("--%s=%s (%s): %s", flag, showValue(val), envName(flag), rule))
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if _, ok := options[f.Name]; !ok || f.Value.Type() != "string" {
			return
		}
		switch v := f.Value.String(); {
		case len(v) > maxValueLen:
			bad(f.Name, v, fmt.Sprintf("must be at most %d bytes", maxValueLen))
		case controlChar(v):
			bad(f.Name, v, "must be one line without control characters")
		}
	})
	checkMap := func(flag string, m map[string]string, keyRE *regexp.Regexp, keyRule string) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			switch v := m[k]; {
			case !keyRE.MatchString(k):
				bad(flag, k+"="+v, keyRule)
			case len(v) > maxMapValueLen || controlChar(v):
				bad(flag, k+"="+v, fmt.Sprintf("values are one line of at most %d bytes", maxMapValueLen))
			}
		}
	}
	if _, err := swarm.ParseRole(c.Role); has("role") && err != nil {
		bad("role", c.Role, "must be manager or worker")
	}
	if has("autolock") && c.Autolock && c.Role == string(swarm.RoleWorker) {
		bad("autolock", "true", "only managers keep the unlock key (workers may not read it); leave it off on workers")
	}
	if has("cluster") && !clusterRE.MatchString(c.Cluster) {
		bad("cluster", c.Cluster, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if has("discovery") {
		if c.Discovery == "" {
			bad("discovery", c.Discovery, `is required, e.g. "provider=route53 zone_id=Z123 name=managers.swarm.internal"`)
		} else if s, err := discovery.Parse(c.Discovery); err != nil {
			bad("discovery", c.Discovery, err.Error())
		} else if !slices.Contains([]string{"route53", "consul", "static"}, s.Provider) {
			bad("discovery", c.Discovery, fmt.Sprintf("unknown provider %s: must be route53, consul or static", showValue(s.Provider)))
		} else {
			c.Spec = s
		}
	}
	if has("wait") && c.Wait <= 0 {
		bad("wait", c.Wait.String(), "must be a positive duration such as 10m")
	}
	if has("labels") {
		checkMap("labels", c.Labels, labelKeyRE, "label keys are 1-128 letters, digits, '.', '_', '/', '-'")
	}
	if has("availability") && c.Availability != "active" && c.Availability != "drain" {
		bad("availability", c.Availability, "must be active or drain")
	}
	if has("log-format") && !slices.Contains([]string{"json", "console", "auto"}, c.LogFormat) {
		bad("log-format", c.LogFormat, "must be json, console or auto")
	}
	if has("log-level") && !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		bad("log-level", c.LogLevel, "must be debug, info, warn or error")
	}
	if has("identity") {
		switch c.Identity {
		case "imds":
		case "static":
			if !instanceRE.MatchString(c.InstanceID) {
				bad("instance-id", c.InstanceID, "required with --identity=static (letters, digits, . _ -)")
			}
			if ip := net.ParseIP(c.PrivateIP); ip == nil || ip.To4() == nil {
				bad("private-ip", c.PrivateIP, "required with --identity=static: an IPv4 address")
			}
		default:
			bad("identity", c.Identity, "must be imds or static")
		}
	}
	if has("region") && c.Region != "" && !imds.ValidRegion(c.Region) {
		bad("region", c.Region, "must be an AWS region such as us-east-1, eu-central-2 or us-gov-west-1")
	}
	if has("az") && c.AZ != "" {
		if !imds.ValidAZ(c.AZ) {
			bad("az", c.AZ, "must be an availability zone such as us-east-1a or us-west-2-lax-1a (a Local Zone)")
		} else if r := imds.AZRegion(c.AZ); c.Region != "" && r != c.Region && !failed["region"] {
			bad("az", c.AZ, fmt.Sprintf("is a zone of %s, not of --region=%s", r, c.Region))
		}
	}
	if has("docker-host") && c.DockerHost != "" && !dockerHostRE.MatchString(c.DockerHost) {
		bad("docker-host", c.DockerHost, "must be unix:///path/docker.sock, tcp://HOST:PORT, ssh://USER@HOST or npipe://PATH")
	}
	if has("min-docker-version") && c.MinDockerVersion != "" && !versionRE.MatchString(c.MinDockerVersion) {
		bad("min-docker-version", c.MinDockerVersion, "must be a version such as 20.10.0")
	}
	if has("token-store") && !slices.Contains([]string{"auto", "ssm", "secretsmanager", "consul"}, c.TokenStore) {
		bad("token-store", c.TokenStore, "must be auto, ssm, secretsmanager or consul")
	}
	if has("swarm-port") && (c.SwarmPort < 1 || c.SwarmPort > 65535) {
		bad("swarm-port", strconv.Itoa(c.SwarmPort), "must be 1-65535")
	}
	if has("notify-url") && c.NotifyURL != "" {
		if err := notify.Check(c.NotifyURL, c.NotifyTemplate); err != nil {
			// Never echo the URL: its path or query may hold the webhook's secret.
			p = append(p, fmt.Sprintf("--notify-url/--notify-template (%s, %s): %v", envName("notify-url"), envName("notify-template"), err))
		}
	}
	if has("notify-timeout") && (c.NotifyTimeout <= 0 || c.NotifyTimeout > time.Minute) {
		bad("notify-timeout", c.NotifyTimeout.String(), "must be a positive duration up to 1m")
	}
	if has("drain-deadline") && c.DrainDeadline <= 0 {
		bad("drain-deadline", c.DrainDeadline.String(), "must be a positive duration such as 10m")
	}
	if has("on-timeout") && c.OnTimeout != "continue" && c.OnTimeout != "abandon" {
		bad("on-timeout", c.OnTimeout, "must be continue or abandon")
	}
	if has("control-port") && (c.ControlPort < 1 || c.ControlPort > 65535) {
		bad("control-port", strconv.Itoa(c.ControlPort), "must be 1-65535")
	}
	if has("reap-grace") && c.ReapGrace < time.Minute {
		bad("reap-grace", c.ReapGrace.String(), "must be at least 1m (a node restarting is not dead)")
	}
	if has("maintenance-lead") && (c.MaintenanceLead < 0 || c.MaintenanceLead > 14*24*time.Hour) {
		bad("maintenance-lead", c.MaintenanceLead.String(), "must be 0 (ignore scheduled events) up to 336h (AWS announces events up to two weeks ahead)")
	}
	if has("watch-interval") && (c.WatchInterval < 100*time.Millisecond || c.WatchInterval > time.Minute) {
		bad("watch-interval", c.WatchInterval.String(), "must be 100ms..1m (a spot notice gives two minutes)")
	}
	if has("launch-hook-name") && c.LaunchHookName != "" && !hookNameRE.MatchString(c.LaunchHookName) {
		bad("launch-hook-name", c.LaunchHookName, "must be a lifecycle hook name: 1-255 letters, digits, '-', '_', '/'")
	}
	if has("warm-pull-images") {
		if len(c.WarmPullImages) > maxWarmImages {
			bad("warm-pull-images", strings.Join(c.WarmPullImages, ","), fmt.Sprintf("at most %d images", maxWarmImages))
		}
		for i, ref := range c.WarmPullImages {
			norm, err := engine.ParseImageRef(strings.TrimSpace(ref))
			if err != nil {
				bad("warm-pull-images", ref, "must be image references as docker pull takes them (e.g. nginx:1.27,registry.example.com/app@sha256:...): "+err.Error())
				continue
			}
			c.WarmPullImages[i] = norm
		}
	}
	if has("heartbeat-interval") && c.HeartbeatEvery < 0 {
		bad("heartbeat-interval", c.HeartbeatEvery.String(), "must be 0 (automatic) or positive")
	}
	if has("docker-log-driver") && c.DockerLogDriver != "" && !validLogDriver(c.DockerLogDriver) {
		bad("docker-log-driver", c.DockerLogDriver, fmt.Sprintf("must be one of Docker's log drivers (%s) or a plugin such as grafana/loki-docker-driver:3.3.2 (lower-case letters, digits, . _ - /, an optional :tag; up to %d bytes)",
			strings.Join(logDrivers, ", "), maxLogDriverLen))
	}
	if has("docker-log-opts") {
		checkMap("docker-log-opts", c.DockerLogOpts, logOptKeyRE, "option names are 1-64 letters, digits, '.', '_', '-'")
		if len(c.DockerLogOpts) > 0 && c.DockerLogDriver == "" {
			bad("docker-log-opts", fmt.Sprint(c.DockerLogOpts), "needs --docker-log-driver")
		}
	}
	if has("queue-url") && c.QueueURL != "" {
		if u, err := url.Parse(c.QueueURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("queue-url", c.QueueURL, "must be an SQS queue URL such as https://sqs.us-east-1.amazonaws.com/123456789012/swarm-notices")
		}
	}
	if has("queue-grace") && (c.QueueGrace < 0 || c.QueueGrace > 10*time.Minute) {
		bad("queue-grace", c.QueueGrace.String(), "must be 0..10m")
	}
	if has("rebalance-cooldown") && (c.RebalanceCooldown < time.Second || c.RebalanceCooldown > time.Hour) {
		bad("rebalance-cooldown", c.RebalanceCooldown.String(), "must be 1s..1h")
	}
	if has("resize-interval") && (c.ResizeInterval < time.Second || c.ResizeInterval > time.Minute) {
		bad("resize-interval", c.ResizeInterval.String(), "must be 1s..1m (a leaving node's drain waits at most 2m for its shrink)")
	}
	if has("metrics-listen") && c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("metrics-listen", c.MetricsListen, "must be host:port")
		}
	}
	if len(p) > 0 {
		return &ConfigError{p}
	}
	return nil
}

// ParseEnvFile reads KEY=VALUE lines (optionally "export KEY=VALUE"), with # comments and
// single- or double-quoted values, as systemd's EnvironmentFile and /etc/default files use.
func ParseEnvFile(data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t\"'") {
			return nil, fmt.Errorf("line %d: want KEY=VALUE", n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 1 && (v[0] == '"' || v[0] == '\'') {
			if len(v) < 2 || v[len(v)-1] != v[0] {
				return nil, fmt.Errorf("line %d: %s: unterminated quote", n, k)
			}
			q := v[0]
			v = v[1 : len(v)-1]
			if q == '"' {
				v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`).Replace(v)
			}
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("line %d: %s given twice", n, k)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// renderEnvFile writes the persisted settings of fs as an environment file.
func renderEnvFile(fs *pflag.FlagSet) []byte {
	var b strings.Builder
	b.WriteString("# Written by swarm-agent boot; read by swarm-agent.service. No secrets here.\n")
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if o, ok := options[f.Name]; ok && o.persist {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	for _, n := range names {
		f := fs.Lookup(n)
		v := f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			v = strings.Join(sv.GetSlice(), ",")
		}
		if f.Value.Type() == "stringToString" {
			v = strings.Trim(v, "[]")
		}
		fmt.Fprintf(&b, "%s=\"%s\"\n", envName(n), strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`).Replace(v))
	}
	return []byte(b.String())
}
