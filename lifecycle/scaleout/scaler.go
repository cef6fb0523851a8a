package scaleout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Swarm is what the Scaler needs from the swarm's managers (the leader's own engine).
type Swarm interface {
	Nodes(ctx context.Context) ([]swarm.Node, error)
	Services(ctx context.Context) ([]swarm.Service, error)
	// ServiceTasks lists the service's tasks meant to run (desired state running).
	ServiceTasks(ctx context.Context, serviceID string) ([]swarm.Task, error)
	// ForceUpdate bumps the service's ForceUpdate counter and merges labels into its labels,
	// at spec version version; ErrChanged (wrapped) when the service moved on since.
	ForceUpdate(ctx context.Context, serviceID string, version uint64, labels map[string]string) error
	// Scale sets the service's replicas and merges labels, at spec version version.
	Scale(ctx context.Context, serviceID string, version, replicas uint64, labels map[string]string) error
	SetNodeLabels(ctx context.Context, nodeID string, labels map[string]string) error
}

// ErrChanged is what a Swarm returns (wrapped) when a service changed since it was read: the
// next pass decides again on what it then reads.
var ErrChanged = errors.New("service changed since it was read")

// Event is something the Scaler did, for metrics.
type Event struct {
	Kind    string // KindRebalance or KindResize
	Service string // name
	// Rebalance: Started (one per service rolled out), or finished with Result completed,
	// paused, rolled_back or gone, and Moved: tasks that ended on another node than before.
	Started bool
	Result  string
	Moved   int
	// Resize: From and To replicas.
	From, To uint64
}

// How long the Scaler waits for a rebalance it started to show in the service's update
// status; past that it counts it finished with ResultUnknown.
const startedWait = 5 * time.Minute

// Results of a rebalance (Event.Result).
const (
	ResultCompleted  = "completed"
	ResultPaused     = "paused"
	ResultRolledBack = "rolled_back"
	ResultGone       = "gone"
	ResultUnknown    = "unknown"
)

// Scaler runs the leader's scale-out duties: one Pass per leader tick.
type Scaler struct {
	Swarm   Swarm
	Options Options
	Log     zerolog.Logger
	// Observe is told of every rebalance started and finished and every resize; nil: nobody.
	Observe func(Event)

	mu      sync.Mutex
	running map[string]started // service id -> a rebalance this Scaler started
}

// started is a rebalance this Scaler started and watches to its end.
type started struct {
	name   string
	at     time.Time
	before map[string]int
}

func (s *Scaler) observe(e Event) {
	if s.Observe != nil {
		s.Observe(e)
	}
}

// Read takes a snapshot of sw at now with the tasks the plan needs, and the plan over it.
func Read(ctx context.Context, sw Swarm, now time.Time, o Options) (Snapshot, Plan, error) {
	nodes, err := sw.Nodes(ctx)
	if err != nil {
		return Snapshot{}, Plan{}, fmt.Errorf("scale-out: list nodes: %w", err)
	}
	services, err := sw.Services(ctx)
	if err != nil {
		return Snapshot{}, Plan{}, fmt.Errorf("scale-out: list services: %w", err)
	}
	snap := Snapshot{Now: now, Nodes: nodes, Services: services, Tasks: map[string][]swarm.Task{}}
	p := Compute(snap, o)
	if len(p.NeedTasks) == 0 {
		return snap, p, nil
	}
	for _, id := range p.NeedTasks {
		tasks, err := sw.ServiceTasks(ctx, id)
		if err != nil {
			return Snapshot{}, Plan{}, fmt.Errorf("scale-out: list the tasks of service %s: %w", id, err)
		}
		snap.Tasks[id] = tasks
	}
	return snap, Compute(snap, o), nil
}

