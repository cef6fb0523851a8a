package localcluster

// The agent on a node: one-shot commands such as boot, `swarm-agent run` in the background,
// and building the binary.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

// Run is the outcome of one agent command.
type Run struct {
	Code   int
	Stdout string
	Stderr string
	Result struct {
		Action string `json:"action"`
		NodeID string `json:"node_id"`
	}
}

// Command builds a swarm-agent command inside node n's namespace, configured like an EC2
// instance's agent: IMDS, AWS endpoints and DNS are the front's.
func (c *Cluster) Command(ctx context.Context, n *testbed.Node, args ...string) *exec.Cmd {
	return c.commandBin(ctx, c.bin, n, args...)
}

func (c *Cluster) commandBin(ctx context.Context, bin string, n *testbed.Node, args ...string) *exec.Cmd {
	env := []string{
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + c.Front.IMDSURL(),
		"AWS_ENDPOINT_URL=" + c.Front.APIURL(),
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"SWARM_AGENT_CONFIG_FILE=" + filepath.Join(c.Dir, n.Name+".env"),
		"SWARM_AGENT_STATUS_FILE=" + filepath.Join(c.Dir, n.Name+".status.json"),
		"SWARM_AGENT_LOG_FORMAT=json",
		"SWARM_AGENT_CLUSTER=" + ClusterName,
		// Each engine reads its own daemon.json; the agent reloads it with SIGHUP (no systemd).
		"SWARM_AGENT_DAEMON_CONFIG=" + n.ConfigPath(),
		"SWARM_AGENT_DOCKER_PIDFILE=" + n.PIDFile(),
	}
	return c.Bed.Command(ctx, n, env, bin, args...)
}

// Boot runs `swarm-agent boot` on node n and waits for it.
func (c *Cluster) Boot(ctx context.Context, n *testbed.Node, role string, extra ...string) Run {
	return c.BootBin(ctx, c.bin, n, role, extra...)
}

// BootBin is Boot with another agent binary (a benchmark's older build).
func (c *Cluster) BootBin(ctx context.Context, bin string, n *testbed.Node, role string, extra ...string) Run {
	args := append([]string{"boot", "--role=" + role, "--discovery=" + c.Discovery(), "--wait=3m"}, extra...)
	cmd := c.commandBin(ctx, bin, n, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Run{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		r.Code, r.Stderr = -1, r.Stderr+"\n"+err.Error()
	}
	if r.Code == 0 {
		line := strings.TrimSpace(r.Stdout)
		if i := strings.LastIndex(line, "\n"); i >= 0 {
			line = line[i+1:]
		}
		_ = json.Unmarshal([]byte(line), &r.Result)
	}
	return r
}

// BuildAgent builds the swarm-agent binary from the module at root into dir.
func BuildAgent(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "swarm-agent")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build swarm-agent: %v\n%s", err, out)
	}
	return bin, nil
}

// Agent is a `swarm-agent run` started in the background on a node.
type Agent struct {
	Node    *testbed.Node
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	code    int
}

// StartRun starts `swarm-agent run` on node n (configured by the file its boot persisted),
// logging to Dir/<node>.run.log. Stop or Kill it; Close of the cluster does not.
func (c *Cluster) StartRun(ctx context.Context, n *testbed.Node, extra ...string) (*Agent, error) {
	return c.StartRunEnv(ctx, n, nil, extra...)
}

// StartRunEnv is StartRun with extra environment variables (e.g. NOTIFY_SOCKET).
func (c *Cluster) StartRunEnv(ctx context.Context, n *testbed.Node, env []string, extra ...string) (*Agent, error) {
	args := append([]string{"run", "--metrics-listen=127.0.0.1:9477"}, extra...)
	cmd := c.Command(context.WithoutCancel(ctx), n, args...)
	cmd.Env = append(cmd.Env, env...)
	path := filepath.Join(c.Dir, n.Name+".run.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start run on %s: %w", n.Name, err)
	}
	a := &Agent{Node: n, LogPath: path, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		err := cmd.Wait()
		_ = f.Close()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			a.code = ee.ExitCode()
		case err != nil:
			a.code = -1
		}
	}()
	return a, nil
}

// Signal sends sig to the agent.
func (a *Agent) Signal(sig os.Signal) error { return a.cmd.Process.Signal(sig) }

// Done is closed when the agent exited.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Code is the exit code once Done is closed (-1 if killed by a signal).
func (a *Agent) Code() int { <-a.done; return a.code }

// Stop sends SIGTERM and waits up to d, then kills.
func (a *Agent) Stop(d time.Duration) {
	_ = a.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(d):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// Log returns what the agent logged so far.
func (a *Agent) Log() string {
	b, _ := os.ReadFile(a.LogPath)
	return string(b)
}
