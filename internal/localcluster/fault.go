package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

// What the fault tests need from the cluster: boots running in the background that can be
// paused and resumed, and the bootstrap lock and registrations read without costing the agents
// any of the account's Route 53 request rate.

// BootProc is a `swarm-agent boot` running in the background (StartBoot).
type BootProc struct {
	Node    *testbed.Node
	Role    string
	Args    []string // the arguments after the binary
	LogPath string   // its stderr, as it is written
	Started time.Time

	cmd    *exec.Cmd
	stdout bytes.Buffer
	done   chan struct{}
	run    Run
}

// StartBoot starts `swarm-agent boot` on node n as Boot runs it (extra arguments last, so an
// extra --wait overrides Boot's), without waiting. Its process is the agent itself (nsenter,
// unshare and sh exec into it), so Signal reaches the agent: SIGSTOP pauses the boot as a
// frozen instance would, SIGCONT resumes it. Ending ctx kills it.
func (c *Cluster) StartBoot(ctx context.Context, n *testbed.Node, role string, extra ...string) (*BootProc, error) {
	args := append([]string{"boot", "--role=" + role, "--discovery=" + c.Discovery(), "--wait=3m"}, extra...)
	cmd := c.Command(ctx, n, args...)
	p := &BootProc{Node: n, Role: role, Args: args, cmd: cmd, done: make(chan struct{})}
	f, err := os.CreateTemp(c.Dir, n.Name+".boot-*.log")
	if err != nil {
		return nil, err
	}
	p.LogPath = f.Name()
	cmd.Stdout, cmd.Stderr = &p.stdout, f
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start boot on %s: %w", n.Name, err)
	}
	go func() {
		defer close(p.done)
		err := cmd.Wait()
		_ = f.Close()
		p.run = Run{Stdout: p.stdout.String(), Stderr: p.Stderr()}
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p.run.Code = ee.ExitCode()
		case err != nil:
			p.run.Code, p.run.Stderr = -1, p.run.Stderr+"\n"+err.Error()
		}
		if p.run.Code == 0 {
			line := strings.TrimSpace(p.run.Stdout)
			if i := strings.LastIndex(line, "\n"); i >= 0 {
				line = line[i+1:]
			}
			_ = json.Unmarshal([]byte(line), &p.run.Result)
		}
	}()
	return p, nil
}

// Pid is the agent's process id.
func (p *BootProc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the agent.
func (p *BootProc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Done is closed once the boot exited.
func (p *BootProc) Done() <-chan struct{} { return p.done }

// Exited reports whether the boot exited.
func (p *BootProc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the boot to exit and returns its outcome (Code -1 when killed by a signal).
func (p *BootProc) Wait() Run { <-p.done; return p.run }

// Stderr is what the boot logged so far.
func (p *BootProc) Stderr() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Kill ends the boot (a stopped one too) and waits for it.
func (p *BootProc) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// LockName is the TXT record set of the Route 53 bootstrap lock.
const LockName = "_swarm-agent-lock." + ManagersName

// ConsulLockKey is the Consul KV key of the bootstrap lock.
const ConsulLockKey = "swarm-agent/" + ClusterName + "/bootstrap-lock"

// BootstrapLock returns the value of the cluster's bootstrap lock while it exists, "" when it
// does not: in Route 53 mode the TXT record as the front's DNS answers it (read from moto on
// each query, and no Route 53 API call: polling it costs the agents none of the account's
// request rate); in Consul mode the lock key's value while a session holds it.
func (c *Cluster) BootstrapLock(ctx context.Context) (string, error) {
	if c.Provider == "consul" {
		pair, _, err := c.consul.API.KV().Get(ConsulLockKey, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return "", fmt.Errorf("consul: read %s: %w", ConsulLockKey, err)
		}
		if pair == nil || pair.Session == "" {
			return "", nil
		}
		return string(pair.Value), nil
	}
	vals, err := c.resolver().LookupTXT(ctx, LockName+".")
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", LockName, err)
	}
	return strings.Join(vals, " "), nil
}

// Registered lists the addresses (IPs) under which managers are registered in discovery, as
// the registry itself holds them: in Route 53 mode what the front's DNS answers for the
// managers' name, in Consul mode every instance of the managers' service, passing or not.
func (c *Cluster) Registered(ctx context.Context) ([]string, error) {
	if c.Provider == "consul" {
		entries, _, err := c.consul.API.Catalog().Service(ConsulService, "", (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("consul: catalog of %s: %w", ConsulService, err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.ServiceAddress)
		}
		return out, nil
	}
	return c.DNSManagers(ctx), nil
}

func (c *Cluster) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, c.Front.DNSAddr())
	}}
}
