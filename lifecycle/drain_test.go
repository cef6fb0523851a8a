package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: zerolog.NewTestWriter(t), NoColor: true}).With().Timestamp().Logger()
}

// world is a swarm of managers m1.. (m1 leads) and workers w1.., each labelled with
// instance id "i-<node>", running service web (6 replicas) and global service agent, and
// the Auto Scaling hook of the instance that scales in.
type world struct {
	j    *journal
	c    *fakeCluster
	hook *fakeHook
	reg  *fakeRegistrar
}

func newWorld(managers, workers int) *world {
	j := &journal{}
	c := newFakeCluster(j)
	for i := 1; i <= managers; i++ {
		c.addNode(fmt.Sprintf("m%d", i), swarm.RoleManager, fmt.Sprintf("i-m%d", i))
	}
	for i := 1; i <= workers; i++ {
		c.addNode(fmt.Sprintf("w%d", i), swarm.RoleWorker, fmt.Sprintf("i-w%d", i))
	}
	c.addService("web", 6)
	c.addService("agent", 0)
	return &world{j: j, c: c, reg: &fakeRegistrar{j: j}}
}

// scaleIn puts node's instance in Terminating:Wait on a hook with heartbeatTimeout.
func (w *world) scaleIn(node string, heartbeatTimeout time.Duration) {
	w.hook = newFakeHook(w.j, "i-"+node, heartbeatTimeout)
	w.hook.scaleIn()
}

func (w *world) drainer(t *testing.T, node string, opts DrainOptions) *Drainer {
	d := &Drainer{Swarm: w.c, Local: fakeLocal{c: w.c, id: node}, Registrar: w.reg, Log: testLogger(t), Options: opts}
	if w.hook != nil {
		d.Hook = w.hook
	}
	return d
}

func notice(node string) Notice {
	return Notice{Kind: "scale-in", InstanceID: "i-" + node, ASG: "asg-1", Hook: "drain", Source: "imds"}
}

type outcome struct {
	rep      DrainReport
	err      error
	finished bool // false: the drain "crashed" (its goroutine ended inside a fake)
}

// run runs one Drain in its own goroutine, as an agent process would, so that an injected
// crash ends it without ending the test.
func run(ctx context.Context, d *Drainer, n Notice) outcome {
	var o outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.rep, o.err = d.Drain(ctx, n)
		o.finished = true
	}()
	<-done
	return o
}

// checkGone asserts the end state of a finished drain of node: removed from the swarm,
// web's six replicas running elsewhere, exactly one completion with want, and the action
// never expired.
func (w *world) checkGone(t *testing.T, node, want string) {
	t.Helper()
	if n, ok := w.c.node(node); ok {
		t.Errorf("node %s still in the swarm: %+v", node, n)
	}
	if got := w.c.running("web", node); got != 6 {
		t.Errorf("web tasks running elsewhere = %d, want 6", got)
	}
	completions, _, expired := w.hook.status()
	if !slices.Equal(completions, []string{want}) {
		t.Errorf("completions = %v, want exactly [%s]", completions, want)
	}
	if expired {
		t.Errorf("the lifecycle action expired before it was completed")
	}
}

// inOrder asserts that the journal holds an entry for each prefix, in this order.
func (w *world) inOrder(t *testing.T, prefixes ...string) {
	t.Helper()
	last := -1
	for _, p := range prefixes {
		i := w.j.index(p)
		if i < 0 {
			t.Errorf("no %q in journal %q", p, w.j.all())
			return
		}
		if i < last {
			t.Errorf("%q came before %q in journal %q", p, prefixes[slices.Index(prefixes, p)-1], w.j.all())
		}
		last = i
	}
}

// checkMarkTakenBack asserts what a refused drain of node leaves: it was marked leaving
// first (so the leader knew its agent was at it), the mark was then taken back, and nothing
// else changed.
func (w *world) checkMarkTakenBack(t *testing.T, node string) {
	t.Helper()
	got := slices.DeleteFunc(w.j.all(), func(e string) bool { return strings.HasPrefix(e, "turn "+node) })
	if len(got) != 2 || !strings.HasPrefix(got[0], "labels "+node) || !strings.Contains(got[0], swarm.LabelLeaving+":2") ||
		got[1] != "labels "+node+" map["+swarm.LabelLeaving+": "+swarm.LabelProgress+": "+swarm.LabelLeavingRole+": "+swarm.LabelTurn+":]" {
		t.Errorf("refused drain: journal %q, want the mark (and its turn) and its taking back only", w.j.all())
	}
	if n, _ := w.c.node(node); n.Labels[swarm.LabelLeaving] != "" || n.Labels[swarm.LabelProgress] != "" {
		t.Errorf("refused drain left labels %v", n.Labels)
	}
}

func TestDrainWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(3, 3)
		w.scaleIn("w1", 5*time.Minute)
		before := w.c.onNode("w1")
		atComplete := -1
		w.hook.onComplete = func(string) { atComplete = w.c.running("web", "w1") }
		start := time.Now()

		o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1"))

		if o.err != nil {
			t.Fatalf("Drain: %v", o.err)
		}
		w.checkGone(t, "w1", ResultContinue)
		if atComplete != 6 {
			t.Errorf("web tasks running elsewhere when the action was completed = %d, want 6", atComplete)
		}
		w.inOrder(t, "labels w1", "availability w1 drain", "leave w1 force=false", "remove w1", "complete i-w1 CONTINUE")
		if n := w.j.countPrefix("deregister"); n != 0 {
			t.Errorf("a worker was deregistered %d times, want 0", n)
		}
		if n := w.j.countPrefix("role"); n != 0 {
			t.Errorf("roles changed %d times draining a worker, want 0", n)
		}
		if o.rep.TasksMoved != before || before != 2 {
			t.Errorf("TasksMoved = %d, want the %d tasks running on w1 (1 web + 1 agent)", o.rep.TasksMoved, before)
		}
		if o.rep.Result != ResultContinue || o.rep.AlreadyCompleted || o.rep.TimedOut || o.rep.NodeID != "w1" || o.rep.Role != swarm.RoleWorker {
			t.Errorf("report = %+v", o.rep)
		}
		// the replacements start 20 s after the drain: the wait is about that long
		if o.rep.TaskWait < 20*time.Second || o.rep.TaskWait > 25*time.Second {
			t.Errorf("TaskWait = %s, want about 20s", o.rep.TaskWait)
		}
		if o.rep.Took != time.Since(start) {
			t.Errorf("Took = %s, want %s", o.rep.Took, time.Since(start))
		}
		for _, step := range []string{StepHook, StepSelf, StepMark, StepDrain, StepTasks, StepLeave, StepRemove, StepComplete} {
			if s, ok := o.rep.Step(step); !ok || s.Outcome != OutcomeDone {
				t.Errorf("step %s = %+v (%t), want done", step, s, ok)
			}
		}
		if _, ok := o.rep.Step(StepDemote); ok {
			t.Errorf("a worker's drain has a demote step")
		}
	})
}

func TestDrainManager(t *testing.T) {
	for _, node := range []string{"m1", "m2"} { // m1 leads
		t.Run(node, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.scaleIn(node, 5*time.Minute)
				var leaderAtComplete string
				w.hook.onComplete = func(string) { leaderAtComplete = w.c.leader() }

				o := run(t.Context(), w.drainer(t, node, DrainOptions{Addr: "10.1.2.3"}), notice(node))

				if o.err != nil {
					t.Fatalf("Drain: %v", o.err)
				}
				w.checkGone(t, node, ResultContinue)
				if got := w.c.managers(); len(got) != 2 || slices.Contains(got, node) {
					t.Errorf("managers = %v, want the two others", got)
				}
				if leaderAtComplete == "" || leaderAtComplete == node {
					t.Errorf("leader when completing = %q, want another manager", leaderAtComplete)
				}
				order := []string{"labels " + node, "availability " + node + " drain", "role " + node + " worker"}
				if node == "m1" {
					order = append(order, "leader m2") // the leader steps aside before leaving
				}
				order = append(order, "deregister i-"+node+" 10.1.2.3", "leave "+node+" force=false", "remove "+node, "complete i-"+node)
				w.inOrder(t, order...)
				if n := w.j.countPrefix("deregister"); n != 1 {
					t.Errorf("deregistered %d times, want 1", n)
				}
				if o.rep.Role != swarm.RoleManager {
					t.Errorf("report role = %q, want manager", o.rep.Role)
				}
				if s, _ := o.rep.Step(StepQuorum); s.Outcome != OutcomeDone {
					t.Errorf("quorum step = %+v", s)
				}
			})
		})
	}
}

func TestDrainHeartbeats(t *testing.T) {
	tests := []struct {
		name             string
		heartbeatTimeout time.Duration
		override         time.Duration
		moveIn           time.Duration // how long the tasks take to move
		minBeats         int
		maxBeats         int
	}{
		// 30 s timeout: a beat every 10 s over a 3-minute drain, or the action expires.
		{name: "drain outlasts the interval", heartbeatTimeout: 30 * time.Second, moveIn: 3 * time.Minute, minBeats: 18, maxBeats: 22},
		{name: "override", heartbeatTimeout: 30 * time.Second, override: 5 * time.Second, moveIn: time.Minute, minBeats: 12, maxBeats: 16},
		// only the first beat: the drain is over long before the 20-minute interval
		{name: "short drain", heartbeatTimeout: time.Hour, moveIn: 20 * time.Second, minBeats: 1, maxBeats: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.c.startDelay = tt.moveIn
				w.scaleIn("w1", tt.heartbeatTimeout)

				o := run(t.Context(), w.drainer(t, "w1", DrainOptions{HeartbeatOverride: tt.override}), notice("w1"))

				if o.err != nil {
					t.Fatalf("Drain: %v", o.err)
				}
				w.checkGone(t, "w1", ResultContinue)
				_, beats, _ := w.hook.status()
				if o.rep.Heartbeats != beats {
					t.Errorf("report says %d heartbeats, the hook saw %d", o.rep.Heartbeats, beats)
				}
				if beats < tt.minBeats || beats > tt.maxBeats {
					t.Errorf("heartbeats = %d over %s, want %d..%d", beats, o.rep.Took, tt.minBeats, tt.maxBeats)
				}
				// heartbeats stop when the drain ends
				time.Sleep(time.Hour)
				if _, after, _ := w.hook.status(); after != beats {
					t.Errorf("heartbeats went on after the drain: %d, then %d", beats, after)
				}
			})
		})
	}
}

