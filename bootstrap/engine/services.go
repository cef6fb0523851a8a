package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Docker's update config for a service that has none (swarmkit's defaults).
var defaultUpdate = swarm.UpdateConfig{Parallelism: 1, Order: string(swarmapi.UpdateOrderStopFirst), Monitor: 5 * time.Second}

func service(s swarmapi.Service) swarm.Service {
	spec := s.Spec
	out := swarm.Service{
		ID:          s.ID,
		Name:        spec.Name,
		Version:     s.Version.Index,
		Labels:      maps.Clone(spec.Labels),
		Update:      defaultUpdate,
		ForceUpdate: spec.TaskTemplate.ForceUpdate,
		CreatedAt:   s.CreatedAt,
		UpdatedAt:   s.UpdatedAt,
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if r := spec.Mode.Replicated; r != nil {
		out.Replicated, out.Replicas = true, 1
		if r.Replicas != nil {
			out.Replicas = *r.Replicas
		}
	}
	if p := spec.TaskTemplate.Placement; p != nil {
		out.Constraints = append(out.Constraints, p.Constraints...)
		for _, pref := range p.Preferences {
			if pref.Spread != nil {
				out.Spread = append(out.Spread, pref.Spread.SpreadDescriptor)
			}
		}
		out.MaxPerNode = p.MaxReplicas
		for _, pl := range p.Platforms {
			out.Platforms = append(out.Platforms, pl.OS+"/"+pl.Architecture)
		}
	}
	if u := spec.UpdateConfig; u != nil {
		out.Update = swarm.UpdateConfig{Parallelism: u.Parallelism, Delay: u.Delay, Order: string(u.Order), Monitor: u.Monitor}
		if out.Update.Order == "" {
			out.Update.Order = defaultUpdate.Order
		}
		if out.Update.Monitor == 0 {
			out.Update.Monitor = defaultUpdate.Monitor
		}
	}
	if st := s.UpdateStatus; st != nil {
		out.UpdateState = string(st.State)
		if st.StartedAt != nil {
			out.UpdateStarted = *st.StartedAt
		}
	}
	return out
}

// Services lists the swarm's services (managers only).
func (e *Engine) Services(ctx context.Context) ([]swarm.Service, error) {
	res, err := e.c.ServiceList(ctx, client.ServiceListOptions{})
	if err != nil {
		return nil, e.wrap("list services", err)
	}
	out := make([]swarm.Service, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, service(s))
	}
	return out, nil
}

// ErrServiceChanged means the service's spec is no longer at the version the caller read:
// someone else updated it since. Nothing was changed; read it again and decide again.
var ErrServiceChanged = errors.New("the service changed since it was read")

// ForceUpdateService bumps the task template's ForceUpdate counter of service id, which rolls
// every task out again under the service's own update config (as `docker service update
// --force` does), and merges labels into the service's labels, in one update of the spec at
// version (the one the caller decided on; ErrServiceChanged when it moved on).
func (e *Engine) ForceUpdateService(ctx context.Context, id string, version uint64, labels map[string]string) error {
	return e.updateService(ctx, id, version, "force an update of service "+id, func(s *swarmapi.ServiceSpec) error {
		s.TaskTemplate.ForceUpdate++
		return nil
	}, labels)
}

// ScaleService sets the replicas of replicated service id and merges labels into the
// service's labels, in one update of the spec at version (ErrServiceChanged when it moved on).
func (e *Engine) ScaleService(ctx context.Context, id string, version, replicas uint64, labels map[string]string) error {
	return e.updateService(ctx, id, version, fmt.Sprintf("scale service %s to %d", id, replicas), func(s *swarmapi.ServiceSpec) error {
		if s.Mode.Replicated == nil {
			return errors.New("not a replicated service")
		}
		s.Mode.Replicated.Replicas = &replicas
		return nil
	}, labels)
}

// updateService reads service id's spec, refuses when its version is not version, lets
// mutate change it, merges labels (an empty value deletes the key) and writes it back at that
// version. The registry credentials stay the spec's; the image is not resolved again.
func (e *Engine) updateService(ctx context.Context, id string, version uint64, op string, mutate func(*swarmapi.ServiceSpec) error, labels map[string]string) error {
	res, err := e.c.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
	if err != nil {
		return e.wrap(op, err)
	}
	svc := res.Service
	if svc.Version.Index != version {
		return e.wrap(op, fmt.Errorf("%w: version %d, not %d", ErrServiceChanged, svc.Version.Index, version))
	}
	spec := svc.Spec
	spec.Labels = maps.Clone(spec.Labels)
	if err := mutate(&spec); err != nil {
		return e.wrap(op, err)
	}
	if len(labels) > 0 && spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	for k, v := range labels {
		if v == "" {
			delete(spec.Labels, k)
		} else {
			spec.Labels[k] = v
		}
	}
	_, err = e.c.ServiceUpdate(ctx, id, client.ServiceUpdateOptions{Version: svc.Version, Spec: spec})
	if err != nil {
		if outOfSequence(err) {
			err = fmt.Errorf("%w: %w", ErrServiceChanged, err)
		}
		return e.wrap(op, err)
	}
	return nil
}
