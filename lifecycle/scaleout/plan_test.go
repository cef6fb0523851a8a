package scaleout

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// t0 is the tests' "now"; nodes and services are created relative to it.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const cooldown = time.Minute

var opts = Options{Cooldown: cooldown, ResizeInterval: 30 * time.Second}

// node makes a ready, active worker that joined ago before t0, with labels "k=v".
func node(id string, ago time.Duration, labels ...string) swarm.Node {
	n := swarm.Node{ID: id, Hostname: id, Role: swarm.RoleWorker, Availability: "active", State: "ready",
		CreatedAt: t0.Add(-ago), Labels: map[string]string{}, EngineLabels: map[string]string{}, OS: "linux", Arch: "x86_64"}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		n.Labels[k] = v
	}
	return n
}

// with changes a copy of n.
func with(n swarm.Node, f func(*swarm.Node)) swarm.Node {
	n.Labels = maps.Clone(n.Labels)
	f(&n)
	return n
}

func leavingNode(n swarm.Node) swarm.Node {
	return with(n, func(n *swarm.Node) { n.Labels[swarm.LabelLeaving] = t0.Format(time.RFC3339) })
}

// service makes a replicated service created a day before t0 with labels "k=v".
func service(id string, replicas uint64, labels ...string) swarm.Service {
	s := swarm.Service{ID: id, Name: id, Version: 10, Replicated: true, Replicas: replicas, Labels: map[string]string{},
		Update: swarm.UpdateConfig{Parallelism: 2, Order: "stop-first"}, UpdateState: "completed", CreatedAt: t0.Add(-24 * time.Hour)}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		s.Labels[k] = v
	}
	return s
}

func svcWith(s swarm.Service, f func(*swarm.Service)) swarm.Service {
	s.Labels = maps.Clone(s.Labels)
	f(&s)
	return s
}

// tasks places a service's running tasks: "n1:2", "n2:1", "-:1" (unassigned).
func tasks(svc string, placed ...string) []swarm.Task {
	var out []swarm.Task
	for _, p := range placed {
		id, n, _ := strings.Cut(p, ":")
		count, err := strconv.Atoi(n)
		if err != nil {
			panic(fmt.Sprintf("tasks %q: %v", p, err))
		}
		if id == "-" {
			id = ""
		}
		for range count {
			out = append(out, swarm.Task{ID: fmt.Sprintf("t%d", len(out)), ServiceID: svc, NodeID: id, DesiredState: "running", State: "running"})
		}
	}
	return out
}

var old = 48 * time.Hour // joined long before the services

func unix(d time.Duration) string { return fmt.Sprint(t0.Add(d).Unix()) }

// three are the three nodes every case starts from.
func three() []swarm.Node {
	return []swarm.Node{node("a", old), node("b", old), node("c", old)}
}

// summary is a plan in a few comparable words.
func summary(p Plan) []string {
	var out []string
	for _, r := range p.Resizes {
		out = append(out, fmt.Sprintf("resize %s %d->%d", r.Service.ID, r.From, r.To))
	}
	for _, r := range p.Rebalances {
		out = append(out, fmt.Sprintf("rebalance %s onto %s", r.Service.ID, strings.Join(r.Joined, ",")))
	}
	for _, w := range p.Waiting {
		b, _, _ := strings.Cut(w.Because, ":")
		out = append(out, fmt.Sprintf("wait %s %s: %s", w.Kind, w.Service, b))
	}
	for _, id := range p.Count {
		out = append(out, "count "+id)
	}
	for _, id := range p.Release {
		out = append(out, "release "+id)
	}
	for _, pr := range p.Problems {
		svc, _, _ := strings.Cut(strings.TrimPrefix(pr, "service "), ":")
		out = append(out, "problem "+svc)
	}
	for _, id := range p.NeedTasks {
		out = append(out, "need tasks "+id)
	}
	return out
}

// counted labels every node as counted (what the leader did on an earlier pass).
func counted(nodes ...swarm.Node) []swarm.Node {
	out := make([]swarm.Node, len(nodes))
	for i, n := range nodes {
		out[i] = with(n, func(n *swarm.Node) { n.Labels[swarm.LabelCounted] = "true" })
	}
	return out
}

