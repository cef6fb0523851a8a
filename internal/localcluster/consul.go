package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulService is the managers' service name in the local cluster's Consul.
const ConsulService = "swarm-manager"

// Consul is a real Consul agent (-dev) on the bed's bridge, reachable from every node.
type Consul struct {
	Addr string // host:port of the HTTP API
	cmd  *exec.Cmd
	done chan struct{}
	API  *api.Client
}

// ConsulBinary is where tools/consul/build.sh puts the agent, relative to the module root.
func ConsulBinary(root string) (string, error) {
	bin := filepath.Join(root, "bin", "consul")
	if p := os.Getenv("SWARM_AGENT_TEST_CONSUL"); p != "" {
		bin = p
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no Consul agent at %s (run tools/consul/build.sh): %w", bin, err)
	}
	return bin, nil
}

// StartConsul runs a dev Consul agent bound to the bridge and switches the cluster's discovery
// to provider=consul (tokens in Consul KV). Close stops it.
func (c *Cluster) StartConsul(ctx context.Context, bin string) error {
	ports := make([]int, 4)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	dir := filepath.Join(c.Dir, "consul")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ip := c.Bed.BridgeIP
	cmd := exec.Command(bin, "agent", "-dev", "-bind", ip, "-client", ip, "-node", "local-consul",
		"-http-port", strconv.Itoa(ports[0]), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]), "-hcl", `session_ttl_min = "1s"`)
	log, err := os.Create(filepath.Join(dir, "consul.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return fmt.Errorf("start consul: %w", err)
	}
	k := &Consul{Addr: net.JoinHostPort(ip, strconv.Itoa(ports[0])), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = log.Close(); close(k.done) }()
	c.consul = k
	k.API, err = api.NewClient(&api.Config{Address: k.Addr})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Sessions need the agent's own node in the catalog ("Missing node registration").
		if leader, err := k.API.Status().Leader(); err == nil && leader != "" {
			if n, _, err := k.API.Catalog().Node("local-consul", nil); err == nil && n != nil {
				break
			}
		}
		if time.Now().After(deadline) {
			return errors.New("consul agent elected no leader or did not register its node within 30s")
		}
		select {
		case <-k.done:
			return errors.New("consul agent exited at start (see its log in the cluster dir)")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	c.Provider = "consul"
	return nil
}

// StopConsul kills the Consul agent (as a lost Consul would look to the nodes).
func (c *Cluster) StopConsul() { c.consul.stop() }

func (k *Consul) stop() {
	if k == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Kill()
	<-k.done
}

// resetConsul deregisters every manager instance and deletes the cluster's KV prefix.
func (c *Cluster) resetConsul() error {
	k := c.consul
	svcs, err := k.API.Agent().Services()
	if err != nil {
		return fmt.Errorf("consul services: %w", err)
	}
	for id, s := range svcs {
		if s.Service == ConsulService {
			if err := k.API.Agent().ServiceDeregister(id); err != nil {
				return fmt.Errorf("deregister %s: %w", id, err)
			}
		}
	}
	if _, err := k.API.KV().DeleteTree("swarm-agent/"+ClusterName+"/", nil); err != nil {
		return fmt.Errorf("consul kv delete: %w", err)
	}
	return nil
}

// ConsulManagers lists the passing instances of the managers' service (addresses).
func (c *Cluster) ConsulManagers() ([]string, error) {
	entries, _, err := c.consul.API.Health().Service(ConsulService, "", true, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Service.Address)
	}
	return out, nil
}

// TakeDeadConsulLock takes the cluster's bootstrap lock the way a manager does (a session with
// ttl, behavior delete, a 1 s lock-delay, KV acquire) and never renews it: what a holder killed
// before swarm init leaves behind.
func (c *Cluster) TakeDeadConsulLock(ttl string) error {
	k := c.consul
	id, _, err := k.API.Session().Create(&api.SessionEntry{Name: "dead-holder", TTL: ttl,
		Behavior: api.SessionBehaviorDelete, LockDelay: time.Second}, nil)
	if err != nil {
		return fmt.Errorf("consul session: %w", err)
	}
	ok, _, err := k.API.KV().Acquire(&api.KVPair{Key: "swarm-agent/" + ClusterName + "/bootstrap-lock",
		Value: []byte("i-0000000000000dead"), Session: id}, nil)
	if err != nil || !ok {
		return fmt.Errorf("acquire the bootstrap lock as a dead holder: acquired=%v: %v", ok, err)
	}
	return nil
}
