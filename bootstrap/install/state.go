package install

// The engine's swarm state on disk: what is there, which dockerd runs, and removing it.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// swarmState is what checkSwarmState found.
type swarmState struct {
	dir       string
	exists    bool
	hasState  bool // the directory holds files: a node identity
	enginePID int  // a live dockerd named by the pid file, or 0
}

// checkSwarmState looks at the swarm directory and refuses (before anything changes) when the
// engine that owns it is running, unless forced.
func (in *installer) checkSwarmState() (swarmState, error) {
	s := swarmState{dir: filepath.Join(in.o.DataRoot, "swarm")}
	entries, err := os.ReadDir(s.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return s, fmt.Errorf("swarm state: %w", err)
	}
	s.exists, s.hasState = true, len(entries) > 0
	s.enginePID = in.enginePID()
	if s.hasState && s.enginePID != 0 && !in.o.Force {
		return s, fmt.Errorf("%w (pid %d from %s) and %s holds swarm state: stop it first (systemctl stop docker.socket docker.service) or pass --force",
			ErrEngineRunning, s.enginePID, in.o.PIDFile, s.dir)
	}
	return s, nil
}

// enginePID returns the pid of a live dockerd named by the pid file, or 0. A stale pid file, or
// one naming a reused pid, does not count.
func (in *installer) enginePID() int {
	pid, err := DockerdPID(in.o.PIDFile, in.o.ProcessName)
	if err != nil {
		in.log.Debug().Err(err).Str("path", in.o.PIDFile).Msg("engine not running")
		return 0
	}
	return pid
}

// DockerdPID returns the pid that pidFile names if that process is a live dockerd; an error
// says why not (no file, not a pid, stale or reused pid). processName nil reads /proc/PID/comm.
func DockerdPID(pidFile string, processName func(pid int) (string, error)) (int, error) {
	if processName == nil {
		processName = procName
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("engine pid file %s: %q is not a pid", pidFile, strings.TrimSpace(string(data)))
	}
	if name, err := processName(pid); err != nil || name != "dockerd" {
		return 0, fmt.Errorf("engine pid file %s is stale: pid %d is not a running dockerd", pidFile, pid)
	}
	return pid, nil
}

func (in *installer) removeSwarmState(ctx context.Context, s swarmState, systemd bool) error {
	if !s.exists {
		in.log.Info().Str("path", s.dir).Msg("no swarm state")
		return nil
	}
	if s.enginePID != 0 {
		if !s.hasState {
			in.log.Info().Str("path", s.dir).Int("pid", s.enginePID).
				Msg("no swarm state (directory empty); left in place while the engine runs")
			return nil
		}
		// Forced: checkSwarmState refused otherwise.
		if systemd {
			// The socket first, so that it does not start the service again.
			if err := in.change(ctx, "systemctl", "stop", "docker.socket", DockerUnit); err != nil {
				return fmt.Errorf("stop the engine to remove swarm state: %w", err)
			}
		} else {
			in.log.Warn().Int("pid", s.enginePID).Str("path", s.dir).
				Msg("--force: removing swarm state under a running engine; it keeps its identity in memory until it restarts")
		}
	}
	in.res.Actions = append(in.res.Actions, "remove "+s.dir)
	in.res.Removed = append(in.res.Removed, s.dir)
	in.res.SwarmStateRemoved = s.hasState
	if in.o.DryRun {
		in.log.Info().Bool("dry_run", true).Str("path", s.dir).Bool("had_state", s.hasState).Msg("would remove swarm state")
		return nil
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove swarm state: %w", err)
	}
	in.log.Info().Str("path", s.dir).Bool("had_state", s.hasState).Msg("swarm state removed")
	return nil
}

func procName(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b)), err
}
