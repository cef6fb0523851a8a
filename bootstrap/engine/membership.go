package engine

// This node's swarm membership: its state (with what its certificate says), init, join, leave
// and the join tokens.

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// Local reads this node's swarm state.
func (e *Engine) Local(ctx context.Context) (bootstrap.LocalNode, error) {
	res, err := e.c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return bootstrap.LocalNode{}, e.wrap("read swarm state", err)
	}
	ln := localNode(res.Info.Swarm)
	if ln.State != bootstrap.StateInactive && res.Info.DockerRootDir != "" {
		readCert(&ln, filepath.Join(res.Info.DockerRootDir, "swarm", "certificates", "swarm-node.crt"))
	}
	return ln, nil
}

// readCert fills ln's Cert fields from a node certificate (swarmkit: Subject O = cluster id,
// OU = role, CN = node id); it leaves them empty when the file cannot be read (an engine on
// another host) or parsed.
func readCert(ln *bootstrap.LocalNode, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || len(c.Subject.Organization) != 1 {
		return
	}
	ln.CertClusterID, ln.CertNodeID, ln.CertNotAfter = c.Subject.Organization[0], c.Subject.CommonName, c.NotAfter
	ln.CertManager = slices.Contains(c.Subject.OrganizationalUnit, "swarm-manager")
}

func localNode(s swarmapi.Info) bootstrap.LocalNode {
	ln := bootstrap.LocalNode{
		State:     bootstrap.SwarmState(s.LocalNodeState),
		NodeID:    s.NodeID,
		IsManager: s.ControlAvailable,
		NodeAddr:  s.NodeAddr,
		Error:     s.Error,
	}
	if s.Cluster != nil {
		ln.ClusterID = s.Cluster.ID
	}
	for _, p := range s.RemoteManagers {
		ln.RemoteManagers = append(ln.RemoteManagers, p.Addr)
	}
	return ln
}

// Self returns this node's id and whether it is a manager; "" when it is in no swarmapi.
func (e *Engine) Self(ctx context.Context) (string, bool, error) {
	ln, err := e.Local(ctx)
	if err != nil {
		return "", false, err
	}
	if ln.State != bootstrap.StateActive {
		return "", false, nil
	}
	return ln.NodeID, ln.IsManager, nil
}

// Init creates a new swarm with this node as its only manager and returns the node id.
func (e *Engine) Init(ctx context.Context, req bootstrap.InitRequest) (string, error) {
	listen := req.ListenAddr
	if listen == "" {
		listen = "0.0.0.0:2377"
	}
	res, err := e.c.SwarmInit(ctx, client.SwarmInitOptions{ListenAddr: listen, AdvertiseAddr: req.AdvertiseAddr, AutoLockManagers: req.Autolock})
	if err != nil {
		return "", e.wrap("init swarm advertising "+req.AdvertiseAddr, err)
	}
	return res.NodeID, nil
}

// joinTimeout is the start of what the engine answers when its own join deadline passed while
// the join goes on in the background.
const joinTimeout = "Timeout was reached before node joined"

// Join joins an existing swarm and returns once the node is active. When the engine gives up
// waiting ("Timeout was reached before node joined...") the join continues in the background:
// Join then polls the local state until it is active, fails, or ctx ends.
func (e *Engine) Join(ctx context.Context, req bootstrap.JoinRequest) error {
	listen := req.ListenAddr
	if listen == "" {
		listen = "0.0.0.0:2377"
	}
	op := "join swarm via " + strings.Join(req.RemoteAddrs, ",")
	_, err := e.c.SwarmJoin(ctx, client.SwarmJoinOptions{
		ListenAddr:    listen,
		AdvertiseAddr: req.AdvertiseAddr,
		RemoteAddrs:   req.RemoteAddrs,
		JoinToken:     req.Token,
	})
	if err == nil {
		return nil
	}
	if !strings.Contains(err.Error(), joinTimeout) {
		return e.wrap(op, redact(err, req.Token))
	}
	return e.waitActive(ctx, op)
}

// waitActive polls the local swarm state until the node is active.
func (e *Engine) waitActive(ctx context.Context, op string) error {
	t := time.NewTicker(e.pollEvery)
	defer t.Stop()
	last := "pending"
	for {
		res, err := e.c.Info(ctx, client.InfoOptions{})
		if err == nil {
			s := res.Info.Swarm
			switch s.LocalNodeState {
			case swarmapi.LocalNodeStateActive:
				return nil
			case swarmapi.LocalNodeStateError:
				return e.wrap(op, fmt.Errorf("join went on in the background and failed: %s", s.Error))
			case swarmapi.LocalNodeStateInactive:
				return e.wrap(op, errors.New("join went on in the background and the node is inactive again"))
			case swarmapi.LocalNodeStateLocked:
				return e.wrap(op, bootstrap.ErrSwarmLocked)
			}
			last = string(s.LocalNodeState)
		}
		select {
		case <-ctx.Done():
			return e.wrap(op, fmt.Errorf("waiting for the background join (state %s): %w", last, context.Cause(ctx)))
		case <-t.C:
		}
	}
}

// Leave leaves the swarmapi. A node that is in no swarm has nothing to leave: that is not an error.
func (e *Engine) Leave(ctx context.Context, force bool) error {
	_, err := e.c.SwarmLeave(ctx, client.SwarmLeaveOptions{Force: force})
	if err != nil && strings.Contains(err.Error(), "not part of a swarm") {
		return nil
	}
	if err != nil {
		return e.wrap("leave swarm", err)
	}
	return nil
}

// JoinTokens reads the join tokens and the cluster id (managers only).
func (e *Engine) JoinTokens(ctx context.Context) (swarm.JoinTokens, string, error) {
	res, err := e.c.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return swarm.JoinTokens{}, "", e.wrap("read join tokens", err)
	}
	return swarm.JoinTokens{Worker: res.Swarm.JoinTokens.Worker, Manager: res.Swarm.JoinTokens.Manager}, res.Swarm.ID, nil
}
