package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/control"
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