func TestDrainLastManager(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(1, 2)
			w.scaleIn("m1", 5*time.Minute)

			o := run(t.Context(), w.drainer(t, "m1", DrainOptions{}), notice("m1"))

			if !errors.Is(o.err, ErrLastManager) {
				t.Fatalf("Drain error = %v, want ErrLastManager", o.err)
			}
			n, ok := w.c.node("m1")
			if !ok || n.Role != swarm.RoleManager || n.Availability != "active" || !n.Leader || n.Labels[swarm.LabelLeaving] != "" {
				t.Errorf("the last manager changed: %+v (present %t)", n, ok)
			}
			w.checkMarkTakenBack(t, "m1")
			if c, _, _ := w.hook.status(); len(c) != 0 {
				t.Errorf("completions = %v, want none", c)
			}
		})
	})
	t.Run("forced", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(1, 2)
			w.scaleIn("m1", 5*time.Minute)

			o := run(t.Context(), w.drainer(t, "m1", DrainOptions{Force: true}), notice("m1"))

			if o.err != nil {
				t.Fatalf("Drain: %v", o.err)
			}
			w.inOrder(t, "availability m1 drain", "deregister i-m1", "leave m1 force=true", "complete i-m1 CONTINUE")
			if n := w.j.countPrefix("role") + w.j.countPrefix("remove"); n != 0 {
				t.Errorf("the last manager was demoted or removed: %q", w.j.all())
			}
			if s, _ := o.rep.Step(StepRemove); s.Outcome != OutcomeSkipped {
				t.Errorf("remove step = %+v, want skipped", s)
			}
		})
	})
}

func TestDrainQuorum(t *testing.T) {
	t.Run("refused before draining", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(3, 2)
			w.c.kill("m3")
			w.scaleIn("m1", 5*time.Minute)

			o := run(t.Context(), w.drainer(t, "m1", DrainOptions{Force: true}), notice("m1"))

			if !errors.Is(o.err, ErrNoQuorum) {
				t.Fatalf("Drain error = %v, want ErrNoQuorum", o.err)
			}
			w.checkMarkTakenBack(t, "m1")
			if n, _ := w.c.node("m1"); n.Role != swarm.RoleManager || n.Availability != "active" {
				t.Errorf("m1 = %+v, want an active manager", n)
			}
			if c, _, _ := w.hook.status(); len(c) != 0 {
				t.Errorf("completions = %v, want none", c)
			}
			if s, _ := o.rep.Step(StepQuorum); s.Outcome != OutcomeFailed {
				t.Errorf("quorum step = %+v, want failed", s)
			}
		})
	})
	t.Run("waits while a manager is down, goes once it is back", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(3, 2)
			w.c.kill("m3")
			w.scaleIn("m2", 5*time.Minute)
			go func() {
				time.Sleep(3 * time.Minute)
				w.c.revive("m3")
			}()

			o := run(t.Context(), w.drainer(t, "m2", DrainOptions{}), notice("m2"))

			if o.err != nil {
				t.Fatalf("Drain: %v", o.err)
			}
			w.checkGone(t, "m2", ResultContinue)
			if s, _ := o.rep.Step(StepQuorum); s.Outcome != OutcomeDone || s.Took < 3*time.Minute {
				t.Errorf("quorum step %+v, want done after waiting the 3 minutes m3 was down", s)
			}
			if _, beats, expired := w.hook.status(); beats < 2 || expired {
				t.Errorf("%d heartbeats (expired %t) while waiting, want the action kept alive", beats, expired)
			}
		})
	})
	t.Run("lost while the tasks move", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(3, 2)
			w.scaleIn("m2", 5*time.Minute)
			go func() {
				time.Sleep(10 * time.Second)
				w.c.kill("m3")
			}()

			o := run(t.Context(), w.drainer(t, "m2", DrainOptions{}), notice("m2"))

			if !errors.Is(o.err, ErrNoQuorum) {
				t.Fatalf("Drain error = %v, want ErrNoQuorum", o.err)
			}
			if n, _ := w.c.node("m2"); n.Role != swarm.RoleManager {
				t.Errorf("m2 = %+v, want still a manager", n)
			}
			if w.j.countPrefix("role") != 0 || w.j.countPrefix("leave") != 0 {
				t.Errorf("demoted or left without quorum: %q", w.j.all())
			}
			if c, _, _ := w.hook.status(); len(c) != 0 {
				t.Errorf("completions = %v, want none", c)
			}
		})
	})
}

func TestDrainSurvivesCancel(t *testing.T) {
	for _, after := range []time.Duration{0, 5 * time.Second, 22 * time.Second} {
		t.Run(fmt.Sprintf("SIGTERM after %s", after), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.scaleIn("m1", 5*time.Minute)
				ctx, cancel := context.WithCancel(t.Context())
				if after == 0 {
					cancel()
				} else {
					go func() {
						time.Sleep(after)
						cancel()
					}()
				}

				o := run(ctx, w.drainer(t, "m1", DrainOptions{}), notice("m1"))

				if o.err != nil {
					t.Fatalf("Drain: %v", o.err)
				}
				w.checkGone(t, "m1", ResultContinue)
			})
		})
	}
}