func TestComputeResize(t *testing.T) {
	per2 := service("web", 6, swarm.LabelReplicasPerNode+"=2")
	joined := func(ago time.Duration) []swarm.Node {
		return counted(append(three(), node("d", ago), node("e", ago))...)
	}
	cases := []struct {
		name     string
		nodes    []swarm.Node
		services []swarm.Service
		want     []string
	}{
		{"at its target: nothing but the counted labels", three(), []swarm.Service{per2},
			[]string{"count a", "count b", "count c"}},
		{"unlabelled services are never touched", joined(2 * cooldown), []swarm.Service{service("plain", 1)}, nil},
		{"two joined a cooldown ago: 6 -> 10", joined(cooldown), []swarm.Service{per2}, []string{"resize web 6->10"}},
		{"two joined within the cooldown: wait", joined(cooldown / 2), []swarm.Service{per2}, []string{"wait resize web: cooldown"}},
		{"a node that joined but is not ready yet counts", counted(append(three(), with(node("d", cooldown), func(n *swarm.Node) { n.State = "unknown" }))...),
			[]swarm.Service{per2}, []string{"resize web 6->8"}},
		{"a down node still counts", counted(append(three()[:2], with(node("c", old), func(n *swarm.Node) { n.State = "down" }))...),
			[]swarm.Service{per2}, nil},
		{"a drained node does not count", counted(append(three()[:2], with(node("c", old), func(n *swarm.Node) { n.Availability = "drain" }))...),
			[]swarm.Service{per2}, []string{"resize web 6->4"}},
		{"a leaving node: shrink at once, then release it", append(counted(three()[:2]...), counted(leavingNode(node("c", old)))...),
			[]swarm.Service{per2}, []string{"resize web 6->4", "release c"}},
		{"a leaving node, rate-limited shrink: not released",
			append(counted(three()[:2]...), counted(leavingNode(node("c", old)))...),
			[]swarm.Service{svcWith(per2, func(s *swarm.Service) { s.Labels[swarm.LabelResized] = unix(-10 * time.Second) })},
			[]string{"wait resize web: rate limit"}},
		{"a leaving node, the shrink done: released", append(counted(three()[:2]...), counted(leavingNode(node("c", old)))...),
			[]swarm.Service{svcWith(per2, func(s *swarm.Service) { s.Replicas = 4; s.Labels[swarm.LabelResized] = unix(-10 * time.Second) })},
			[]string{"release c"}},
		{"never below the minimum", append(counted(three()[:1]...), counted(leavingNode(node("b", old)), leavingNode(node("c", old)))...),
			[]swarm.Service{svcWith(per2, func(s *swarm.Service) { s.Labels[swarm.LabelReplicasMin] = "5" })},
			[]string{"resize web 6->5", "release b", "release c"}},
		{"never above the maximum", joined(2 * cooldown),
			[]swarm.Service{svcWith(per2, func(s *swarm.Service) { s.Labels[swarm.LabelReplicasMax] = "8" })}, []string{"resize web 6->8"}},
		{"growth waits for the rate limit too", joined(2 * cooldown),
			[]swarm.Service{svcWith(per2, func(s *swarm.Service) { s.Labels[swarm.LabelResized] = unix(-20 * time.Second) })},
			[]string{"wait resize web: rate limit"}},
		{"constraints: only workers labelled az=a count",
			counted(node("a", old, "az=a"), node("b", old, "az=b"), with(node("m", old, "az=a"), func(n *swarm.Node) { n.Role = swarm.RoleManager }), node("d", 2*cooldown, "az=a")),
			[]swarm.Service{svcWith(per2, func(s *swarm.Service) {
				s.Replicas = 2
				s.Constraints = []string{"node.role == worker", "node.labels.az==A"}
			})}, []string{"resize web 2->4"}},
		{"platforms: an arm64 image does not count x86_64 nodes",
			counted(append(three(), with(node("d", 2*cooldown), func(n *swarm.Node) { n.Arch = "aarch64" }))...),
			[]swarm.Service{svcWith(per2, func(s *swarm.Service) { s.Replicas = 1; s.Platforms = []string{"linux/arm64"} })},
			[]string{"resize web 1->2"}},
		{"labels not of their shape: left alone, said why", three(), []swarm.Service{
			service("x", 1, swarm.LabelReplicasPerNode+"=two"),
			service("y", 1, swarm.LabelReplicasPerNode+"=0"),
			service("z", 1, swarm.LabelReplicasPerNode+"=1", swarm.LabelReplicasMin+"=5", swarm.LabelReplicasMax+"=3"),
			service("w", 1, swarm.LabelReplicasMin+"=5"),
		}, []string{"problem w", "problem x", "problem y", "problem z"}},
		{"a global service: left alone", three(), []swarm.Service{svcWith(per2, func(s *swarm.Service) { s.Replicated = false })},
			[]string{"problem web"}},
		{"a constraint Docker would refuse: left alone", three(), []swarm.Service{svcWith(per2, func(s *swarm.Service) { s.Constraints = []string{"node.labels.az=a"} })},
			[]string{"problem web"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Compute(Snapshot{Now: t0, Nodes: c.nodes, Services: c.services}, opts)
			if got := summary(p); !slices.Equal(got, c.want) {
				t.Errorf("plan %q, want %q\n%s", got, c.want, strings.Join(p.Lines(t0), "\n"))
			}
		})
	}
}

