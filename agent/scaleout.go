package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/lifecycle/scaleout"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// engineServices adapts the Docker adapter to scaleout.Swarm (the leader's own engine).
type engineServices struct{ e *engine.Engine }

var _ scaleout.Swarm = engineServices{}

func (s engineServices) Nodes(ctx context.Context) ([]swarm.Node, error) { return s.e.Nodes(ctx) }

func (s engineServices) Services(ctx context.Context) ([]swarm.Service, error) {
	return s.e.Services(ctx)
}

func (s engineServices) ServiceTasks(ctx context.Context, id string) ([]swarm.Task, error) {
	return s.e.Tasks(ctx, engine.TaskFilter{ServiceID: id, DesiredState: "running"})
}

func (s engineServices) ForceUpdate(ctx context.Context, id string, version uint64, labels map[string]string) error {
	return changed(s.e.ForceUpdateService(ctx, id, version, labels))
}

func (s engineServices) Scale(ctx context.Context, id string, version, replicas uint64, labels map[string]string) error {
	return changed(s.e.ScaleService(ctx, id, version, replicas, labels))
}

func (s engineServices) SetNodeLabels(ctx context.Context, id string, labels map[string]string) error {
	return s.e.SetNodeLabels(ctx, id, labels)
}

// changed maps the engine's "the service changed since it was read" to scaleout.ErrChanged.
func changed(err error) error {
	if errors.Is(err, engine.ErrServiceChanged) {
		return fmt.Errorf("%w: %w", scaleout.ErrChanged, err)
	}
	return err
}

// scaleOptions are the scale-out's options from the configuration.
func scaleOptions(cfg Config) scaleout.Options {
	return scaleout.Options{Cooldown: cfg.RebalanceCooldown, ResizeInterval: cfg.ResizeInterval}
}