func TestDrainTimeout(t *testing.T) {
	tests := []struct {
		onTimeout string
		want      string
		wantErr   error
	}{
		{onTimeout: "", want: ResultContinue},
		{onTimeout: OnTimeoutContinue, want: ResultContinue},
		{onTimeout: OnTimeoutAbandon, want: ResultAbandon, wantErr: ErrDrainTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.onTimeout, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.c.startDelay = 24 * time.Hour // the replacements never start in time
				w.scaleIn("w1", time.Minute)

				o := run(t.Context(), w.drainer(t, "w1", DrainOptions{Deadline: 2 * time.Minute, OnTimeout: tt.onTimeout}), notice("w1"))

				if !errors.Is(o.err, tt.wantErr) || (tt.wantErr == nil) != (o.err == nil) {
					t.Fatalf("Drain error = %v, want %v", o.err, tt.wantErr)
				}
				if !o.rep.TimedOut || o.rep.Result != tt.want {
					t.Errorf("report TimedOut %t, Result %q; want true, %q", o.rep.TimedOut, o.rep.Result, tt.want)
				}
				if o.rep.TaskWait < 2*time.Minute || o.rep.TaskWait > 2*time.Minute+DefaultDrainPoll {
					t.Errorf("TaskWait = %s, want the 2m deadline", o.rep.TaskWait)
				}
				if _, ok := w.c.node("w1"); ok {
					t.Errorf("w1 still in the swarm after a timed-out drain")
				}
				if c, _, _ := w.hook.status(); !slices.Equal(c, []string{tt.want}) {
					t.Errorf("completions = %v, want [%s]", c, tt.want)
				}
				if s, _ := o.rep.Step(StepTasks); s.Outcome != OutcomeTimeout {
					t.Errorf("tasks step = %+v, want timeout", s)
				}
			})
		})
	}
}

func TestDrainSpotNotice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(3, 2)
		w.c.startDelay = 5 * time.Minute
		w.scaleIn("w1", time.Hour)
		n := notice("w1")
		n.Kind, n.Deadline = "spot", time.Now().Add(2*time.Minute)

		o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), n)

		if o.err != nil {
			t.Fatalf("Drain: %v", o.err)
		}
		if !time.Now().Before(n.Deadline) {
			t.Errorf("drain ended %s after the interruption time", time.Since(n.Deadline))
		}
		if c, _, _ := w.hook.status(); !slices.Equal(c, []string{ResultContinue}) {
			t.Errorf("completions = %v, want [CONTINUE]", c)
		}
		if _, ok := w.c.node("w1"); ok {
			t.Errorf("w1 still in the swarm")
		}
		if !o.rep.TimedOut {
			t.Errorf("report TimedOut = false, want true (tasks needed 5 minutes)")
		}
	})
}

func TestDrainNoHook(t *testing.T) {
	for _, name := range []string{"ErrNoHook", "nil Hook"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				if name == "ErrNoHook" {
					w.hook = newFakeHook(w.j, "i-w1", time.Minute)
					w.hook.noHook = true
				}

				o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1"))

				if o.err != nil {
					t.Fatalf("Drain: %v", o.err)
				}
				if _, ok := w.c.node("w1"); ok {
					t.Errorf("w1 still in the swarm")
				}
				if o.rep.Heartbeats != 0 || o.rep.Result != "" {
					t.Errorf("report = %+v, want no heartbeats and no result", o.rep)
				}
				if o.rep.NoHook != (name == "ErrNoHook") {
					t.Errorf("NoHook = %t", o.rep.NoHook)
				}
				if s, _ := o.rep.Step(StepComplete); s.Outcome != OutcomeSkipped {
					t.Errorf("complete step = %+v, want skipped", s)
				}
				if w.hook != nil {
					if c, beats, _ := w.hook.status(); len(c) != 0 || beats != 0 {
						t.Errorf("hook saw completions %v and %d heartbeats, want none", c, beats)
					}
				}
			})
		})
	}
}

// TestDrainResumeKeepsDeadline: a drain resumed after a crash counts its deadline from
// the leaving label, not from the restart.
func TestDrainResumeKeepsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(3, 2)
		w.c.startDelay = 24 * time.Hour
		w.scaleIn("w1", 5*time.Minute)
		opts := DrainOptions{Deadline: 2 * time.Minute}
		start := time.Now()
		w.c.inject("Tasks", crashBefore, 40) // well into the wait
		if o := run(t.Context(), w.drainer(t, "w1", opts), notice("w1")); o.finished {
			t.Fatalf("first run finished: %v", o.err)
		}
		time.Sleep(10 * time.Second)
		left := time.Until(start.Add(opts.Deadline))
		if left <= 0 || left > opts.Deadline-20*time.Second {
			t.Fatalf("the crash came %s into the drain: pick another call to crash on", opts.Deadline-left)
		}

		o := run(t.Context(), w.drainer(t, "w1", opts), notice("w1"))

		if o.err != nil {
			t.Fatalf("Drain: %v", o.err)
		}
		if !o.rep.TimedOut || o.rep.TaskWait < left || o.rep.TaskWait > left+DefaultDrainPoll {
			t.Errorf("resumed drain waited %s (timed out %t), want the %s left of its %s", o.rep.TaskWait, o.rep.TimedOut, left, opts.Deadline)
		}
		if s, _ := o.rep.Step(StepMark); s.Outcome != OutcomeSkipped {
			t.Errorf("mark step = %+v, want skipped", s)
		}
		if c, _, _ := w.hook.status(); !slices.Equal(c, []string{ResultContinue}) {
			t.Errorf("completions = %v, want [CONTINUE]", c)
		}
	})
}