func TestComputeRebalance(t *testing.T) {
	spread := service("spread", 6, swarm.LabelRebalance+"=true")
	five := func(ago time.Duration) []swarm.Node { return append(three(), node("d", ago), node("e", ago)) }
	on3 := map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:2", "c:2")}
	cases := []struct {
		name     string
		nodes    []swarm.Node
		services []swarm.Service
		tasks    map[string][]swarm.Task
		want     []string
	}{
		{"two joined a cooldown ago: rebalance onto both", five(cooldown), []swarm.Service{spread}, on3,
			[]string{"rebalance spread onto d,e"}},
		{"tasks not read yet: the plan asks for them", five(cooldown), []swarm.Service{spread}, nil, []string{"need tasks spread"}},
		{"nobody joined: no tasks needed", three(), []swarm.Service{spread}, nil, nil},
		{"joined within the cooldown: wait", five(cooldown / 3), []swarm.Service{spread}, on3, []string{"wait rebalance spread: cooldown"}},
		{"joins a cooldown apart: the last burst counts", append(three(), node("d", 10*cooldown), node("e", cooldown/2)),
			[]swarm.Service{spread}, map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:2", "c:1", "d:1")},
			[]string{"wait rebalance spread: cooldown"}},
		{"a steady trickle of joins waits at most 5 cooldowns", append(three(), node("d", 324*time.Second), node("e", 270*time.Second),
			node("f", 216*time.Second), node("g", 162*time.Second), node("h", 108*time.Second), node("i", 54*time.Second)),
			[]swarm.Service{service("spread", 18, swarm.LabelRebalance+"=true")},
			map[string][]swarm.Task{"spread": tasks("spread", "a:6", "b:6", "c:6")},
			[]string{"rebalance spread onto d,e,f,g,h,i"}},
		{"already spread", five(cooldown), []swarm.Service{spread}, map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:1", "c:1", "d:1", "e:1")}, nil},
		{"seven nodes: 2,2,2,0,0,0,0 is not spread", append(five(cooldown), node("f", cooldown), node("g", cooldown)),
			[]swarm.Service{spread}, on3, []string{"rebalance spread onto d,e,f,g"}},
		{"seven nodes: 1,1,1,1,1,1,0 is", append(five(cooldown), node("f", cooldown), node("g", cooldown)),
			[]swarm.Service{spread}, map[string][]swarm.Task{"spread": tasks("spread", "a:1", "b:1", "c:1", "d:1", "e:1", "f:1")}, nil},
		{"nodes that joined before the last rebalance are placed", five(cooldown),
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.Labels[swarm.LabelRebalanced] = unix(-cooldown / 2) })}, on3, nil},
		{"a service created after the joins is placed", five(cooldown),
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.CreatedAt = t0.Add(-cooldown / 2) })}, on3, nil},
		{"never while a drain is in progress", append(five(cooldown), leavingNode(node("f", old))),
			[]swarm.Service{spread}, on3, []string{"wait rebalance spread: drain in progress"}},
		{"a leaving node that is down is no drain in progress", append(five(cooldown), with(leavingNode(node("f", old)), func(n *swarm.Node) { n.State = "down" })),
			[]swarm.Service{spread}, on3, []string{"rebalance spread onto d,e"}},
		{"never while another labelled service updates", five(cooldown),
			[]swarm.Service{spread, svcWith(service("other", 2, swarm.LabelRebalance+"=true"), func(s *swarm.Service) { s.UpdateState = "updating" })},
			map[string][]swarm.Task{"spread": on3["spread"], "other": tasks("other", "a:1", "b:1")},
			[]string{"wait rebalance spread: rebalance or update in progress"}},
		{"an unlabelled service updating does not hold it", five(cooldown),
			[]swarm.Service{spread, svcWith(service("other", 2), func(s *swarm.Service) { s.UpdateState = "updating" })},
			on3, []string{"rebalance spread onto d,e"}},
		{"tasks still being placed: look again later", five(cooldown), []swarm.Service{spread},
			map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:2", "c:1", "-:1")}, nil},
		{"a joined node not ready yet: wait for it", append(five(cooldown), with(node("f", cooldown), func(n *swarm.Node) { n.State = "unknown" })),
			[]swarm.Service{spread}, on3, []string{"wait rebalance spread: node f joined at 2026-12-01T11"}},
		{"joined nodes the constraints exclude do not count", append(three(), node("d", cooldown, "tier=db"), node("e", cooldown, "tier=db")),
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.Constraints = []string{"node.labels.tier!=db"} })}, on3, nil},
		{"spread preference: a new zone gets half", []swarm.Node{node("a", old, "az=1"), node("b", old, "az=1"), node("c", old, "az=1"), node("d", cooldown, "az=2")},
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.Spread = []string{"node.labels.az"} })},
			map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:2", "c:1", "d:1")}, []string{"rebalance spread onto d"}},
		{"spread preference: a new node in a full zone is not under", []swarm.Node{node("a", old, "az=1"), node("b", old, "az=2"), node("c", old, "az=2"), node("d", cooldown, "az=2")},
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.Replicas = 4; s.Spread = []string{"node.labels.az"} })},
			map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:1", "c:1")}, nil},
		{"spread preference: a zone over its half", []swarm.Node{node("a", old, "az=1"), node("b", old, "az=2"), node("c", old, "az=2"), node("d", cooldown, "az=2")},
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.Spread = []string{"node.labels.az"} })},
			map[string][]swarm.Task{"spread": tasks("spread", "a:3", "b:2", "c:1")}, []string{"rebalance spread onto d"}},
		{"max replicas per node: a full node is not over", five(cooldown),
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.MaxPerNode = 2 })}, on3, []string{"rebalance spread onto d,e"}},
		{"update parallelism 0, stop-first: refused", five(cooldown),
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.Update.Parallelism = 0 })}, on3, []string{"problem spread"}},
		{"update parallelism 0, start-first: fine", five(cooldown),
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.Update.Parallelism, s.Update.Order = 0, "start-first" })}, on3,
			[]string{"rebalance spread onto d,e"}},
		{"its last update paused: left alone", five(cooldown),
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.UpdateState = "paused" })}, on3, []string{"problem spread"}},
		{"rebalance=false", five(cooldown), []swarm.Service{service("spread", 6, swarm.LabelRebalance+"=false")}, on3, nil},
		{"both labels: growth first, no rebalance while resizing", counted(five(cooldown)...),
			[]swarm.Service{svcWith(spread, func(s *swarm.Service) { s.Labels[swarm.LabelReplicasPerNode] = "2" })}, on3,
			[]string{"resize spread 6->10"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Compute(Snapshot{Now: t0, Nodes: c.nodes, Services: c.services, Tasks: c.tasks}, opts)
			if got := summary(p); !slices.Equal(got, c.want) {
				t.Errorf("plan %q, want %q\n%s", got, c.want, strings.Join(p.Lines(t0), "\n"))
			}
		})
	}
}

