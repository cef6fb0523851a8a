package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/swarm-agent/swarm-agent/bootstrap/install"
	"github.com/swarm-agent/swarm-agent/packaging"
)

func init() { extraCommands = append(extraCommands, installCmd) }

func installCmd(e env) *cobra.Command {
	var (
		cfg                                Config
		o                                  install.Options
		root, dataRoot, pidFile, osRelease string
		dryRun, start, force               bool
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Prepare this machine (image build): install Docker, write and enable the systemd units, remove swarm state",
		Long: `install is what an image build runs, as root. It is idempotent: run again it changes nothing.

It installs Docker from the distribution's packages when dockerd is missing (apt-get install
docker.io on Debian and Ubuntu, dnf install docker on Amazon Linux 2023; elsewhere it stops with
exit code 2 unless Docker is already there), without starting it. Where systemd runs the machine it
enables docker.service and swarm-agent.service (systemctl enable: nothing is started unless
--start); elsewhere it only writes the unit files. It removes Docker's swarm directory, so that no
image carries a node identity, and refuses (exit code 3) while a running engine owns swarm state,
unless --force. It prints a JSON summary on stdout; "actions" lists every change, empty when
nothing changed.

Exit codes: 2 unsupported distribution or --start without systemd; 3 installing or enabling
failed, or a running engine owns swarm state.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := resolve(cmd.Flags(), e.environ, e.readFile); err != nil {
				return err
			}
			if err := cfg.validate(cmd.Flags()); err != nil {
				return err
			}
			var problems []string
			for _, p := range []struct{ flag, val string }{{"root", root}, {"docker-data-root", dataRoot},
				{"docker-pidfile", pidFile}, {"os-release", osRelease}} {
				if !filepath.IsAbs(p.val) {
					problems = append(problems, fmt.Sprintf("--%s=%s: must be an absolute path", p.flag, showValue(p.val)))
				}
			}
			if len(problems) > 0 {
				return &ConfigError{problems}
			}
			log := newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel).With().Str("component", "install").Logger()
			o.DryRun, o.Start, o.Force = dryRun, start, force
			o.Units, o.Enable = packaging.Units(), []string{packaging.AgentUnitName}
			o.OSRelease, o.DataRoot, o.PIDFile = osRelease, dataRoot, pidFile
			// systemctl acts on the running system: only when root is / and systemd runs it.
			o.UnitDir = filepath.Join(root, "etc/systemd/system")
			o.SystemdProbe = filepath.Join(root, "run/systemd/system")
			o.Log = log
			res, err := install.Install(cmd.Context(), o)
			if err != nil {
				return installError(cmd.Context(), err)
			}
			out, _ := json.Marshal(res)
			fmt.Fprintln(e.stdout, string(out))
			return nil
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&dryRun, "dry-run", false, "print what install would change (commands, files, removals) and change nothing; read-only queries still run")
	fs.BoolVar(&start, "start", false, "also start docker.service now (needs systemd); an image build leaves it stopped")
	fs.BoolVar(&force, "force", false, "remove swarm state even while the engine runs (stopping docker first where systemd runs the machine)")
	fs.StringVar(&root, "root", "/", "filesystem root: unit files go to ROOT/etc/systemd/system; systemctl runs only if ROOT/run/systemd/system exists")
	fs.StringVar(&dataRoot, "docker-data-root", "/var/lib/docker", "Docker's data root, whose swarm directory is removed")
	fs.StringVar(&pidFile, "docker-pidfile", "/var/run/docker.pid", "dockerd's pid file, telling whether the engine runs")
	fs.StringVar(&osRelease, "os-release", "/etc/os-release", "where the distribution is read from")
	_ = fs.MarkHidden("os-release") // for tests
	bindOptions(fs, &cfg, "log-format", "log-level", "config-file")
	return cmd
}

// installError gives install's failures their exit codes without changing their messages:
// what the operator must change (distribution, flags) is a usage error, the rest is Docker's.
func installError(ctx context.Context, err error) error {
	err = fmt.Errorf("install: %w", err)
	switch {
	case errors.Is(context.Cause(ctx), errInterrupted):
		return fmt.Errorf("%w (%w)", err, context.Cause(ctx))
	case errors.Is(err, install.ErrUnsupported), errors.Is(err, install.ErrNeedsSystemd):
		return kindError{err, ErrUsage}
	}
	return kindError{err, errDocker}
}

// kindError is err, classified as kind for ExitCode.
type kindError struct{ err, kind error }

func (k kindError) Error() string   { return k.err.Error() }
func (k kindError) Unwrap() []error { return []error{k.err, k.kind} }
