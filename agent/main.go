// Package agent is swarm-agent's command line: configuration, logging, signals, and the
// wiring of bootstrap, lifecycle, discovery and the Docker adapter.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/discovery"
)

// Set with -ldflags "-X github.com/swarm-agent/swarm-agent/agent.version=... -X ...commit=...".
var (
	version = ""
	commit  = ""
)

// Version returns the stamped version and commit, falling back to the module build info.
func Version() (string, string) {
	v, c := version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}

// env is the process environment the commands see; tests replace it.
type env struct {
	stdout, stderr io.Writer
	environ        []string
	readFile       func(string) ([]byte, error)
}

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	ctx, stop := signalContext()
	defer stop()
	e := env{stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ(), readFile: os.ReadFile}
	return run(ctx, e, args)
}

// signalContext cancels on the first SIGINT/SIGTERM; a second one exits at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			cancel(fmt.Errorf("%w: %s", errInterrupted, s))
		case <-done:
			return
		}
		select {
		case <-ch:
			os.Exit(ExitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() { signal.Stop(ch); close(done); cancel(nil) }
}

var errInterrupted = errors.New("interrupted")

func run(ctx context.Context, e env, args []string) int {
	root := &cobra.Command{
		Use:           "swarm-agent",
		Short:         "Turns an EC2 instance into a Docker Swarm node and takes it out again cleanly",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetArgs(args)
	root.AddCommand(versionCmd(e), bootCmd(e), statusCmd(e))
	for _, c := range extraCommands {
		root.AddCommand(c(e))
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return flagError(err) })
	// Cobra refuses unknown commands and bad arguments before any command runs; whatever fails
	// after this hook ran carries its own type. Exit codes come from error types only, never from
	// the words of a message.
	started := false
	root.PersistentPreRun = func(*cobra.Command, []string) { started = true }
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if !started && !errors.Is(err, ErrUsage) {
		err = usageError{err}
	}
	code := ExitCode(err)
	fmt.Fprintf(e.stderr, "swarm-agent: %v\n", err)
	return code
}

// usageError marks a refusal by the command line parser as ErrUsage, keeping its message.
type usageError struct{ error }

func (u usageError) Unwrap() error      { return u.error }
func (usageError) Is(target error) bool { return target == ErrUsage }

// extraCommands lets other files of this package add commands.
var extraCommands []func(env) *cobra.Command

// Typed failures the commands wrap their errors in, mapped to exit codes.
var (
	errDocker    = errors.New("docker")
	errIMDS      = errors.New("instance metadata")
	errDiscovery = errors.New("discovery")
)

// ExitCode maps an error to the documented exit code.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUsage), errors.Is(err, discovery.ErrOtherCluster):
		// Another cluster's managers' record: only a change of --discovery (or --cluster)
		// fixes it, so systemd must not restart the agent into it again.
		return ExitUsage
	case errors.Is(err, bootstrap.ErrWaitElapsed):
		return ExitWaitElapsed
	case errors.Is(err, bootstrap.ErrSwarmLocked):
		return ExitSwarmLocked
	case errors.Is(err, errInterrupted):
		return ExitInterrupted
	case errors.Is(err, errDocker):
		return ExitDocker
	case errors.Is(err, errIMDS):
		return ExitIMDS
	case errors.Is(err, errDiscovery), errors.Is(err, discovery.ErrDiscoveryConfig), errors.Is(err, discovery.ErrAccessDenied):
		return ExitDiscovery
	case errors.Is(err, errLifecycle):
		return ExitLifecycle
	}
	return ExitInternal
}

var errLifecycle = errors.New("lifecycle")

func versionCmd(e env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version and commit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, c := Version()
			fmt.Fprintf(e.stdout, "swarm-agent %s (commit %s)\n", v, c)
			return nil
		},
	}
}
