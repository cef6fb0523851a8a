package agent

// Validation of a Config: the patterns and bounds of its values, and the checks of every
// setting a command uses.

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/discovery"
	"github.com/swarm-agent/swarm-agent/lifecycle/imds"
	"github.com/swarm-agent/swarm-agent/notify"
	"github.com/swarm-agent/swarm-agent/swarm"
)

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
