package lifecycle

// The leader's health duty: draining nodes whose instance status checks fail, and making them
// active again once healthy.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Instance status values (InstanceStatusSummary.Status).
const (
	StatusOK       = "ok"
	StatusImpaired = "impaired"
)

// InstanceStatus is EC2's DescribeInstanceStatus of an instance: its status checks and
// scheduled events.
type InstanceStatus struct {
	InstanceID string
	// State is EC2's state name (running, stopped, ...).
	State string
	// System and Instance are the system and instance status checks' summaries: ok,
	// impaired, insufficient-data, not-applicable or initializing.
	System, Instance string
	// Events are the scheduled events EC2 describes (completed ones up to a week after,
	// State completed).
	Events []ScheduledEvent
}

// Impaired reports whether a status check fails.
func (s InstanceStatus) Impaired() bool {
	return s.System == StatusImpaired || s.Instance == StatusImpaired
}

// Healthy reports whether both status checks pass.
func (s InstanceStatus) Healthy() bool {
	return s.System == StatusOK && s.Instance == StatusOK
}

// Statuses is what the leader asks EC2 about instances' status checks; *asg.Instances
// satisfies it.
type Statuses interface {
	// Statuses describes the instances (instances EC2 does not describe are absent).
	Statuses(ctx context.Context, instanceIDs []string) (map[string]InstanceStatus, error)
}

// Health is the leader draining the nodes whose instances fail their EC2 status checks
// (the system check: the host, its network or power; the instance check: the instance's own
// kernel, network or disks), so that their tasks run on healthy nodes: a node whose
// instance is impaired may still show ready to the swarm while its tasks cannot serve. It
// marks such a node (swarm.LabelImpaired) and drains it, and once both checks pass again it
// makes the node active and takes the mark away. A node drained or paused by someone else
// is left alone; a node whose claim to its instance EC2 does not confirm (VerifyNode) is
// not acted on. At most a third of the nodes (at least one) are drained for this at a time,
// so that an EC2-wide fault does not empty the swarm: beyond that the leader says so and
// waits.
type Health struct {
	Swarm     Swarm
	Status    Statuses
	Instances Instances
	Log       zerolog.Logger
	Observe   Observer

	verified map[string]string // node id -> "instance|addr" EC2 confirmed
	said     map[string]string // node id -> what was last said of it
	// off: EC2 refused DescribeInstanceStatus for want of permission (the managers' policy
	// does not grant it); the Health then does nothing more.
	off bool
}

// Pass looks at the nodes (one leader pass's list) with their instances' status checks.
func (h *Health) Pass(ctx context.Context, nodes []swarm.Node) error {
	if h.verified == nil {
		h.verified, h.said = map[string]string{}, map[string]string{}
	}
	var ids []string
	var watched []swarm.Node
	for _, n := range nodes {
		if n.InstanceID() == "" || n.Labels[swarm.LabelLeaving] != "" {
			continue
		}
		watched = append(watched, n)
		if !slices.Contains(ids, n.InstanceID()) {
			ids = append(ids, n.InstanceID())
		}
	}
	if len(ids) == 0 || h.off {
		return nil
	}
	statuses, err := h.Status.Statuses(ctx, ids)
	if denied(err) {
		h.off = true
		h.Log.Warn().Err(err).Msg("nodes of impaired instances are not drained: the managers' instance profile does not grant ec2:DescribeInstanceStatus")
		return nil
	}
	if err != nil {
		return fmt.Errorf("instance status checks: %w", err)
	}
	limit := max(1, len(watched)/3)
	drained := 0
	for _, n := range watched {
		if n.Labels[swarm.LabelImpaired] != "" {
			drained++
		}
	}
	var errs []error
	for _, n := range watched {
		st, known := statuses[n.InstanceID()]
		marked := n.Labels[swarm.LabelImpaired] != ""
		log := h.Log.With().Str("node_id", n.ID).Str("instance_id", n.InstanceID()).
			Str("state", st.System+"/"+st.Instance).Logger()
		switch {
		case marked && known && st.Healthy():
			errs = append(errs, h.restore(ctx, n, log))
		case marked || !known || !st.Impaired():
		case n.Availability != "active":
			h.tell(n.ID, "kept", log, "the instance's status checks fail; the node is "+n.Availability+" by someone else already: left as it is")
		case drained >= limit:
			if h.tell(n.ID, "limit", log, fmt.Sprintf("the instance's status checks fail, but %d of %d nodes are drained for failing checks already (at most a third): left active", drained, len(watched))) {
				h.Observe.observe(EventImpaired, "limit")
			}
		default:
			err := h.drain(ctx, nodes, n, log)
			if err == nil {
				drained++
			}
			errs = append(errs, err)
		}
	}
	for id := range h.said {
		if !slices.ContainsFunc(watched, func(n swarm.Node) bool { return n.ID == id }) {
			delete(h.said, id)
			delete(h.verified, id)
		}
	}
	return errors.Join(errs...)
}