// TestDrainCompleteResponseLost: Auto Scaling completed the action but the answer was
// lost; the retry's ErrNoAction means done, not failed, and nothing completes twice.
func TestDrainCompleteResponseLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(3, 2)
		w.scaleIn("w1", 5*time.Minute)
		w.hook.inject("Complete", lostResponse, 0)

		o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1"))

		if o.err != nil {
			t.Fatalf("Drain: %v", o.err)
		}
		w.checkGone(t, "w1", ResultContinue)
		if !o.rep.AlreadyCompleted || o.rep.Result != "" {
			t.Errorf("report AlreadyCompleted %t, Result %q; want true, none", o.rep.AlreadyCompleted, o.rep.Result)
		}
		if n := w.hook.count("Complete"); n != 2 {
			t.Errorf("Complete called %d times, want 2 (the lost one and the retry)", n)
		}
	})
}

func TestDrainRefusesOtherInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(3, 2)
		w.scaleIn("w2", time.Minute)
		// w1's agent is told that instance i-w2 terminates
		o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w2"))
		if !errors.Is(o.err, ErrNotAllowed) {
			t.Fatalf("Drain error = %v, want ErrNotAllowed", o.err)
		}
		if got := w.j.all(); len(got) != 0 {
			t.Errorf("changed things: %q", got)
		}
	})
}

// TestDrainLeftCannotReachManagers: a worker that left before its agent crashed cannot
// reach the managers' control API any more; the rerun still completes the action.
func TestDrainLeftCannotReachManagers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(3, 2)
		w.scaleIn("w1", 5*time.Minute)
		w.c.inject("Leave", crashAfter, 0)
		if o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1")); o.finished {
			t.Fatalf("first run finished: %v", o.err)
		}
		w.c.inject("Nodes", failErr, 0) // the control API refuses a node that left

		o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1"))

		if o.err != nil {
			t.Fatalf("Drain: %v", o.err)
		}
		if c, _, _ := w.hook.status(); !slices.Equal(c, []string{ResultContinue}) {
			t.Errorf("completions = %v, want [CONTINUE]", c)
		}
		if s, _ := o.rep.Step(StepRemove); s.Outcome != OutcomeFailed {
			t.Errorf("remove step = %+v, want failed (left to the reaper)", s)
		}
		// the leader's reaper removes it: it is labelled leaving and down
		w.c.clearFaults()
		time.Sleep(time.Minute)
		r := &Reaper{Swarm: w.c, Hook: w.hook, Instances: newFakeEC2(w), Log: testLogger(t)}
		if got, err := r.Reap(t.Context(), time.Now()); err != nil || !slices.Equal(got, []string{"w1"}) {
			t.Errorf("Reap = %v, %v; want [w1]", got, err)
		}
	})
}

func TestDrainNotInSwarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, 1)
		w.scaleIn("x1", time.Minute)
		o := run(t.Context(), w.drainer(t, "x1", DrainOptions{}), notice("x1"))
		if o.err != nil {
			t.Fatalf("Drain: %v", o.err)
		}
		if c, _, _ := w.hook.status(); !slices.Equal(c, []string{ResultContinue}) {
			t.Errorf("completions = %v, want [CONTINUE]", c)
		}
		if s, _ := o.rep.Step(StepRemove); s.Outcome != OutcomeSkipped {
			t.Errorf("remove step = %+v, want skipped", s)
		}
	})
}