// Pass reads the swarm, carries out what Compute decides and watches the rebalances it
// started to their end. Errors about one service or node do not stop the others; they are
// returned joined. A service that changed since it was read is left to the next pass.
func (s *Scaler) Pass(ctx context.Context, now time.Time) (Plan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		s.running = map[string]started{}
	}
	snap, p, err := Read(ctx, s.Swarm, now, s.Options)
	if err != nil {
		return Plan{}, err
	}
	var errs []error
	s.watch(ctx, snap)

	shrunk := true
	for _, r := range p.Resizes {
		log := s.Log.With().Str("swarm_service", r.Service.Name).Str("swarm_service_id", r.Service.ID).Logger()
		err := s.Swarm.Scale(ctx, r.Service.ID, r.Service.Version, r.To, map[string]string{swarm.LabelResized: unixValue(now)})
		if err != nil {
			shrunk = shrunk && r.To > r.From
			if errors.Is(err, ErrChanged) {
				log.Debug().Err(err).Msg("scale-out: service changed since it was read: deciding again next pass")
				continue
			}
			errs = append(errs, fmt.Errorf("resize service %s from %d to %d: %w", r.Service.Name, r.From, r.To, err))
			continue
		}
		log.Info().Str("action", KindResize).Uint64("replicas_from", r.From).Uint64("replicas_to", r.To).Msg("resized service: " + r.Why)
		s.observe(Event{Kind: KindResize, Service: r.Service.Name, From: r.From, To: r.To})
	}
	if shrunk {
		for _, id := range p.Release {
			if err := s.Swarm.SetNodeLabels(ctx, id, map[string]string{swarm.LabelCounted: ""}); err != nil {
				errs = append(errs, fmt.Errorf("release leaving node %s: %w", id, err))
				continue
			}
			s.Log.Info().Str("node_id", id).Msg("leaving node released: the services that counted it are resized without it")
		}
	}
	for _, id := range p.Count {
		if err := s.Swarm.SetNodeLabels(ctx, id, map[string]string{swarm.LabelCounted: "true"}); err != nil {
			errs = append(errs, fmt.Errorf("label node %s counted: %w", id, err))
		}
	}
	for _, r := range p.Rebalances {
		log := s.Log.With().Str("swarm_service", r.Service.Name).Str("swarm_service_id", r.Service.ID).Logger()
		err := s.Swarm.ForceUpdate(ctx, r.Service.ID, r.Service.Version, map[string]string{swarm.LabelRebalanced: unixValue(now)})
		if err != nil {
			if errors.Is(err, ErrChanged) {
				log.Debug().Err(err).Msg("scale-out: service changed since it was read: deciding again next pass")
				continue
			}
			errs = append(errs, fmt.Errorf("rebalance service %s: %w", r.Service.Name, err))
			continue
		}
		s.running[r.Service.ID] = started{name: r.Service.Name, at: now, before: r.Before}
		log.Info().Str("action", KindRebalance).Int("nodes", r.Nodes).Int("tasks_to_move", r.Moves).
			Uint64("parallelism", r.Service.Update.Parallelism).Str("order", r.Service.Update.Order).
			Msg("rebalance started: rolling the service out again onto joined node " + strings.Join(r.Joined, ", "))
		s.observe(Event{Kind: KindRebalance, Service: r.Service.Name, Started: true})
	}
	for _, w := range p.Waiting {
		s.Log.Debug().Str("action", w.Kind).Str("swarm_service", w.Service).Time("until", w.Until).Msg(w.What + "; waiting for " + w.Because)
	}
	return p, errors.Join(errs...)
}

// watch counts the rebalances this Scaler started that have ended, and the tasks they moved.
func (s *Scaler) watch(ctx context.Context, snap Snapshot) {
	for id, st := range s.running {
		i := slices.IndexFunc(snap.Services, func(x swarm.Service) bool { return x.ID == id })
		result := ""
		switch {
		case i < 0:
			result = ResultGone
		case !snap.Services[i].UpdateStarted.Before(st.at.Add(-time.Second)) && !updating(snap.Services[i]):
			switch snap.Services[i].UpdateState {
			case "completed":
				result = ResultCompleted
			case "paused":
				result = ResultPaused
			case "rollback_completed", "rollback_paused":
				result = ResultRolledBack
			}
		case snap.Now.Sub(st.at) > startedWait && snap.Services[i].UpdateStarted.Before(st.at.Add(-time.Second)):
			result = ResultUnknown
		}
		if result == "" {
			continue
		}
		delete(s.running, id)
		moved := 0
		if result != ResultGone {
			if tasks, err := s.Swarm.ServiceTasks(ctx, id); err == nil {
				moved = movedTasks(st.before, tasks)
			}
		}
		s.Log.Info().Str("swarm_service", st.name).Str("swarm_service_id", id).Str("result", result).Int("tasks_moved", moved).
			Dur("elapsed", snap.Now.Sub(st.at)).Msg("rebalance finished")
		s.observe(Event{Kind: KindRebalance, Service: st.name, Result: result, Moved: moved})
	}
}

// movedTasks counts the running tasks that are on a node beyond what it ran before.
func movedTasks(before map[string]int, tasks []swarm.Task) int {
	after := map[string]int{}
	for _, t := range tasks {
		if t.DesiredState == "running" && t.State == "running" && t.NodeID != "" {
			after[t.NodeID]++
		}
	}
	moved := 0
	for id, n := range after {
		moved += max(0, n-before[id])
	}
	return moved
}