// drain marks and drains n, once EC2 confirms n's instance and no other live node claims it.
func (h *Health) drain(ctx context.Context, nodes []swarm.Node, n swarm.Node, log zerolog.Logger) error {
	if _, _, err := NodeOfInstance(nodes, n.InstanceID()); errors.Is(err, ErrAmbiguous) {
		if h.tell(n.ID, "ambiguous", log, "the instance's status checks fail, but several live nodes carry its id: none is drained") {
			h.Observe.observe(EventRefused, ReasonAmbiguous)
		}
		return nil
	}
	if err := h.verify(ctx, n); err != nil {
		if errors.Is(err, ErrIdentity) {
			if h.tell(n.ID, "identity", log.With().Err(err).Logger(), "the instance's status checks fail, but EC2 does not confirm the node's instance: not drained") {
				h.Observe.observe(EventRefused, ReasonIdentity)
			}
			return nil
		}
		return err
	}
	if err := h.Swarm.SetNodeLabels(ctx, n.ID, map[string]string{swarm.LabelImpaired: time.Now().UTC().Format(time.RFC3339)}); err != nil {
		return fmt.Errorf("mark node %s impaired: %w", n.ID, err)
	}
	if err := h.Swarm.SetAvailability(ctx, n.ID, "drain"); err != nil {
		return fmt.Errorf("drain impaired node %s: %w", n.ID, err)
	}
	log.Warn().Str("result", "drained").Msg("the instance's EC2 status checks fail: node drained so that its tasks run on healthy nodes")
	h.Observe.observe(EventImpaired, "drained")
	h.said[n.ID] = "drained"
	return nil
}

// restore makes a node the leader drained active again (when it is still drained) and takes
// the mark away.
func (h *Health) restore(ctx context.Context, n swarm.Node, log zerolog.Logger) error {
	if n.Availability == "drain" {
		if err := h.Swarm.SetAvailability(ctx, n.ID, "active"); err != nil {
			return fmt.Errorf("make node %s active again: %w", n.ID, err)
		}
	}
	if err := h.Swarm.SetNodeLabels(ctx, n.ID, map[string]string{swarm.LabelImpaired: ""}); err != nil {
		return fmt.Errorf("take node %s's impaired mark away: %w", n.ID, err)
	}
	log.Info().Str("result", "restored").Msg("the instance's EC2 status checks pass again: node active again")
	h.Observe.observe(EventImpaired, "restored")
	delete(h.said, n.ID)
	return nil
}

// tell logs msg once while the node's situation (key) stays the same; it reports whether it
// logged.
func (h *Health) tell(nodeID, key string, log zerolog.Logger, msg string) bool {
	if h.said[nodeID] == key {
		return false
	}
	h.said[nodeID] = key
	log.Warn().Msg(msg)
	return true
}

// verify is VerifyNode, remembered per node, instance and address.
func (h *Health) verify(ctx context.Context, n swarm.Node) error {
	key := n.InstanceID() + "|" + n.Addr
	if h.verified[n.ID] == key {
		return nil
	}
	if err := VerifyNode(ctx, h.Instances, n); err != nil {
		return err
	}
	h.verified[n.ID] = key
	return nil
}
