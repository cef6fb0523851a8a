package agent

import (
	"context"
	"time"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/queue"
)

// scheduledChanges is the leader's handler of the AWS Health scheduled changes of EC2
// instances that reach the queue (lifecycle.ScheduledChanges): nil, so that the consumer
// deletes them, when --maintenance-lead is 0 (scheduled events ignored).
func (d *daemon) scheduledChanges(dw *drainWiring, inst lifecycle.Instances, ob *onBehalf, scope *lifecycle.ClusterScope) func(context.Context, queue.HealthEvent) (time.Duration, error) {
	if d.cfg.MaintenanceLead <= 0 {
		return nil
	}
	sc := &lifecycle.ScheduledChanges{
		Swarm:     engineSwarm{dw.engine},
		Instances: inst,
		Lead:      d.cfg.MaintenanceLead,
		Grace:     d.cfg.QueueGrace,
		Self:      dw.identity.InstanceID,
		Owns: func(ctx context.Context, id string) (bool, error) {
			return scope.Owns(ctx, lifecycle.Notice{InstanceID: id})
		},
		Stop:    func(ctx context.Context, n lifecycle.Notice) error { return d.handleNotice(ctx, dw, inst, ob, n) },
		Observe: d.m.observe,
		Log:     d.log.With().Str("component", "queue").Logger(),
	}
	return func(ctx context.Context, ev queue.HealthEvent) (time.Duration, error) {
		return sc.Handle(ctx, ev.Event, ev.Instances, time.Now())
	}
}
