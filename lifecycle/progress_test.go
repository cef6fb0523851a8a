package lifecycle

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// markSeen is a Swarm and a Hook that note whether the node was already marked leaving when
// the drain first looked up the hook and first listed the nodes (the quorum check).
type markSeen struct {
	*fakeCluster
	hook *fakeHook
	node string

	mu                  sync.Mutex
	atLookup, atListing *bool
}

func (m *markSeen) marked() bool {
	n, _ := m.fakeCluster.node(m.node)
	return n.Labels[swarm.LabelLeaving] != ""
}

func (m *markSeen) Action(ctx context.Context, id string) (HookAction, error) {
	m.mu.Lock()
	if m.atLookup == nil {
		v := m.marked()
		m.atLookup = &v
	}
	m.mu.Unlock()
	return m.hook.Action(ctx, id)
}

func (m *markSeen) Heartbeat(ctx context.Context, asg, hook, id string) error {
	return m.hook.Heartbeat(ctx, asg, hook, id)
}

func (m *markSeen) Complete(ctx context.Context, asg, hook, id, result string) error {
	return m.hook.Complete(ctx, asg, hook, id, result)
}

func (m *markSeen) Nodes(ctx context.Context) ([]swarm.Node, error) {
	m.mu.Lock()
	if m.atListing == nil {
		v := m.marked()
		m.atListing = &v
	}
	m.mu.Unlock()
	return m.fakeCluster.Nodes(ctx)
}

// TestDrainMarksFirst: the node is marked leaving before the hook lookup and the quorum check
// (with AWS retries these can outlast the queue's grace, and the leader would drain the node
// at the same time), with its first progress.
func TestDrainMarksFirst(t *testing.T) {
	for _, node := range []string{"w1", "m2"} {
		t.Run(node, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.scaleIn(node, 5*time.Minute)
				seen := &markSeen{fakeCluster: w.c, hook: w.hook, node: node}
				d := &Drainer{Swarm: seen, Local: fakeLocal{c: w.c, id: node}, Hook: seen, Registrar: w.reg, Log: testLogger(t)}
				o := run(t.Context(), d, notice(node))
				if o.err != nil {
					t.Fatalf("Drain: %v", o.err)
				}
				if seen.atLookup == nil || !*seen.atLookup {
					t.Errorf("the hook was looked up before the node was marked leaving")
				}
				if node[0] == 'm' && (seen.atListing == nil || !*seen.atListing) {
					t.Errorf("the quorum was checked before the node was marked leaving")
				}
				if first := w.j.all()[0]; !strings.Contains(first, swarm.LabelLeaving+":") || !strings.Contains(first, swarm.LabelProgress+":") {
					t.Errorf("first change %q, want the leaving mark with its progress", first)
				}
			})
		})
	}
}

// TestDrainProgress: while a drain runs its node's progress label moves at least every
// ProgressInterval; it stops with the drain.
func TestDrainProgress(t *testing.T) {
	for _, remote := range []bool{false, true} {
		name := "own agent"
		if remote {
			name = "on the node's behalf"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.c.startDelay = 3 * time.Minute
				w.scaleIn("w1", 5*time.Minute)
				d := w.drainer(t, "w1", DrainOptions{Remote: remote})
				if remote {
					d.Local = RemoteLocal{Swarm: w.c, InstanceID: "i-w1"}
				}
				var (
					mu      sync.Mutex
					longest time.Duration
					last    string
					changed time.Time
				)
				stop := make(chan struct{})
				sampled := make(chan struct{})
				go func() {
					defer close(sampled)
					for {
						select {
						case <-stop:
							return
						case <-time.After(time.Second):
						}
						n, ok := w.c.node("w1")
						if !ok {
							continue
						}
						mu.Lock()
						if v := n.Labels[swarm.LabelProgress]; v != last {
							if last != "" {
								longest = max(longest, time.Since(changed))
							}
							last, changed = v, time.Now()
						}
						mu.Unlock()
					}
				}()
				o := run(t.Context(), d, notice("w1"))
				close(stop)
				<-sampled
				if o.err != nil {
					t.Fatalf("Drain: %v", o.err)
				}
				if last == "" || longest > ProgressInterval+time.Second {
					t.Errorf("progress %q, longest without change %s; want a change at least every %s", last, longest, ProgressInterval)
				}
				calls := w.c.count("SetNodeLabels")
				time.Sleep(time.Minute)
				if after := w.c.count("SetNodeLabels"); after != calls {
					t.Errorf("%d label writes after the drain ended", after-calls)
				}
			})
		})
	}
}

