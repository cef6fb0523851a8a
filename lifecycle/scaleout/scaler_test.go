package scaleout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// fakeSwarm is the leader's view for the Scaler: nodes, services and their tasks in memory,
// and a journal of every change.
type fakeSwarm struct {
	nodes    []swarm.Node
	services []swarm.Service
	tasks    map[string][]swarm.Task
	changed  map[string]bool // service id -> its next update finds it changed
	failNode error
	journal  []string
	reads    map[string]int // "tasks <id>" -> calls
}

func (f *fakeSwarm) Nodes(context.Context) ([]swarm.Node, error) { return slices.Clone(f.nodes), nil }
func (f *fakeSwarm) Services(context.Context) ([]swarm.Service, error) {
	return slices.Clone(f.services), nil
}

func (f *fakeSwarm) ServiceTasks(_ context.Context, id string) ([]swarm.Task, error) {
	if f.reads == nil {
		f.reads = map[string]int{}
	}
	f.reads["tasks "+id]++
	return slices.Clone(f.tasks[id]), nil
}

func (f *fakeSwarm) update(id string, version uint64, mutate func(*swarm.Service), labels map[string]string) error {
	i := slices.IndexFunc(f.services, func(s swarm.Service) bool { return s.ID == id })
	if i < 0 {
		return errors.New("no such service")
	}
	s := &f.services[i]
	if f.changed[id] || s.Version != version {
		return fmt.Errorf("update service %s: %w", id, ErrChanged)
	}
	s.Labels = maps.Clone(s.Labels)
	maps.Copy(s.Labels, labels)
	mutate(s)
	s.Version++
	return nil
}

func (f *fakeSwarm) ForceUpdate(_ context.Context, id string, version uint64, labels map[string]string) error {
	err := f.update(id, version, func(s *swarm.Service) { s.ForceUpdate++; s.UpdateState = "" }, labels)
	if err == nil {
		f.journal = append(f.journal, "force-update "+id)
	}
	return err
}

func (f *fakeSwarm) Scale(_ context.Context, id string, version, replicas uint64, labels map[string]string) error {
	err := f.update(id, version, func(s *swarm.Service) { s.Replicas = replicas }, labels)
	if err == nil {
		f.journal = append(f.journal, fmt.Sprintf("scale %s %d", id, replicas))
	}
	return err
}

func (f *fakeSwarm) SetNodeLabels(_ context.Context, id string, labels map[string]string) error {
	if f.failNode != nil {
		return f.failNode
	}
	i := slices.IndexFunc(f.nodes, func(n swarm.Node) bool { return n.ID == id })
	maps.Copy(f.nodes[i].Labels, labels)
	for k, v := range labels {
		f.journal = append(f.journal, fmt.Sprintf("label %s %s=%s", id, k, v))
	}
	return nil
}

func (f *fakeSwarm) service(id string) swarm.Service {
	return f.services[slices.IndexFunc(f.services, func(s swarm.Service) bool { return s.ID == id })]
}

