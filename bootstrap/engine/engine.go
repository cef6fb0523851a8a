// Package engine is the Docker adapter: the only package that talks to the Docker Engine API.
// It satisfies bootstrap.Engine and offers the node and task calls that draining and reaping need.
package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/bootstrap"
)

var _ bootstrap.Engine = (*Engine)(nil)

// DefaultMinVersion is the oldest engine Check accepts when given no floor.
const DefaultMinVersion = "20.10.0"

// MinAPIVersion is the oldest Engine API version the client speaks.
const MinAPIVersion = client.MinAPIVersion

// Engine is a Docker engine reached through its API. It is safe for concurrent use.
type Engine struct {
	c    *client.Client
	host string
	// pollEvery is how often Join polls the engine after the join timed out in the engine.
	pollEvery time.Duration
}

// New connects to the engine at host ("unix:///var/run/docker.sock", "tcp://10.0.0.5:2375");
// "" means DOCKER_HOST or the default socket. The API version is negotiated on first use.
func New(host string, with ...Option) (*Engine, error) {
	var o options
	for _, opt := range with {
		opt(&o)
	}
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %q: %w", host, err)
	}
	if o.observe != nil {
		// The observer needs the host as the client resolved it (flag, DOCKER_HOST or default).
		resolved := c.DaemonHost()
		_ = c.Close()
		obs, err := observerOpts(resolved, o.observe)
		if err != nil {
			return nil, fmt.Errorf("docker client for %q: %w", resolved, err)
		}
		if c, err = client.New(append(opts, obs...)...); err != nil {
			return nil, fmt.Errorf("docker client for %q: %w", host, err)
		}
	}
	return &Engine{c: c, host: c.DaemonHost(), pollEvery: 250 * time.Millisecond}, nil
}

// Host is the engine's address as the client uses it.
func (e *Engine) Host() string { return e.host }

// Close releases the client's connections.
func (e *Engine) Close() error { return e.c.Close() }

// Version is what the engine says about itself.
type Version struct {
	Engine string // e.g. 20.10.24
	API    string // e.g. 1.41
	OS     string
	Arch   string
}

// Check verifies that the engine answers, that its version is at least minVersion ("" means
// DefaultMinVersion) and that its API version is at least MinAPIVersion.
func (e *Engine) Check(ctx context.Context, minVersion string) (Version, error) {
	if minVersion == "" {
		minVersion = DefaultMinVersion
	}
	floor, err := parseVersion(minVersion)
	if err != nil {
		return Version{}, fmt.Errorf("minimum docker version %q: %w", minVersion, err)
	}
	res, err := e.c.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return Version{}, e.wrap("read version", err)
	}
	v := Version{Engine: res.Version, API: res.APIVersion, OS: res.Os, Arch: res.Arch}
	have, err := parseVersion(v.Engine)
	if err != nil {
		return v, e.wrap("check version", fmt.Errorf("engine version %q: %w", v.Engine, err))
	}
	if compare(have, floor) < 0 {
		return v, e.wrap("check version", fmt.Errorf("engine version %s is older than the required %s", v.Engine, minVersion))
	}
	api, err := parseVersion(v.API)
	if err != nil {
		return v, e.wrap("check version", fmt.Errorf("engine API version %q: %w", v.API, err))
	}
	minAPI, _ := parseVersion(MinAPIVersion)
	if compare(api, minAPI) < 0 {
		return v, e.wrap("check version", fmt.Errorf("engine API version %s is older than the client's minimum %s", v.API, MinAPIVersion))
	}
	return v, nil
}

// parseVersion reads the leading dotted numbers of v ("20.10.24+dfsg1" gives 20 10 24).
func parseVersion(v string) ([]int, error) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	end := strings.IndexFunc(v, func(r rune) bool { return r != '.' && (r < '0' || r > '9') })
	if end >= 0 {
		v = v[:end]
	}
	v = strings.TrimRight(v, ".")
	if v == "" {
		return nil, errors.New("not a version number")
	}
	var out []int
	for _, p := range strings.Split(v, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, errors.New("not a version number")
		}
		out = append(out, n)
	}
	return out, nil
}

// compare orders two parsed versions; missing parts count as 0.
func compare(a, b []int) int {
	for i := range max(len(a), len(b)) {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// EngineLabels returns the engine's own labels (dockerd --label k=v, docker info Labels).
func (e *Engine) EngineLabels(ctx context.Context) (map[string]string, error) {
	res, err := e.c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, e.wrap("read engine labels", err)
	}
	labels := make(map[string]string, len(res.Info.Labels))
	for _, l := range res.Info.Labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	return labels, nil
}

// Error is an engine call that failed. It matches bootstrap.ErrEngineAPI with errors.Is.
type Error struct {
	Op   string // what was asked, e.g. "join swarm via 10.0.1.5:2377"
	Host string
	// Down is true when the engine did not answer at all.
	Down bool
	Err  error
}

func (e *Error) Error() string {
	if e.Down {
		return fmt.Sprintf("docker engine at %s is not answering: %s: %v", e.Host, e.Op, e.Err)
	}
	return fmt.Sprintf("%s on docker engine at %s: %v", e.Op, e.Host, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every engine error match bootstrap.ErrEngineAPI.
func (e *Error) Is(target error) bool { return target == bootstrap.ErrEngineAPI }

// probes are the quick reads after which a passed deadline means the engine does not answer
// (a slow init or join that runs out of time says nothing about the engine being down).
var probes = map[string]bool{"read version": true, "read swarm state": true}

func (e *Engine) wrap(op string, err error) error {
	var ne net.Error
	down := client.IsErrConnectionFailed(err) ||
		probes[op] && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout())
	return &Error{Op: op, Host: e.host, Down: down, Err: err}
}

// IsNotFound reports whether err is the engine saying the object (node, task, service) does
// not exist.
func IsNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// RootDir is the engine's data root (docker info DockerRootDir); the swarm's certificates
// live under RootDir/swarm/certificates.
func (e *Engine) RootDir(ctx context.Context) (string, error) {
	res, err := e.c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", e.wrap("read engine data root", err)
	}
	if res.Info.DockerRootDir == "" {
		return "", e.wrap("read engine data root", errors.New("engine reports no DockerRootDir"))
	}
	return res.Info.DockerRootDir, nil
}

// IsNotManager reports whether err is the engine refusing a manager call because it is not
// (or no longer) a swarm manager, or not in a swarm at all. The engine says so only in its
// message (HTTP 503), so this is where that wording is known.
func IsNotManager(err error) bool {
	if err == nil {
		return false
	}
	m := err.Error()
	return strings.Contains(m, "not a swarm manager") || strings.Contains(m, "not part of a swarm")
}