// TestComputeCooldownGroupsJoins: four nodes joining a few seconds apart give one rebalance,
// a cooldown after the last of them, and nothing before.
func TestComputeCooldownGroupsJoins(t *testing.T) {
	spread := service("spread", 6, swarm.LabelRebalance+"=true")
	joins := []time.Duration{0, 4 * time.Second, 9 * time.Second, 15 * time.Second}
	start := t0.Add(-time.Hour)
	nodes := three()
	for i, j := range joins {
		n := node(fmt.Sprintf("n%d", i), 0)
		n.CreatedAt = start.Add(j)
		nodes = append(nodes, n)
	}
	snapTasks := map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:2", "c:2")}
	first := time.Time{}
	for now := start; now.Before(start.Add(3 * cooldown)); now = now.Add(time.Second) {
		var present []swarm.Node
		for _, n := range nodes {
			if !n.CreatedAt.After(now) {
				present = append(present, n)
			}
		}
		p := Compute(Snapshot{Now: now, Nodes: present, Services: []swarm.Service{spread}, Tasks: snapTasks}, opts)
		if len(p.Rebalances) > 0 {
			first = now
			break
		}
	}
	if want := start.Add(joins[len(joins)-1] + cooldown); !first.Equal(want) {
		t.Fatalf("first rebalance at %s, want %s (a cooldown after the last join)", first.Sub(start), want.Sub(start))
	}
}