// TestScalerPass: a pass carries out the plan (shrink, release, count, rebalance), writes the
// labels that remember it, counts it, and watches the rebalance to its end.
func TestScalerPass(t *testing.T) {
	nodes := append(counted(three()...), node("d", cooldown), node("e", cooldown))
	f := &fakeSwarm{nodes: nodes, services: []swarm.Service{
		service("spread", 6, swarm.LabelRebalance+"=true"),
		service("web", 6, swarm.LabelReplicasPerNode+"=2"),
		service("plain", 6),
	}, tasks: map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:2", "c:2")}}
	var events []Event
	s := &Scaler{Swarm: f, Options: opts, Log: zerolog.Nop(), Observe: func(e Event) { events = append(events, e) }}

	p, err := s.Pass(t.Context(), t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"scale web 10", "label d swarm-agent.replicas-counted=true", "label e swarm-agent.replicas-counted=true", "force-update spread"}
	if !slices.Equal(f.journal, want) {
		t.Fatalf("journal %q, want %q\n%s", f.journal, want, strings.Join(p.Lines(t0), "\n"))
	}
	if v := f.service("spread").Labels[swarm.LabelRebalanced]; v != unix(0) {
		t.Errorf("spread labelled rebalanced=%q, want %s", v, unix(0))
	}
	if v := f.service("web").Labels[swarm.LabelResized]; v != unix(0) {
		t.Errorf("web labelled resized=%q, want %s", v, unix(0))
	}
	if f.service("plain").Version != 10 {
		t.Error("the unlabelled service was changed")
	}
	if len(events) != 2 || events[0] != (Event{Kind: KindResize, Service: "web", From: 6, To: 10}) || events[1] != (Event{Kind: KindRebalance, Service: "spread", Started: true}) {
		t.Fatalf("events %+v", events)
	}

	// The next pass: nothing more to do, and the rebalance is rolling.
	f.journal = nil
	sp := &f.services[0]
	sp.UpdateState, sp.UpdateStarted = "updating", t0.Add(100*time.Millisecond)
	if _, err := s.Pass(t.Context(), t0.Add(5*time.Second)); err != nil || len(f.journal) > 0 {
		t.Fatalf("second pass: %v, journal %q", err, f.journal)
	}
	// It completed: counted once, with the tasks that moved.
	sp.UpdateState = "completed"
	f.tasks["spread"] = tasks("spread", "a:2", "b:1", "c:1", "d:1", "e:1")
	if _, err := s.Pass(t.Context(), t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pass(t.Context(), t0.Add(35*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := events[2:]; len(got) != 1 || got[0] != (Event{Kind: KindRebalance, Service: "spread", Result: ResultCompleted, Moved: 2}) {
		t.Fatalf("events after the rebalance %+v, want one completed with 2 tasks moved", got)
	}
	if len(f.journal) > 0 {
		t.Errorf("a balanced cluster still changed: %q", f.journal)
	}

	// Two nodes leave: web shrinks at once and they are released in the same pass.
	for _, id := range []string{"d", "e"} {
		i := slices.IndexFunc(f.nodes, func(n swarm.Node) bool { return n.ID == id })
		f.nodes[i] = leavingNode(f.nodes[i])
	}
	if _, err := s.Pass(t.Context(), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	want = []string{"scale web 6", "label d swarm-agent.replicas-counted=", "label e swarm-agent.replicas-counted="}
	if !slices.Equal(f.journal, want) {
		t.Fatalf("journal %q, want %q", f.journal, want)
	}
}

// TestScalerChangedService: a service that changed since it was read is left to the next
// pass (no error, no count), and a leaving node is not released while its shrink failed.
func TestScalerChangedService(t *testing.T) {
	f := &fakeSwarm{nodes: append(counted(three()[:2]...), counted(leavingNode(node("c", old)))...),
		services: []swarm.Service{service("web", 6, swarm.LabelReplicasPerNode+"=2")}, changed: map[string]bool{"web": true}}
	var events []Event
	s := &Scaler{Swarm: f, Options: opts, Log: zerolog.Nop(), Observe: func(e Event) { events = append(events, e) }}
	if _, err := s.Pass(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	if len(f.journal) > 0 || len(events) > 0 {
		t.Fatalf("journal %q, events %+v; want nothing done", f.journal, events)
	}
	f.changed = nil
	if _, err := s.Pass(t.Context(), t0.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"scale web 4", "label c swarm-agent.replicas-counted="}; !slices.Equal(f.journal, want) {
		t.Fatalf("journal %q, want %q", f.journal, want)
	}
}

// TestScalerRebalanceOutcomes: a rebalance that paused, rolled back, vanished or never
// showed is counted once with that result.
func TestScalerRebalanceOutcomes(t *testing.T) {
	for _, c := range []struct {
		name   string
		after  func(f *fakeSwarm)
		wait   time.Duration
		result string
	}{
		{"paused", func(f *fakeSwarm) { f.services[0].UpdateState, f.services[0].UpdateStarted = "paused", t0 }, time.Minute, ResultPaused},
		{"rolled back", func(f *fakeSwarm) { f.services[0].UpdateState, f.services[0].UpdateStarted = "rollback_completed", t0 }, time.Minute, ResultRolledBack},
		{"removed", func(f *fakeSwarm) { f.services = nil }, time.Minute, ResultGone},
		{"never started", func(f *fakeSwarm) { f.services[0].UpdateState = "completed" }, startedWait + time.Minute, ResultUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeSwarm{nodes: append(three(), node("d", cooldown)), services: []swarm.Service{service("spread", 4, swarm.LabelRebalance+"=true")},
				tasks: map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:1", "c:1")}}
			var events []Event
			s := &Scaler{Swarm: f, Options: opts, Log: zerolog.Nop(), Observe: func(e Event) { events = append(events, e) }}
			if _, err := s.Pass(t.Context(), t0); err != nil {
				t.Fatal(err)
			}
			c.after(f)
			if _, err := s.Pass(t.Context(), t0.Add(c.wait)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Pass(t.Context(), t0.Add(c.wait+time.Second)); err != nil {
				t.Fatal(err)
			}
			if len(events) != 2 || !events[0].Started || events[1].Result != c.result {
				t.Fatalf("events %+v, want started then %s", events, c.result)
			}
		})
	}
}

// TestReadAsksTasksOnlyWhenNeeded: without joined nodes the leader reads no tasks.
func TestReadAsksTasksOnlyWhenNeeded(t *testing.T) {
	f := &fakeSwarm{nodes: three(), services: []swarm.Service{service("spread", 6, swarm.LabelRebalance+"=true")}}
	if _, _, err := Read(t.Context(), f, t0, opts); err != nil || len(f.reads) > 0 {
		t.Fatalf("Read: %v, task reads %v; want none", err, f.reads)
	}
	f.nodes = append(f.nodes, node("d", cooldown))
	f.tasks = map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:2", "c:2")}
	_, p, err := Read(t.Context(), f, t0, opts)
	if err != nil || f.reads["tasks spread"] != 1 || len(p.Rebalances) != 1 {
		t.Fatalf("Read: %v, task reads %v, plan %q", err, f.reads, p.Lines(t0))
	}
}