func TestDrainBadInput(t *testing.T) {
	w := newWorld(1, 1)
	tests := []struct {
		name string
		d    *Drainer
		n    Notice
		want string
	}{
		{name: "on-timeout", d: w.drainer(t, "w1", DrainOptions{OnTimeout: "later"}), n: notice("w1"), want: `drain on-timeout "later": must be continue or abandon`},
		{name: "no instance id", d: w.drainer(t, "w1", DrainOptions{}), n: Notice{Kind: "manual"}, want: "no instance id"},
		{name: "no swarm", d: &Drainer{Local: fakeLocal{c: w.c, id: "w1"}}, n: notice("w1"), want: "needs a Swarm and a Local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.d.Drain(t.Context(), tt.n)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Drain error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if got := w.j.all(); len(got) != 0 {
		t.Errorf("bad input changed things: %q", got)
	}
}

// TestDrainResume crashes (or fails) the drain at each step, then runs it again, as a
// restarted agent would: the second run must finish the job with exactly one completion.
func TestDrainResume(t *testing.T) {
	points := []struct {
		op          string
		skip        int  // calls that pass before the fault
		managerOnly bool // a worker's drain makes no such call
	}{
		{op: "Action"},
		{op: "Self"},
		{op: "Node"},
		{op: "Nodes", managerOnly: true},          // its turn to leave the managers
		{op: "SetNodeLabels"},                     // mark leaving
		{op: "Tasks"},                             // baseline
		{op: "SetAvailability"},                   // drain
		{op: "Tasks", skip: 6},                    // while the tasks move
		{op: "Nodes", skip: 1, managerOnly: true}, // the turn, looked at again once claimed
		{op: "Nodes", skip: 2, managerOnly: true}, // quorum check
		{op: "Nodes", skip: 3, managerOnly: true}, // quorum check again before the demotion
		{op: "SetRole", managerOnly: true},        // demote
		{op: "Nodes", skip: 5, managerOnly: true}, // while the demotion takes effect
		{op: "Self", skip: 1, managerOnly: true},  // while the demotion takes effect
		{op: "Deregister", managerOnly: true},
		{op: "Leave"},
		{op: "RemoveNode"}, // the forced removal right after leaving
		{op: "Complete"},
	}
	for _, node := range []string{"m1", "w1"} {
		for _, p := range points {
			if p.managerOnly && node[0] != 'm' {
				continue
			}
			for _, mode := range []faultMode{crashBefore, crashAfter, failErr, lostResponse} {
				t.Run(fmt.Sprintf("%s/%s#%d/%s", node, p.op, p.skip, mode), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) { testResume(t, node, p.op, p.skip, mode) })
				})
			}
		}
	}
}

func testResume(t *testing.T, node, op string, skip int, mode faultMode) {
	w := newWorld(3, 3)
	w.scaleIn(node, 5*time.Minute)
	w.c.inject(op, mode, skip)
	w.hook.inject(op, mode, skip)
	w.reg.inject(op, mode, skip)

	first := run(t.Context(), w.drainer(t, node, DrainOptions{}), notice(node))
	crashes := w.c.crashed() + w.hook.crashed() + w.reg.crashed()
	if first.finished == (crashes > 0) {
		t.Fatalf("first run finished %t with %d crashes", first.finished, crashes)
	}
	t.Logf("first run: finished %t, error %v, journal %q", first.finished, first.err, w.j.all())
	if w.c.strikes()+w.hook.strikes()+w.reg.strikes() == 0 {
		t.Fatalf("the fault never struck: %s is not called %d times", op, skip+1)
	}
	if mode == lostResponse && (!first.finished || first.err != nil) {
		t.Errorf("one lost response made the drain fail: %v", first.err)
	}

	// the agent restarts
	w.c.clearFaults()
	w.hook.clearFaults()
	w.reg.clearFaults()
	time.Sleep(10 * time.Second)
	completions, _, _ := w.hook.status()
	completedFirst := len(completions) > 0
	completeCalls := w.hook.count("Complete")

	second := run(t.Context(), w.drainer(t, node, DrainOptions{}), notice(node))
	if second.err != nil {
		t.Fatalf("second run: %v", second.err)
	}
	w.checkGone(t, node, ResultContinue)
	if second.rep.AlreadyCompleted != completedFirst {
		t.Errorf("second run AlreadyCompleted = %t, want %t", second.rep.AlreadyCompleted, completedFirst)
	}
	if completedFirst && w.hook.count("Complete") != completeCalls {
		t.Errorf("second run called Complete although Auto Scaling shows the instance proceeding")
	}
	if node[0] == 'm' {
		if got := w.c.managers(); len(got) != 2 {
			t.Errorf("managers = %v, want 2", got)
		}
		if l := w.c.leader(); l == "" || l == node {
			t.Errorf("leader = %q, want another manager", l)
		}
		if op == "Deregister" && mode == failErr {
			// not fatal: the drain goes on and the leader's DNS upkeep drops the record
			if s, _ := first.rep.Step(StepDeregister); s.Outcome != OutcomeFailed {
				t.Errorf("first run's deregister step = %+v, want failed", s)
			}
		} else if w.j.countPrefix("deregister i-"+node) == 0 {
			t.Errorf("manager never deregistered: %q", w.j.all())
		}
	}
	// the second run redoes nothing the first did
	for _, prefix := range []string{"labels", "availability", "role", "leave", "remove"} {
		if n := w.j.countPrefix(prefix); n > 1 {
			t.Errorf("%d %q entries, want at most 1: %q", n, prefix, w.j.all())
		}
	}
}

// TestDrainRemote: a manager drains a node on its behalf (queue mode): the tasks move, the
// action is completed once, and the node neither leaves nor is removed (the reaper does that
// once the instance is gone).
func TestDrainRemote(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(3, 3)
		w.scaleIn("w1", 5*time.Minute)
		atComplete := -1
		w.hook.onComplete = func(string) { atComplete = w.c.running("web", "w1") }
		o := run(t.Context(), w.drainer(t, "w1", DrainOptions{Remote: true}), notice("w1"))
		if o.err != nil {
			t.Fatalf("Drain: %v", o.err)
		}
		if atComplete != 6 {
			t.Errorf("web tasks running elsewhere at completion = %d, want 6", atComplete)
		}
		w.inOrder(t, "labels w1", "availability w1 drain", "complete i-w1 CONTINUE")
		if n := w.j.countPrefix("leave"); n != 0 {
			t.Errorf("the remote node was made to leave %d times", n)
		}
		if n := w.j.countPrefix("remove"); n != 0 {
			t.Errorf("the remote node was removed %d times before it is down", n)
		}
		for _, step := range []string{StepLeave, StepRemove} {
			if s, ok := o.rep.Step(step); !ok || s.Outcome != OutcomeSkipped {
				t.Errorf("step %s = %+v, want skipped", step, s)
			}
		}
		if o.rep.Result != ResultContinue {
			t.Errorf("result %q", o.rep.Result)
		}
	})
}

