package agent

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/control"
)

// swarmCerts locates the engine's swarm certificates (DockerRootDir/swarm/certificates).
func swarmCerts(ctx context.Context, w *wiring) (*control.Certs, error) {
	root, err := w.engine.RootDir(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDocker, err)
	}
	return &control.Certs{Dir: filepath.Join(root, "swarm", "certificates")}, nil
}

// controlSwarm is the managers' control API as a lifecycle.Swarm, authenticated with this
// node's swarm certificate; nil (no error) when the node holds no certificate (not in a swarm).
func controlSwarm(ctx context.Context, cfg Config, w *wiring, log zerolog.Logger) (lifecycle.Swarm, error) {
	certs, err := swarmCerts(ctx, w)
	if err != nil {
		return nil, err
	}
	managers := func(ctx context.Context) ([]string, error) {
		var out []string
		seen := map[string]bool{}
		add := func(hostport string) {
			host, _, err := net.SplitHostPort(hostport)
			if err != nil {
				host = hostport
			}
			a := net.JoinHostPort(host, strconv.Itoa(cfg.ControlPort))
			if !seen[a] && host != "" && host != w.identity.PrivateIP {
				seen[a] = true
				out = append(out, a)
			}
		}
		// The managers this engine knows first (no discovery call), then discovery.
		if ln, err := w.engine.Local(ctx); err == nil {
			for _, m := range ln.RemoteManagers {
				add(m)
			}
		}
		if w.deps.Discoverer != nil {
			if ms, err := w.deps.Discoverer.Managers(ctx); err == nil {
				for _, m := range ms {
					add(m)
				}
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no other manager known to this engine or to discovery")
		}
		return out, nil
	}
	c, err := control.NewClient(certs, cachedManagers(managers, managersTTL, time.Now), log.With().Str("component", "control-client").Logger())
	if err != nil {
		log.Info().Err(err).Msg("no swarm certificate to reach the managers' control API")
		return nil, nil
	}
	return c, nil
}

// managersTTL is how long the control client reuses the managers it found: finding them asks
// the engine (Info) and discovery, which on a loaded machine took longer than the control API
// call itself, for every call of a drain. A manager that left in between costs one failed
// connection before the next one answers.
const managersTTL = 10 * time.Second

// cachedManagers is find with its last good answer reused for ttl, and also when a later
// lookup fails (a node that has left knows no managers of its own any more).
func cachedManagers(find func(context.Context) ([]string, error), ttl time.Duration, now func() time.Time) func(context.Context) ([]string, error) {
	var (
		mu   sync.Mutex
		last []string
		at   time.Time
	)
	return func(ctx context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(last) > 0 && now().Sub(at) < ttl {
			return slices.Clone(last), nil
		}
		ms, err := find(ctx)
		switch {
		case err == nil && len(ms) > 0:
			last, at = slices.Clone(ms), now()
		case len(last) > 0:
			return slices.Clone(last), nil
		}
		return ms, err
	}
}

// serveControl serves the control API on this manager until ctx ends.
func (d *daemon) serveControl(ctx context.Context, dw *drainWiring) error {
	certs, err := swarmCerts(ctx, dw.wiring)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(dw.identity.PrivateIP, strconv.Itoa(d.cfg.ControlPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		d.log.Error().Err(err).Str("addr", addr).Msg("control API cannot listen: workers on this manager's address cannot drain through it")
		return nil
	}
	d.log.Info().Str("addr", addr).Msg("control API listening (mutual TLS, swarm certificates)")
	srv := &control.Server{Swarm: engineSwarm{dw.engine}, Certs: certs, Log: d.log.With().Str("component", "control").Logger()}
	return srv.Serve(ctx, ln)
}
