package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// bootOptions are the settings boot (and run, which boots first) take.
var bootOptions = []string{"role", "cluster", "discovery", "wait", "dry-run", "docker-host", "labels",
	"availability", "log-format", "log-level", "identity", "instance-id", "private-ip", "az", "region",
	"token-store", "kms-key-id", "autolock", "swarm-port", "min-docker-version", "status-file", "config-file", "persist",
	"daemon-config", "docker-pidfile", "docker-log-driver", "docker-log-opts", "launch-hook-name", "heartbeat-interval", "control-port",
	"warm-pull-images"}

func bootCmd(e env) *cobra.Command {
	var cfg Config
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "Bring this node into the cluster's swarm: check Docker, find managers, init or join, register",
		Long: `boot is what EC2 user_data runs. It is idempotent: run again (after a reboot, say) it
only reconciles registration and labels. With --dry-run it prints the decision and changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfig(cmd.Flags(), e, &cfg); err != nil {
				abandonAfterConfigError(cmd.Context(), cfg, newLogger(e.stderr, "auto", "info"), err)
				return err
			}
			log := newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
			st := newStatusFile(cfg.StatusFile, "boot")
			if cfg.DryRun {
				st = nil
			}
			persist := func() {
				if cfg.Persist && cfg.ConfigFile != "" && !cfg.DryRun {
					if err := persistConfig(cfg.ConfigFile, cmd.Flags()); err != nil {
						log.Warn().Err(err).Str("path", cfg.ConfigFile).Msg("could not persist configuration for the service")
					}
				}
			}
			res, err := bootOrWarm(cmd.Context(), cfg, log, st, persist)
			if err != nil {
				st.update(func(s *Status) { s.Error = err.Error() })
				return err
			}
			if cfg.DryRun {
				fmt.Fprintf(e.stdout, "dry run: %s\n", res.Decision)
				if len(res.Managers) > 0 {
					fmt.Fprintf(e.stdout, "managers answering: %v\n", res.Managers)
				}
				return nil
			}
			persist()
			out, _ := json.Marshal(res)
			fmt.Fprintln(e.stdout, string(out))
			return nil
		},
	}
	bindOptions(cmd.Flags(), &cfg, bootOptions...)
	return cmd
}

// loadConfig resolves flags, environment and file, then validates.
func loadConfig(fs *pflag.FlagSet, e env, cfg *Config) error {
	if err := resolve(fs, e.environ, e.readFile); err != nil {
		return err
	}
	return cfg.validate(fs)
}

// doBoot wires the collaborators and runs one boot; after (nil for none) runs once the node is
// in the swarm, with the wiring still open, and its error is the boot's.
func doBoot(ctx context.Context, cfg Config, log zerolog.Logger, st *statusFile, m *metrics, after func(context.Context, *wiring, bootstrap.Result) error) (bootstrap.Result, error) {
	start := time.Now()
	w, err := wire(ctx, cfg, log, st, m)
	if err != nil {
		return bootstrap.Result{}, err
	}
	defer w.close()
	st.update(func(s *Status) {
		s.Role, s.Cluster, s.InstanceID = cfg.Role, cfg.Cluster, w.identity.InstanceID
	})
	labels := map[string]string{
		swarm.LabelInstanceID: w.identity.InstanceID,
		"az":                  w.identity.AZ,
		"instance-type":       w.identity.InstanceType,
	}
	maps.Copy(labels, cfg.Labels)
	maps.DeleteFunc(labels, func(_, v string) bool { return v == "" })
	if !cfg.DryRun {
		st.stage("configuring docker")
		if err := configureEngine(ctx, cfg, w, log); err != nil {
			return bootstrap.Result{}, err
		}
	}
	bcfg := bootstrap.Config{
		Role:      swarm.Role(cfg.Role),
		Cluster:   cfg.Cluster,
		Identity:  w.identity,
		SwarmPort: cfg.SwarmPort,
		Wait:      cfg.Wait,
		Labels:    labels,
		DryRun:    cfg.DryRun,
		Autolock:  cfg.Autolock,
	}
	res, err := bootstrap.Boot(ctx, bcfg, w.deps)
	if err != nil {
		if errors.Is(context.Cause(ctx), errInterrupted) {
			return res, fmt.Errorf("boot: %w", context.Cause(ctx))
		}
		return res, fmt.Errorf("boot: %w", err)
	}
	if !cfg.DryRun && swarm.Role(cfg.Role) == swarm.RoleManager && cfg.Availability == "drain" && res.NodeID != "" {
		if err := w.engine.SetAvailability(ctx, res.NodeID, "drain"); err != nil {
			return res, fmt.Errorf("set manager availability to drain: %w", err)
		}
	}
	if after != nil && !cfg.DryRun {
		if err := after(ctx, w, res); err != nil {
			return res, err
		}
	}
	st.update(func(s *Status) { s.NodeID, s.Action, s.Stage = res.NodeID, string(res.Action), "in swarm" })
	end := time.Now()
	log.Info().Str("action", string(res.Action)).Str("node_id", res.NodeID).Str("role", cfg.Role).
		Dur("elapsed", end.Sub(start)).Dict("stages_ms", st.stageTimes(end)).Msg("boot finished")
	return res, nil
}

// persistConfig writes the settings boot used, so the unit and later boots see the same.
func persistConfig(path string, fs *pflag.FlagSet) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data := renderEnvFile(fs)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