// TestDrainHookFoundLater: when the first lookup of the lifecycle hook fails (Auto Scaling
// throttled or unreachable for a while), the drain keeps looking and starts the heartbeats
// once it finds the hook, so that the action does not expire while the node drains.
func TestDrainHookFoundLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(3, 2)
		w.c.startDelay = 3 * time.Minute // the tasks take longer than the hook's timeout
		w.scaleIn("w1", 40*time.Second)
		w.hook.inject("Action", failErr, 0)
		go func() {
			time.Sleep(10 * time.Second)
			w.hook.clearFaults()
		}()

		o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1"))

		if o.err != nil {
			t.Fatalf("Drain: %v", o.err)
		}
		w.checkGone(t, "w1", ResultContinue)
		if _, beats, _ := w.hook.status(); beats == 0 || o.rep.Heartbeats != beats {
			t.Errorf("heartbeats: hook saw %d, report says %d; want some, and the same", beats, o.rep.Heartbeats)
		}
		if s, _ := o.rep.Step(StepHook); s.Outcome != OutcomeDone || o.rep.Action.Hook != "drain" {
			t.Errorf("hook step %+v, action %+v; want found on a later look", s, o.rep.Action)
		}
	})
	t.Run("no hook after all", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(3, 2)
			w.scaleIn("w1", time.Minute)
			w.hook.inject("Action", failErr, 0)
			go func() {
				time.Sleep(10 * time.Second)
				w.hook.mu.Lock()
				w.hook.noHook = true
				w.hook.mu.Unlock()
				w.hook.clearFaults()
			}()
			o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1"))
			if o.err != nil || !o.rep.NoHook {
				t.Fatalf("Drain: %v, NoHook %t; want done without a hook", o.err, o.rep.NoHook)
			}
			if c, beats, _ := w.hook.status(); len(c) != 0 || beats != 0 {
				t.Errorf("completions %v, %d heartbeats; want none", c, beats)
			}
		})
	})
}

// TestDrainTwoManagersAtOnce: two managers scaled in at the same moment leave one after the
// other: the second one neither counts on the first to stay nor demotes before the first is
// out of the managers; both finish, each action completed once.
func TestDrainTwoManagersAtOnce(t *testing.T) {
	for _, managers := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d managers", managers), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(managers, 2)
				hooks := map[string]*fakeHook{}
				outs := map[string]chan outcome{}
				for _, m := range []string{"m2", "m3"} {
					hooks[m] = newFakeHook(w.j, "i-"+m, 5*time.Minute)
					hooks[m].scaleIn()
					d := &Drainer{Swarm: w.c, Local: fakeLocal{c: w.c, id: m}, Hook: hooks[m], Registrar: w.reg, Log: testLogger(t)}
					out := make(chan outcome, 1)
					outs[m] = out
					go func() { out <- run(t.Context(), d, notice(m)) }()
				}
				// sample the managers' raft: never two of them on their way out at once
				stop := make(chan struct{})
				sampled := make(chan int)
				go func() {
					least := managers
					for {
						select {
						case <-stop:
							sampled <- least
							return
						case <-time.After(time.Second):
						}
						members := 0
						for _, id := range w.c.managers() {
							if n, _ := w.c.node(id); n.Reachability == reachable {
								members++
							}
						}
						least = min(least, members)
					}
				}()
				for _, m := range []string{"m2", "m3"} {
					if o := <-outs[m]; o.err != nil {
						t.Errorf("drain of %s: %v", m, o.err)
					}
					if c, _, _ := hooks[m].status(); !slices.Equal(c, []string{ResultContinue}) {
						t.Errorf("%s completions %v, want one CONTINUE", m, c)
					}
				}
				close(stop)
				least := <-sampled
				if got := w.c.managers(); len(got) != managers-2 {
					t.Errorf("managers %v, want %d", got, managers-2)
				}
				// one goes first; the other starts moving its tasks only once the first is no
				// manager any more
				first, second := "m2", "m3"
				if i, j := w.j.index("role m2 worker"), w.j.index("role m3 worker"); j >= 0 && (i < 0 || j < i) {
					first, second = "m3", "m2"
				}
				w.inOrder(t, "turn "+first, "availability "+first+" drain", "role "+first+" worker",
					"availability "+second+" drain", "role "+second+" worker")
				if least < managers-2 {
					t.Errorf("reachable managers fell to %d, want at least %d", least, managers-2)
				}
			})
		})
	}
}

