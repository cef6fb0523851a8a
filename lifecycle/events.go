package lifecycle

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Codes of EC2 scheduled events (InstanceStatusEvent.Code; instance metadata
// events/maintenance/scheduled, "Code").
const (
	EventInstanceReboot     = "instance-reboot"
	EventSystemReboot       = "system-reboot"
	EventSystemMaintenance  = "system-maintenance"
	EventInstanceRetirement = "instance-retirement"
	EventInstanceStop       = "instance-stop"
)

// States of a scheduled event: instance metadata lists the active ones under
// events/maintenance/scheduled, the completed and canceled ones under
// events/maintenance/history.
const (
	EventActive    = "active"
	EventCompleted = "completed"
	EventCanceled  = "canceled"
)

// DefaultMaintenanceLead is how long before a scheduled event's NotBefore the agent drains
// its node by default.
const DefaultMaintenanceLead = 30 * time.Minute

// ScheduledEvent is an EC2 scheduled event of an instance: AWS reboots, stops or retires the
// instance, or maintains its host, at some time between NotBefore and NotAfter.
type ScheduledEvent struct {
	ID          string // instance-event-0d59937288b749b32
	Code        string // Event...
	Description string
	State       string    // EventActive, EventCompleted, EventCanceled
	NotBefore   time.Time // the earliest start of the event
	NotAfter    time.Time // the latest end; zero when AWS gives none (instance-stop often)
	// NotBeforeDeadline is the latest NotBefore an operator may reschedule the event to
	// (DescribeInstanceStatus only); zero when the event cannot be rescheduled.
	NotBeforeDeadline time.Time
}

// Stops reports whether the event ends the instance's run: an instance-stop stops it (it
// comes back on another host when started again), an instance-retirement stops an EBS-backed
// instance and terminates one backed by instance store. The node drains and leaves the swarm
// before it, as for a scale-in; a started instance joins again as a new node.
func (e ScheduledEvent) Stops() bool {
	return e.Code == EventInstanceStop || e.Code == EventInstanceRetirement
}

// Reboots reports whether the instance comes back with its disks and address after the
// event: an instance or system reboot, or system maintenance (a network or power
// maintenance of the host, which AWS says may take the instance offline briefly and reboot
// it). The node is drained before it and made active again once it is over; it stays in
// the swarm.
func (e ScheduledEvent) Reboots() bool {
	return e.Code == EventInstanceReboot || e.Code == EventSystemReboot || e.Code == EventSystemMaintenance
}

// Due reports whether the event is active and its window starts within lead of now (or has
// started).
func (e ScheduledEvent) Due(now time.Time, lead time.Duration) bool {
	return e.State == EventActive && !now.Before(e.NotBefore.Add(-lead))
}

// DueEvent returns the due event (Due) for which keep holds with the earliest NotBefore.
func DueEvent(events []ScheduledEvent, now time.Time, lead time.Duration, keep func(ScheduledEvent) bool) (ScheduledEvent, bool) {
	var due []ScheduledEvent
	for _, e := range events {
		if keep(e) && e.Due(now, lead) {
			due = append(due, e)
		}
	}
	if len(due) == 0 {
		return ScheduledEvent{}, false
	}
	return slices.MinFunc(due, func(a, b ScheduledEvent) int {
		return cmp.Or(a.NotBefore.Compare(b.NotBefore), cmp.Compare(a.ID, b.ID))
	}), true
}

// Events of a Maintainer and a Health, for an Observer (reason: the action).
const (
	// EventMaintenance: a node drained ahead of a reboot event ("drained") or made active
	// again after it ("restored").
	EventMaintenance = "maintenance"
	// EventImpaired: the leader drained a node whose instance's status checks fail
	// ("drained"), made it active again once they pass ("restored"), or left one alone
	// because too many are drained for it already ("limit").
	EventImpaired = "impaired"
)

// Maintainer is a node's own agent keeping its node out of task placement while an EC2
// reboot or maintenance event of its instance is due (ScheduledEvent.Reboots, within Lead
// of its NotBefore): it marks the node (swarm.LabelMaintenance = the event id) and drains
// it, so that its tasks run on other nodes before the instance goes down; once no such
// event is due any more (the instance rebooted and AWS cleared the event, or the event was
// canceled or moved away) and the node is back (ready), it makes the node active again and
// takes the mark away. A node drained or paused by someone else (no mark) is left alone,
// and stays so after the event: undoing an operator's drain is the operator's.
//
// Events that stop or retire the instance are not its business: they drain the node out of
// the swarm as a termination does (run's watch).
type Maintainer struct {
	// Swarm is the local engine on a manager, the managers' control API on a worker.
	Swarm Swarm
	// Lead is how long before an event's NotBefore the node drains; 0 means
	// DefaultMaintenanceLead.
	Lead    time.Duration
	Log     zerolog.Logger
	Observe Observer

	said string // what was last logged at info level, so that a standing state is told once
}

// MaintenanceState is what a Maintainer pass found or did.
type MaintenanceState struct {
	// Event is the due reboot event, if any.
	Event ScheduledEvent
	// Drained: the node is drained under this agent's mark.
	Drained bool
	// Marked: the node carries this agent's mark after the pass (a later pass has work:
	// keep it drained, or make it active again once it is back).
	Marked bool
	// Restored: this pass made the node active again.
	Restored bool
	// TasksHere is how many tasks still run on a drained node (-1: not asked).
	TasksHere int
}

// Pass brings the node in line with events, the instance's scheduled events as instance
// metadata lists them at now.
func (m *Maintainer) Pass(ctx context.Context, nodeID string, events []ScheduledEvent, now time.Time) (MaintenanceState, error) {
	st := MaintenanceState{TasksHere: -1}
	lead := cmp.Or(m.Lead, DefaultMaintenanceLead)
	ev, due := DueEvent(events, now, lead, ScheduledEvent.Reboots)
	node, err := m.Swarm.Node(ctx, nodeID)
	if err != nil {
		return st, fmt.Errorf("maintenance: read node %s: %w", nodeID, err)
	}
	mark := node.Labels[swarm.LabelMaintenance]
	log := m.Log.With().Str("node_id", nodeID).Logger()
	if due {
		st.Event = ev
		log = log.With().Str("reason", ev.Code).Str("value", ev.ID).Logger()
	}
	switch {
	case due && mark == "" && node.Availability != "active":
		m.tell(log, "kept:"+ev.ID+":"+node.Availability, fmt.Sprintf("scheduled %s from %s: the node is %s by someone else already: left as it is (and after the event)",
			ev.Code, ev.NotBefore.UTC().Format(time.RFC3339), node.Availability))
		return st, nil
	case due:
		if mark != ev.ID {
			// Mark first: a mark on an active node is drained by the next pass, a drain
			// without a mark would never be undone.
			if err := m.Swarm.SetNodeLabels(ctx, nodeID, map[string]string{swarm.LabelMaintenance: ev.ID}); err != nil {
				return st, fmt.Errorf("maintenance: mark node %s for event %s: %w", nodeID, ev.ID, err)
			}
		}
		if node.Availability == "active" {
			if err := m.Swarm.SetAvailability(ctx, nodeID, "drain"); err != nil {
				return st, fmt.Errorf("maintenance: drain node %s before event %s: %w", nodeID, ev.ID, err)
			}
			log.Warn().Time("deadline", ev.NotBefore).Msg(fmt.Sprintf("scheduled %s from %s: node drained so that its tasks run elsewhere before it",
				ev.Code, ev.NotBefore.UTC().Format(time.RFC3339)))
			m.Observe.observe(EventMaintenance, "drained")
			m.said = ""
		}
		st.Drained, st.Marked = true, true
		if tasks, err := m.Swarm.Tasks(ctx, nodeID, ""); err == nil {
			st.TasksHere = 0
			for _, t := range tasks {
				if t.State == "running" {
					st.TasksHere++
				}
			}
			if st.TasksHere == 0 {
				m.tell(log, "moved:"+ev.ID, "no task runs here any more: ready for the "+ev.Code)
			}
		}
		return st, nil
	case mark == "":
		return st, nil
	case node.State != "ready":
		st.Marked = true
		m.tell(log, "back:"+mark, "the maintenance event is over: waiting for the node to be ready before making it active again")
		return st, nil
	}
	if node.Availability == "drain" {
		if err := m.Swarm.SetAvailability(ctx, nodeID, "active"); err != nil {
			return st, fmt.Errorf("maintenance: make node %s active again: %w", nodeID, err)
		}
	}
	if err := m.Swarm.SetNodeLabels(ctx, nodeID, map[string]string{swarm.LabelMaintenance: ""}); err != nil {
		return st, fmt.Errorf("maintenance: take node %s's mark away: %w", nodeID, err)
	}
	st.Restored = node.Availability == "drain"
	log.Info().Str("value", mark).Str("state", node.Availability).Msg("the scheduled event is over: node active again")
	if st.Restored {
		m.Observe.observe(EventMaintenance, "restored")
	}
	m.said = ""
	return st, nil
}

// tell logs msg at info level once while key stays the same.
func (m *Maintainer) tell(log zerolog.Logger, key, msg string) {
	if m.said == key {
		return
	}
	m.said = key
	log.Info().Msg(msg)
}
