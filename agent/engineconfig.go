package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap/daemonconfig"
	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/bootstrap/install"
	"github.com/swarm-agent/swarm-agent/retry"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// configureEngine merges the agent's engine labels (instance id, AZ, instance type, role and
// the operator's --labels) and live-restore=false into daemon.json, and when that changed has
// the engine reload it before any swarm action: both are options dockerd reloads on SIGHUP,
// so running containers are not disturbed. The reload goes through systemd's D-Bus API when
// systemd runs the machine, else a SIGHUP to the pid in --docker-pidfile. It then waits until
// the engine reports the new labels.
func configureEngine(ctx context.Context, cfg Config, w *wiring, log zerolog.Logger) error {
	if cfg.DaemonConfig == "" {
		return nil
	}
	want := daemonconfig.Owned{InstanceID: w.identity.InstanceID, AZ: w.identity.AZ,
		InstanceType: w.identity.InstanceType, Role: cfg.Role, Labels: cfg.Labels,
		LogDriver: cfg.DockerLogDriver, LogOpts: cfg.DockerLogOpts}
	restart, err := logSettingsChange(cfg.DaemonConfig, want)
	if err != nil {
		return fmt.Errorf("%w: %w", errDocker, err)
	}
	changed, err := daemonconfig.Apply(cfg.DaemonConfig, want)
	if err != nil {
		return fmt.Errorf("%w: %w", errDocker, err)
	}
	if !changed {
		return nil
	}
	// The engine is reloaded or restarted: boot reads its swarm state afresh.
	if w.first != nil {
		w.first.discard()
	}
	if restart {
		// Log settings are not among what dockerd reloads: they need a restart, which only
		// systemd can do here (the swarm state survives it; nothing has joined yet).
		log.Info().Str("path", cfg.DaemonConfig).Msg("daemon.json log settings changed: restarting the engine")
		if err := restartEngine(ctx); err != nil {
			return fmt.Errorf("%w: restart docker after changing the log settings in %s: %w", errDocker, cfg.DaemonConfig, err)
		}
		cctx, cancel := context.WithTimeout(ctx, engineStartWait)
		defer cancel()
		return waitEngineLabel(cctx, w.engine, swarm.LabelInstanceID, w.identity.InstanceID)
	}
	log.Info().Str("path", cfg.DaemonConfig).Msg("daemon.json changed: reloading the engine")
	if err := reloadEngine(ctx, cfg.DockerPIDFile); err != nil {
		return fmt.Errorf("%w: reload docker after changing %s: %w", errDocker, cfg.DaemonConfig, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return waitEngineLabel(wctx, w.engine, swarm.LabelInstanceID, w.identity.InstanceID)
}

// reloadEngine asks dockerd to reload daemon.json.
func reloadEngine(ctx context.Context, pidfile string) error {
	if systemdRuns() {
		return systemdJob(ctx, "reload docker.service", func(c *sddbus.Conn, done chan<- string) (int, error) {
			return c.ReloadUnitContext(ctx, "docker.service", "replace", done)
		})
	}
	pid, err := install.DockerdPID(pidfile, nil)
	if err != nil {
		return fmt.Errorf("no systemd, and no dockerd to send SIGHUP to: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("SIGHUP to dockerd (pid %d from %s): %w", pid, pidfile, err)
	}
	return nil
}

// waitEngineLabel waits until the engine reports key=value among its labels. dockerd reloads
// in milliseconds: it looks again after 10 ms, doubling up to every 200 ms (a fixed 200 ms
// made every first boot, whose daemon.json always changes, wait most of that for nothing).
func waitEngineLabel(ctx context.Context, e *engine.Engine, key, value string) error {
	for n := 1; ; n++ {
		labels, err := e.EngineLabels(ctx)
		if err == nil && labels[key] == value {
			return nil
		}
		if !retry.Sleep(ctx, retry.Exp(n, 10*time.Millisecond, 200*time.Millisecond)) {
			if err == nil {
				err = errors.New("label not reported")
			}
			return fmt.Errorf("%w: engine did not pick up %s=%s after the reload: %w", errDocker, key, value, err)
		}
	}
}

// startEngine starts (and enables) Docker when its engine does not answer; it reports whether
// it started anything. A variable so that tests can stand in for systemd.
var startEngine = startDockerUnit

// engineStartWait bounds the wait for a started engine to answer.
const engineStartWait = 90 * time.Second

// checkEngine checks the engine; when it does not answer at all, it starts docker.service
// (systemd's D-Bus API) and waits for it, with a deadline, before checking its version.
func checkEngine(ctx context.Context, cfg Config, e *engine.Engine, log zerolog.Logger) (engine.Version, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ver, err := e.Check(cctx, cfg.MinDockerVersion)
	cancel()
	var ee *engine.Error
	if err == nil || !errors.As(err, &ee) || !ee.Down {
		return ver, err
	}
	started, serr := startEngine(ctx)
	if serr != nil {
		return ver, fmt.Errorf("%w (starting docker.service: %v)", err, serr)
	}
	if !started {
		return ver, err
	}
	log.Info().Msg("docker engine was not running: started docker.service, waiting for it")
	deadline := time.Now().Add(engineStartWait)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ver, err = e.Check(cctx, cfg.MinDockerVersion)
		cancel()
		if err == nil || !errors.As(err, &ee) || !ee.Down {
			return ver, err
		}
		if time.Now().After(deadline) {
			return ver, fmt.Errorf("started docker.service but the engine did not answer within %s: %w", engineStartWait, err)
		}
		if !retry.Sleep(ctx, time.Second) {
			return ver, ctx.Err()
		}
	}
}

// startDockerUnit enables and starts docker.service through systemd's D-Bus API; without
// systemd running the machine it starts nothing.
func startDockerUnit(ctx context.Context) (bool, error) {
	if !systemdRuns() {
		return false, nil
	}
	err := systemdJob(ctx, "start docker.service", func(c *sddbus.Conn, done chan<- string) (int, error) {
		if _, _, err := c.EnableUnitFilesContext(ctx, []string{"docker.service"}, false, true); err != nil {
			return 0, fmt.Errorf("enable: %w", err)
		}
		return c.StartUnitContext(ctx, "docker.service", "replace", done)
	})
	return err == nil, err
}

// logSettingsChange reports whether merging want into the file at path changes its log
// settings (which need an engine restart), apart from what a reload covers.
func logSettingsChange(path string, want daemonconfig.Owned) (bool, error) {
	if want.LogDriver == "" && len(want.LogOpts) == 0 {
		return false, nil
	}
	existing, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	reloadable := want
	reloadable.LogDriver, reloadable.LogOpts = "", nil
	mid, _, err := daemonconfig.Merge(existing, reloadable)
	if err != nil {
		return false, fmt.Errorf("docker daemon config %s: %w", path, err)
	}
	_, changed, err := daemonconfig.Merge(mid, want)
	if err != nil {
		return false, fmt.Errorf("docker daemon config %s: %w", path, err)
	}
	return changed, nil
}

// restartEngine restarts docker.service through systemd's D-Bus API. A variable for tests.
var restartEngine = func(ctx context.Context) error {
	if !systemdRuns() {
		return errors.New("systemd does not run this machine: restart dockerd yourself, then boot again")
	}
	return systemdJob(ctx, "restart docker.service", func(c *sddbus.Conn, done chan<- string) (int, error) {
		return c.RestartUnitContext(ctx, "docker.service", "replace", done)
	})
}

// systemdRuns reports whether systemd runs this machine (sd_booted).
func systemdRuns() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// systemdJob queues a job through systemd's D-Bus API and waits for its result.
func systemdJob(ctx context.Context, what string, queue func(*sddbus.Conn, chan<- string) (int, error)) error {
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return fmt.Errorf("%s: connect to systemd: %w", what, err)
	}
	defer conn.Close()
	done := make(chan string, 1)
	if _, err := queue(conn, done); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	select {
	case r := <-done:
		if r != "done" {
			return fmt.Errorf("%s: job %s", what, r)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