// TestDrainRemovesAtOnce: once the node has left, its node object goes at once (a forced
// removal, which the managers allow a drained node marked leaving), not when the managers see
// the node down; the action is completed right after.
func TestDrainRemovesAtOnce(t *testing.T) {
	for _, node := range []string{"w1", "m2"} {
		t.Run(node, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.scaleIn(node, 5*time.Minute)

				o := run(t.Context(), w.drainer(t, node, DrainOptions{}), notice(node))

				if o.err != nil {
					t.Fatalf("Drain: %v", o.err)
				}
				w.checkGone(t, node, ResultContinue)
				if !slices.Equal(w.c.forced, []string{node}) {
					t.Errorf("removed by force before showing down: %v, want [%s]", w.c.forced, node)
				}
				if n := w.c.count("RemoveNode"); n != 1 {
					t.Errorf("RemoveNode called %d times, want 1", n)
				}
				w.inOrder(t, "leave "+node, "remove "+node, "complete i-"+node)
				rm, _ := o.rep.Step(StepRemove)
				done, _ := o.rep.Step(StepComplete)
				if rm.Outcome != OutcomeDone || !strings.Contains(rm.Detail, "at once") {
					t.Errorf("remove step = %+v, want done at once", rm)
				}
				if after := rm.Took + done.Took; after >= w.c.downDelay {
					t.Errorf("completed %s after leaving, want before the node shows down (%s)", after, w.c.downDelay)
				}
			})
		})
	}
}

// TestDrainRemoveFallback: when the managers refuse the forced removal (ErrNotAllowed) or do
// not know it (an older agent answers a bad request), the drain removes the node the old way,
// once the managers see it down.
func TestDrainRemoveFallback(t *testing.T) {
	tests := []struct {
		name       string
		refusal    error
		wantForced int // forced removals asked for
	}{
		{"refused", fmt.Errorf("manager 10.0.0.1:2380 answered 403 not_allowed: %w", ErrNotAllowed), 1},
		{"not offered", errors.New("manager 10.0.0.1:2380 answered 400 bad_request: query parameter \"force\": not accepted here"), 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				w.scaleIn("w1", 5*time.Minute)
				w.c.refuseForce = tt.refusal
				o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1"))
				removeCalls := w.c.count("RemoveNode")

				if o.err != nil {
					t.Fatalf("Drain: %v", o.err)
				}
				w.checkGone(t, "w1", ResultContinue)
				if len(w.c.forced) != 0 {
					t.Errorf("removed by force: %v", w.c.forced)
				}
				rm, _ := o.rep.Step(StepRemove)
				if rm.Outcome != OutcomeDone || rm.Took < w.c.downDelay || !strings.Contains(rm.Detail, "showed down") {
					t.Errorf("remove step = %+v, want done once the node showed down (%s after leaving)", rm, w.c.downDelay)
				}
				// Polls every 2 s until down after 5 s: at 0, 2 and 4 s refused, at 6 s removed;
				// a refused forced removal is not asked for again, one not offered is.
				if want := tt.wantForced + 4; removeCalls != want {
					t.Errorf("RemoveNode called %d times, want %d (%d forced, 4 unforced)", removeCalls, want, tt.wantForced)
				}
			})
		})
	}
}

// TestDrainWaitsForRelease: a node some replicas-per-node service counts (LabelCounted)
// leaves only once the leader has shrunk those services and cleared the label, so that the
// replicas shrink before the action completes; a leader that never does costs the drain
// releaseWait, not more, and a node without the label does not wait at all.
func TestDrainWaitsForRelease(t *testing.T) {
	for _, c := range []struct {
		name    string
		counted bool
		clearAt time.Duration // after the drain starts; 0: never
		outcome string        // of StepRelease; "" for none
	}{
		{"released by the leader", true, 40 * time.Second, OutcomeDone},
		{"no leader releases it", true, 0, OutcomeTimeout},
		{"not counted", false, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(3, 2)
				if c.counted {
					if err := w.c.SetNodeLabels(t.Context(), "w1", map[string]string{swarm.LabelCounted: "true"}); err != nil {
						t.Fatal(err)
					}
				}
				w.scaleIn("w1", 5*time.Minute)
				if c.clearAt > 0 {
					go func() {
						time.Sleep(c.clearAt)
						_ = w.c.SetNodeLabels(context.Background(), "w1", map[string]string{swarm.LabelCounted: ""})
					}()
				}

				o := run(t.Context(), w.drainer(t, "w1", DrainOptions{}), notice("w1"))

				if o.err != nil {
					t.Fatalf("Drain: %v", o.err)
				}
				w.checkGone(t, "w1", ResultContinue)
				s, ok := o.rep.Step(StepRelease)
				if got := map[bool]string{true: s.Outcome}[ok]; got != c.outcome {
					t.Fatalf("release step %+v (%t), want outcome %q", s, ok, c.outcome)
				}
				switch c.outcome {
				case OutcomeDone:
					w.inOrder(t, "availability w1 drain", "labels w1 map["+swarm.LabelCounted+":]", "leave w1", "complete i-w1")
					if o.rep.Took < c.clearAt {
						t.Errorf("drain took %s, want at least until the release at %s", o.rep.Took, c.clearAt)
					}
				case OutcomeTimeout:
					if s.Took != releaseWait {
						t.Errorf("waited %s for a release that never came, want %s", s.Took, releaseWait)
					}
				default:
					if o.rep.Took > time.Minute {
						t.Errorf("a node nobody counts took %s to drain", o.rep.Took)
					}
				}
			})
		})
	}
}
