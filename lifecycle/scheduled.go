package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// ScheduledChanges is the leader acting on EC2 scheduled events that AWS Health announces
// through the queue (queue mode), for the nodes of the cluster whose own agent does not: the
// same rules as a node's own agent follows with its instance metadata, from the same lead
// before the window.
//
//   - An event that stops or retires the instance drains its node out of the swarm as a
//     queued termination notice does (Stop: NoticeHandler.Handle, which leaves the drain to
//     the node's own agent when it starts one within its grace, and drains on its behalf when
//     it does not).
//   - A reboot or host maintenance: the node's own agent marks (swarm.LabelMaintenance) and
//     drains it. When no mark shows Grace after the lead began (the agent is dead), the leader
//     marks and drains it, once EC2 confirms the node's instance; after the reboot the node's
//     agent, started again with its instance, makes it active again (Maintainer). A node
//     drained or paused by someone else is left alone.
//
// It remembers what it did per event and instance, so that an event that comes back (another
// cluster's instances keep it in a shared queue) is not acted on twice.
type ScheduledChanges struct {
	Swarm     Swarm
	Instances Instances
	// Lead is how long before the window the node drains (--maintenance-lead).
	Lead time.Duration
	// Grace is how long the node's own agent has to act once the lead began.
	Grace time.Duration
	// Self is this node's instance: its own agent acts.
	Self string
	// Owns tells whether an instance is in this cluster.
	Owns func(ctx context.Context, instanceID string) (bool, error)
	// Stop drains the instance of an event that stops it out of the swarm.
	Stop    func(ctx context.Context, n Notice) error
	Observe Observer
	Log     zerolog.Logger

	mu   sync.Mutex
	done map[string]bool      // event id|instance id
	seen map[string]time.Time // event id|instance id -> when its lead was first seen begun
}

// ForeignRecheck is how long an event that also names other clusters' instances is hidden
// after this leader acted on its own: their leaders act on theirs meanwhile.
const ForeignRecheck = time.Minute

// Handle acts on event ev of instances at now. again > 0 asks to be called again after it
// (the lead has not begun, an agent's grace runs, other clusters' instances are named); 0
// means the event needs nothing more from this leader.
func (s *ScheduledChanges) Handle(ctx context.Context, ev ScheduledEvent, instances []string, now time.Time) (again time.Duration, err error) {
	s.mu.Lock()
	if s.done == nil {
		s.done, s.seen = map[string]bool{}, map[string]time.Time{}
	}
	s.mu.Unlock()
	log := s.Log.With().Str("reason", ev.Code).Str("value", ev.ID).Logger()
	switch {
	case ev.State != EventActive:
		return 0, nil // over or canceled: a node's own agent makes its node active again
	case !ev.Due(now, s.Lead):
		return ev.NotBefore.Add(-s.Lead).Sub(now), nil
	case !ev.NotAfter.IsZero() && now.After(ev.NotAfter) || ev.NotAfter.IsZero() && now.After(ev.NotBefore.Add(24*time.Hour)):
		return 0, nil // past its window: AWS did it, or the event is stale
	}
	var errs []error
	foreign := false
	for _, id := range instances {
		key := ev.ID + "|" + id
		s.mu.Lock()
		done := s.done[key]
		s.mu.Unlock()
		if done || id == s.Self {
			continue
		}
		mine, err := s.Owns(ctx, id)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("cluster of instance %s: %w", id, err))
			continue
		case !mine:
			foreign = true
			continue
		}
		wait, err := s.one(ctx, ev, id, now, log.With().Str("instance_id", id).Logger())
		switch {
		case err != nil:
			errs = append(errs, err)
		case wait > 0:
			again = max(again, wait)
		default:
			s.mu.Lock()
			s.done[key] = true
			s.mu.Unlock()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if foreign && again == 0 {
		again = ForeignRecheck
	}
	return again, nil
}

// one acts on the event for one instance of the cluster.
func (s *ScheduledChanges) one(ctx context.Context, ev ScheduledEvent, id string, now time.Time, log zerolog.Logger) (time.Duration, error) {
	if ev.Stops() {
		n := Notice{Kind: ev.Code, InstanceID: id, Source: "queue"}
		if ev.NotBefore.After(now) {
			n.Deadline = ev.NotBefore
		}
		return 0, s.Stop(ctx, n)
	}
	nodes, err := s.Swarm.Nodes(ctx)
	if err != nil {
		return 0, fmt.Errorf("scheduled %s of instance %s: list nodes: %w", ev.Code, id, err)
	}
	node, ok, err := NodeOfInstance(nodes, id)
	switch {
	case errors.Is(err, ErrAmbiguous):
		log.Error().Err(err).Str("result", ReasonAmbiguous).Msg("scheduled " + ev.Code + ": several live nodes carry the instance's id: none is drained")
		s.Observe.observe(EventRefused, ReasonAmbiguous)
		return 0, nil
	case err != nil:
		return 0, err
	case !ok:
		return 0, nil // not in the swarm
	case node.Labels[swarm.LabelMaintenance] != "":
		log.Info().Str("node_id", node.ID).Msg("scheduled " + ev.Code + ": the node is drained for it already")
		return 0, nil
	case node.Availability != "active":
		log.Info().Str("node_id", node.ID).Msg("scheduled " + ev.Code + ": the node is " + node.Availability + " by someone else already: left as it is")
		return 0, nil
	}
	key := ev.ID + "|" + id
	s.mu.Lock()
	since, ok := s.seen[key]
	if !ok {
		since, s.seen[key] = now, now
	}
	s.mu.Unlock()
	if left := s.Grace - now.Sub(since); left > 0 {
		return left, nil // the node's own agent drains it from instance metadata
	}
	if err := VerifyNode(ctx, s.Instances, node); err != nil {
		if errors.Is(err, ErrIdentity) {
			log.Warn().Err(err).Str("result", ReasonIdentity).Msg("scheduled " + ev.Code + ": EC2 does not confirm the node's instance: not drained")
			s.Observe.observe(EventRefused, ReasonIdentity)
			return 0, nil
		}
		return 0, err
	}
	if err := s.Swarm.SetNodeLabels(ctx, node.ID, map[string]string{swarm.LabelMaintenance: ev.ID}); err != nil {
		return 0, fmt.Errorf("mark node %s for %s: %w", node.ID, ev.Code, err)
	}
	if err := s.Swarm.SetAvailability(ctx, node.ID, "drain"); err != nil {
		return 0, fmt.Errorf("drain node %s before %s: %w", node.ID, ev.Code, err)
	}
	log.Warn().Str("node_id", node.ID).Str("result", ReasonNoAgent).Time("deadline", ev.NotBefore).
		Msg("scheduled " + ev.Code + " announced by AWS Health: the node's own agent did not drain it; drained on its behalf (its agent makes it active again after the reboot)")
	s.Observe.observe(EventMaintenance, "drained")
	return 0, nil
}
