package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/asg"
	"github.com/swarm-agent/swarm-agent/notify"
)

// drainOptions are the settings drain takes (run takes them too).
var drainOptions = []string{"role", "cluster", "discovery", "docker-host", "log-format", "log-level", "identity",
	"instance-id", "private-ip", "az", "region", "token-store", "kms-key-id", "swarm-port", "min-docker-version",
	"status-file", "config-file", "drain-deadline", "on-timeout", "force-last-manager", "control-port",
	"heartbeat-interval", "notify-url", "notify-template", "notify-timeout"}

func init() { extraCommands = append(extraCommands, drainCmd) }

func drainCmd(e env) *cobra.Command {
	var cfg Config
	cmd := &cobra.Command{
		Use:   "drain",
		Short: "Take this node out of the swarm now: drain, demote, deregister, leave, remove, complete the lifecycle action",
		Long: `drain does once what run does when the instance is terminating (for an EventBridge rule that
runs it through SSM Run Command, or by hand). It is resumable: run again after a crash, it
finishes from what the swarm and Auto Scaling show, and it never completes the lifecycle action
twice. A SIGTERM does not stop it halfway; it has its own deadline (--drain-deadline plus a
margin for the rest).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfig(cmd.Flags(), e, &cfg); err != nil {
				return err
			}
			log := newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
			st := newStatusFile(cfg.StatusFile, "drain")
			w, err := wireDrain(cmd.Context(), cfg, log, st, nil)
			if err != nil {
				return err
			}
			defer w.close()
			st.update(func(s *Status) { s.Role, s.InstanceID = cfg.Role, w.identity.InstanceID })
			rep, err := runDrain(cmd.Context(), w.drainer, lifecycle.Notice{Kind: "manual", Source: "command", InstanceID: w.identity.InstanceID}, nil, log, st, w.notifier)
			out, _ := json.Marshal(rep)
			fmt.Fprintln(e.stdout, string(out))
			return err
		},
	}
	bindOptions(cmd.Flags(), &cfg, drainOptions...)
	return cmd
}

// drainWiring is a wiring plus what draining needs.
type drainWiring struct {
	*wiring
	drainer *lifecycle.Drainer
	hook    *asg.Client
	// notifier tells the operator's webhook when drains start and end (nil without --notify-url).
	notifier *notify.Notifier
}

// close delivers what the notifier still holds (bounded: the drain itself is over) and closes
// the wiring.
func (w *drainWiring) close() {
	ctx, cancel := context.WithTimeout(context.Background(), notifyFlush)
	defer cancel()
	w.notifier.Close(ctx)
	w.wiring.close()
}

// notifyFlush bounds how long an exiting agent waits for its last notifications.
const notifyFlush = 15 * time.Second

// wireDrain builds the Drainer for this node: the local engine as Swarm on a manager (with
// the other managers' control API once it is demoted), the control API on a worker, Auto
// Scaling for the hook, discovery for deregistration.
func wireDrain(ctx context.Context, cfg Config, log zerolog.Logger, st *statusFile, m *metrics) (*drainWiring, error) {
	w, err := wire(ctx, cfg, log, st, m)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			w.close()
		}
	}()
	ac, err := w.awsConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	hook := asg.New(autoscaling.NewFromConfig(ac))
	hook.LaunchHookName = cfg.LaunchHookName
	remote, err := controlSwarm(ctx, cfg, w, log)
	if err != nil {
		return nil, err
	}
	swarm := lifecycle.Swarm(fallbackSwarm{local: engineSwarm{w.engine}, remote: remote})
	d := &lifecycle.Drainer{
		Swarm: swarm,
		Local: w.engine,
		Hook:  hook,
		// A replaced manager (refresh, instance lifetime) waits for its replacement.
		Capacity: hook,
		Log:      log.With().Str("component", "drain").Logger(),
		Options: lifecycle.DrainOptions{
			Deadline:          cfg.DrainDeadline,
			OnTimeout:         cfg.OnTimeout,
			HeartbeatOverride: cfg.HeartbeatEvery,
			Force:             cfg.ForceLastManager,
			Addr:              w.identity.PrivateIP,
			InstanceID:        w.identity.InstanceID,
		},
	}
	if w.deps.Registrar != nil {
		d.Registrar = w.deps.Registrar
	}
	var nt *notify.Notifier
	if cfg.NotifyURL != "" {
		nt, err = notify.New(notify.Options{URL: cfg.NotifyURL, Template: cfg.NotifyTemplate, Cluster: cfg.Cluster,
			Timeout: cfg.NotifyTimeout, Log: log.With().Str("component", "notify").Logger(), Result: m.notified})
		if err != nil {
			return nil, &ConfigError{[]string{"--notify-url/--notify-template: " + err.Error()}}
		}
	}
	ok = true
	return &drainWiring{wiring: w, drainer: d, hook: hook, notifier: nt}, nil
}

// runDrain runs one drain with dr and records it in metrics and the status file (either may
// be nil: the leader's drains on another node's behalf leave its own status alone).
func runDrain(ctx context.Context, dr *lifecycle.Drainer, n lifecycle.Notice, m *metrics, log zerolog.Logger, st *statusFile, nt *notify.Notifier) (lifecycle.DrainReport, error) {
	st.update(func(s *Status) { s.Stage = "draining (" + n.Kind + ")" })
	if m != nil {
		m.drainsStarted.Inc()
	}
	nt.Notify(notify.Event{Event: notify.DrainStarted, InstanceID: n.InstanceID, Kind: n.Kind, Source: n.Source})
	start := time.Now()
	rep, err := dr.Drain(ctx, n)
	result := "completed"
	switch {
	case errors.Is(err, lifecycle.ErrDrainTimeout):
		result = "abandoned"
	case err != nil:
		result = "failed"
	}
	done := notify.Event{Event: notify.DrainFinished, InstanceID: n.InstanceID, NodeID: rep.NodeID, Kind: n.Kind, Source: n.Source,
		Result: result, Seconds: time.Since(start).Seconds()}
	if err != nil {
		done.Error = err.Error()
	}
	nt.Notify(done)
	if m != nil {
		m.drainsFinished.WithLabelValues(result).Inc()
		m.drainDuration.Observe(time.Since(start).Seconds())
		m.heartbeats.Add(float64(rep.Heartbeats))
		switch {
		case rep.AlreadyCompleted:
			m.hookCompletions.WithLabelValues("already").Inc()
		case rep.Result != "":
			m.hookCompletions.WithLabelValues(rep.Result).Inc()
		}
	}
	st.update(func(s *Status) {
		s.Stage = "drained: " + result
		if err != nil {
			s.Error = err.Error()
		}
	})
	if err != nil {
		log.Error().Err(err).Str("result", result).Msg("drain did not finish cleanly")
		return rep, fmt.Errorf("%w: drain: %w", errLifecycle, err)
	}
	return rep, nil
}
