package agent

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/asg"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// engineSwarm adapts the Docker adapter to lifecycle.Swarm (a manager's own engine).
type engineSwarm struct{ e *engine.Engine }

var _ lifecycle.Swarm = engineSwarm{}

// notFound maps the engine's "no such node" to lifecycle.ErrNoSuchNode.
func notFound(err error) error {
	if err == nil {
		return nil
	}
	if engine.IsNotFound(err) {
		return fmt.Errorf("%w: %w", lifecycle.ErrNoSuchNode, err)
	}
	return err
}

func (s engineSwarm) Node(ctx context.Context, id string) (swarm.Node, error) {
	n, err := s.e.Node(ctx, id)
	return n, notFound(err)
}

func (s engineSwarm) Nodes(ctx context.Context) ([]swarm.Node, error) {
	return s.e.Nodes(ctx)
}

func (s engineSwarm) SetAvailability(ctx context.Context, nodeID, availability string) error {
	return notFound(s.e.SetAvailability(ctx, nodeID, availability))
}

func (s engineSwarm) SetNodeLabels(ctx context.Context, nodeID string, labels map[string]string) error {
	return notFound(s.e.SetNodeLabels(ctx, nodeID, labels))
}

func (s engineSwarm) SetRole(ctx context.Context, nodeID string, role swarm.Role) error {
	return notFound(s.e.SetRole(ctx, nodeID, role))
}

func (s engineSwarm) RemoveNode(ctx context.Context, nodeID string, force bool) error {
	return notFound(s.e.RemoveNode(ctx, nodeID, force))
}

func (s engineSwarm) Tasks(ctx context.Context, nodeID, serviceID string) ([]swarm.Task, error) {
	return s.e.Tasks(ctx, engine.TaskFilter{NodeID: nodeID, ServiceID: serviceID})
}

// fallbackSwarm uses the manager's own engine while it is a manager and another manager's
// control API once it is not (after its demotion the engine refuses manager calls).
type fallbackSwarm struct {
	local  lifecycle.Swarm
	remote lifecycle.Swarm // nil: no fallback
}

var _ lifecycle.Swarm = fallbackSwarm{}

func pick[T any](local, remote func() (T, error), hasRemote bool) (T, error) {
	v, err := local()
	if engine.IsNotManager(err) && hasRemote {
		return remote()
	}
	return v, err
}

func (s fallbackSwarm) do(local, remote func() error) error {
	err := local()
	if engine.IsNotManager(err) && s.remote != nil {
		return remote()
	}
	return err
}

func (s fallbackSwarm) Node(ctx context.Context, id string) (swarm.Node, error) {
	return pick(func() (swarm.Node, error) { return s.local.Node(ctx, id) },
		func() (swarm.Node, error) { return s.remote.Node(ctx, id) }, s.remote != nil)
}

func (s fallbackSwarm) Nodes(ctx context.Context) ([]swarm.Node, error) {
	return pick(func() ([]swarm.Node, error) { return s.local.Nodes(ctx) },
		func() ([]swarm.Node, error) { return s.remote.Nodes(ctx) }, s.remote != nil)
}

func (s fallbackSwarm) Tasks(ctx context.Context, nodeID, serviceID string) ([]swarm.Task, error) {
	return pick(func() ([]swarm.Task, error) { return s.local.Tasks(ctx, nodeID, serviceID) },
		func() ([]swarm.Task, error) { return s.remote.Tasks(ctx, nodeID, serviceID) }, s.remote != nil)
}

func (s fallbackSwarm) SetAvailability(ctx context.Context, nodeID, a string) error {
	return s.do(func() error { return s.local.SetAvailability(ctx, nodeID, a) },
		func() error { return s.remote.SetAvailability(ctx, nodeID, a) })
}

func (s fallbackSwarm) SetNodeLabels(ctx context.Context, nodeID string, l map[string]string) error {
	return s.do(func() error { return s.local.SetNodeLabels(ctx, nodeID, l) },
		func() error { return s.remote.SetNodeLabels(ctx, nodeID, l) })
}

func (s fallbackSwarm) SetRole(ctx context.Context, nodeID string, role swarm.Role) error {
	return s.local.SetRole(ctx, nodeID, role) // only a manager demotes itself, on its own engine
}

func (s fallbackSwarm) RemoveNode(ctx context.Context, nodeID string, force bool) error {
	return s.do(func() error { return s.local.RemoveNode(ctx, nodeID, force) },
		func() error { return s.remote.RemoveNode(ctx, nodeID, force) })
}

// ec2Instances is EC2's word on instances (DescribeInstances, which the managers' policy
// grants) for the leader's checks of a node's claim to an instance. Without it (no AWS
// configuration) the leader takes no AWS action on any node's behalf.
func ec2Instances(ctx context.Context, dw *drainWiring, cfg Config) (lifecycle.Instances, error) {
	ac, err := dw.awsConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return asg.NewInstances(ec2.NewFromConfig(ac)), nil
}