// TestNoticeHandlerTakesOver: queue mode takes over from an agent that marked its node
// leaving and died: once its progress is stale (node up), or once the node left the swarm
// and the action still waits; never while the drain makes progress.
func TestNoticeHandlerTakesOver(t *testing.T) {
	tests := []struct {
		name     string
		op       string // the own drain crashes on this call
		skip     int
		mode     faultMode
		moveIn   time.Duration
		want     []string // events
		maxAfter time.Duration
	}{
		{name: "killed while the tasks move", op: "Tasks", skip: 4, mode: crashBefore, moveIn: 3 * time.Minute,
			want: []string{EventTakeover + " " + ReasonStale}},
		{name: "killed after leaving", op: "Leave", mode: crashAfter, moveIn: 20 * time.Second,
			want: []string{EventTakeover + " " + ReasonStale}},
		{name: "alive, a long drain", moveIn: 3 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.c.startDelay = tt.moveIn
				nw := newNoticeWorld(t, w, "w1")
				if tt.op != "" {
					w.c.inject(tt.op, tt.mode, tt.skip)
				}
				own := make(chan outcome, 1)
				go func() { own <- run(t.Context(), nw.drainer(t, "w1", DrainOptions{}), notice("w1")) }()
				time.Sleep(time.Second) // the agent marks its node before the notice arrives

				if err := nw.handle(t, notice("w1")); err != nil {
					t.Fatalf("Handle: %v", err)
				}
				o := <-own
				if o.finished == (tt.op != "") {
					t.Fatalf("own drain finished %t (%v), want %t", o.finished, o.err, tt.op == "")
				}
				if c, _, expired := nw.hook.status(); !slices.Equal(c, []string{ResultContinue}) || expired {
					t.Errorf("completions %v (expired %t), want exactly one CONTINUE", c, expired)
				}
				if e := nw.ev.all(); !slices.Equal(e, tt.want) {
					t.Errorf("events %q, want %q", e, tt.want)
				}
				if nw.drains != len(tt.want) {
					t.Errorf("%d drains on its behalf, want %d", nw.drains, len(tt.want))
				}
				if got := nw.c.running("web", "w1"); got != 6 {
					t.Errorf("web running elsewhere = %d, want 6", got)
				}
			})
		})
	}
}

// TestReapTakesOver: without a queue the leader's reaper takes over the drain of a live node
// whose agent died after marking it leaving, once its progress is stale and Auto Scaling
// holds its instance; never while the drain progresses, never for an instance in service,
// and not before EC2 confirms the node's instance.
func TestReapTakesOver(t *testing.T) {
	tests := []struct {
		name      string
		crash     bool // the own drain dies while the tasks move
		inService bool // the instance is not (or no longer) held by the hook
		lie       bool // EC2 knows the instance elsewhere
		want      []string
	}{
		{name: "agent died", crash: true, want: []string{EventTakeover + " " + ReasonStale}},
		{name: "agent alive"},
		{name: "instance in service", crash: true, inService: true},
		{name: "EC2 does not confirm", crash: true, lie: true, want: []string{EventRefused + " " + ReasonIdentity}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.c.startDelay = 5 * time.Minute
				w.scaleIn("w1", time.Hour)
				if tt.crash {
					w.c.inject("Tasks", crashBefore, 4)
				}
				own := make(chan outcome, 1)
				go func() { own <- run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1")) }()
				if tt.inService {
					w.hook.mu.Lock()
					w.hook.state = "InService"
					w.hook.mu.Unlock()
				}
				ec2 := newFakeEC2(w)
				if tt.lie {
					ec2.addrs["i-w1"] = []string{"10.9.9.9"}
				}
				ev := &events{}
				var took []Notice
				var remote sync.WaitGroup
				defer remote.Wait()
				// as the leader does: a drain on the node's behalf in the background
				takeOver := func(ctx context.Context, n Notice) {
					took = append(took, n)
					remote.Go(func() {
						d := &Drainer{Swarm: w.c, Local: RemoteLocal{Swarm: w.c, InstanceID: n.InstanceID}, Hook: w.hook,
							Log: testLogger(t), Options: DrainOptions{Remote: true, InstanceID: n.InstanceID}}
						if _, err := d.Drain(ctx, n); err != nil {
							t.Errorf("drain on its behalf: %v", err)
						}
					})
				}
				r := &Reaper{Swarm: w.c, Hook: w.hook, Instances: ec2, Grace: 5 * time.Minute, Log: testLogger(t), Observe: ev.observe,
					TakeOver: takeOver}
				var tookAt time.Duration
				start := time.Now()
				for range 12 { // 3 minutes of passes, 15 s apart
					time.Sleep(15 * time.Second)
					if _, err := r.Reap(t.Context(), time.Now()); err != nil {
						t.Errorf("Reap: %v", err)
					}
					if len(took) > 0 && tookAt == 0 {
						tookAt = time.Since(start)
					}
				}
				if e := ev.all(); !slices.Equal(e, tt.want) {
					t.Errorf("events %q, want %q", e, tt.want)
				}
				wantTakeovers := 0
				if len(tt.want) > 0 && tt.want[0] == EventTakeover+" "+ReasonStale {
					wantTakeovers = 1
				}
				if len(took) != wantTakeovers {
					t.Fatalf("took over %d times (%+v), want %d", len(took), took, wantTakeovers)
				}
				if wantTakeovers == 1 {
					if n := took[0]; n.InstanceID != "i-w1" || n.ASG != "asg-1" || n.Hook != "drain" {
						t.Errorf("took over with notice %+v", n)
					}
					// the agent died about 8 s in (its 5th task listing); the watch needs to see the
					// value unchanged for ProgressStale, on passes 15 s apart
					if tookAt > 8*time.Second+ProgressStale+2*15*time.Second {
						t.Errorf("took over %s in, want within ProgressStale and two passes of the agent's death", tookAt)
					}
				}
				if !tt.crash {
					if o := <-own; !o.finished || o.err != nil {
						t.Errorf("own drain: finished %t, %v", o.finished, o.err)
					}
				} else {
					<-own
				}
				remote.Wait()
				if c, _, _ := w.hook.status(); wantTakeovers == 1 && !slices.Equal(c, []string{ResultContinue}) {
					t.Errorf("completions %v after the takeover, want one CONTINUE", c)
				}
			})
		})
	}
}