func TestShares(t *testing.T) {
	nodes := []swarm.Node{node("a", 0, "az=1"), node("b", 0, "az=1"), node("c", 0, "az=2"), node("d", 0)}
	cases := []struct {
		name   string
		spread []string
		n, max int
		lo, hi map[string]int
	}{
		{"flat", nil, 6, 0, map[string]int{"a": 1, "b": 1, "c": 1, "d": 1}, map[string]int{"a": 2, "b": 2, "c": 2, "d": 2}},
		{"flat, exact", nil, 8, 0, map[string]int{"a": 2, "b": 2, "c": 2, "d": 2}, map[string]int{"a": 2, "b": 2, "c": 2, "d": 2}},
		// three zones ("1", "2" and the unlabelled ""): 6 -> 2 each, zone 1 splits its 2.
		{"by az", []string{"node.labels.az"}, 6, 0, map[string]int{"a": 1, "b": 1, "c": 2, "d": 2}, map[string]int{"a": 1, "b": 1, "c": 2, "d": 2}},
		{"unknown descriptor ignored", []string{"node.hostname", "node.labels.az"}, 6, 0, map[string]int{"a": 1, "b": 1, "c": 2, "d": 2}, map[string]int{"a": 1, "b": 1, "c": 2, "d": 2}},
		{"max per node", nil, 12, 2, map[string]int{"a": 2, "b": 2, "c": 2, "d": 2}, map[string]int{"a": 2, "b": 2, "c": 2, "d": 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lo, hi := shares(nodes, c.spread, c.n, c.max)
			if !maps.Equal(lo, c.lo) || !maps.Equal(hi, c.hi) {
				t.Errorf("shares = %v %v, want %v %v", lo, hi, c.lo, c.hi)
			}
		})
	}
}

func TestSettled(t *testing.T) {
	o := Options{Cooldown: 10 * time.Second}
	at := func(s ...int) []time.Time {
		var out []time.Time
		for _, x := range s {
			out = append(out, t0.Add(time.Duration(x)*time.Second))
		}
		return out
	}
	cases := []struct {
		name  string
		joins []time.Time
		want  time.Duration // after t0
	}{
		{"one join", at(0), 10 * time.Second},
		{"a burst", at(0, 3, 8), 18 * time.Second},
		{"a trickle: capped at 5 cooldowns from its start", at(0, 9, 18, 27, 36, 45), 50 * time.Second},
		{"an old join does not start the burst", at(-100, 0, 5), 15 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := settled(c.joins, o.withDefaults()); !got.Equal(t0.Add(c.want)) {
				t.Errorf("settled = %s, want %s", got.Sub(t0), c.want)
			}
		})
	}
	if !settled(nil, o).IsZero() {
		t.Error("no joins: want zero")
	}
}

// TestPlanLines: the dry run says what happens now, what waits until when and why.
func TestPlanLines(t *testing.T) {
	nodes := counted(append(three(), node("d", cooldown/2), node("e", cooldown/2))...)
	p := Compute(Snapshot{Now: t0, Nodes: nodes, Services: []swarm.Service{
		service("web", 6, swarm.LabelReplicasPerNode+"=2"),
		service("spread", 6, swarm.LabelRebalance+"=true"),
		service("bad", 6, swarm.LabelRebalance+"=yes"),
	}, Tasks: map[string][]swarm.Task{"spread": tasks("spread", "a:2", "b:2", "c:2")}}, opts)
	got := strings.Join(p.Lines(t0), "\n")
	for _, want := range []string{
		"resize web at 2026-12-01T12:00:30Z (in 30s): 6 -> 10 replicas (2 per node x 5 nodes); waiting for cooldown",
		"rebalance spread at 2026-12-01T12:00:30Z (in 30s): spread 6 tasks over 5 nodes: a:2 b:2 c:2 d:0 e:0 now, at least 2 to move (update parallelism 2, stop-first); waiting for cooldown",
		`service bad: label swarm-agent.rebalance="yes": must be true or false: left alone`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lines lack %q:\n%s", want, got)
		}
	}
}
