package install

// Running the installer's commands and writing its files.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// query runs a read-only command, in dry runs too.
func (in *installer) query(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := in.o.Runner.Run(ctx, name, args...)
	in.log.Debug().Str("command", cmdline(name, args)).AnErr("error", err).Msg("queried")
	return out, err
}

// change runs a command that changes the machine; a dry run only records it.
func (in *installer) change(ctx context.Context, name string, args ...string) error {
	c := cmdline(name, args)
	in.res.Actions = append(in.res.Actions, c)
	if in.o.DryRun {
		in.log.Info().Bool("dry_run", true).Str("command", c).Msg("would run")
		return nil
	}
	in.log.Info().Str("command", c).Msg("running")
	out, err := in.o.Runner.Run(ctx, name, args...)
	if err != nil {
		if t := tail(out, 5); t != "" {
			return fmt.Errorf("%s: %w: %s", c, err, t)
		}
		return fmt.Errorf("%s: %w", c, err)
	}
	return nil
}

// tail returns the last n non-empty lines of out, joined with "; ".
func tail(out []byte, n int) string {
	var lines []string
	for l := range strings.SplitSeq(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// cmdline renders a command as a shell would take it.
func cmdline(name string, args []string) string {
	parts := make([]string, 0, 1+len(args))
	for _, a := range append([]string{name}, args...) {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".swarm-agent.tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
