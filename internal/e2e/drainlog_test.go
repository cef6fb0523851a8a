package e2e

// The drain's step lines in an agent's JSON log, read the same way by every test that checks a
// drain from its log.

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// drainStep is one line the drain logs for a step (action), with its state.
type drainStep struct {
	Action  string    `json:"action"`
	State   string    `json:"state"`
	Message string    `json:"message"`
	Elapsed float64   `json:"elapsed"` // milliseconds
	Time    time.Time `json:"time"`
}

// took is how long the step took, as the drain logged it.
func (s drainStep) took() time.Duration { return time.Duration(s.Elapsed * float64(time.Millisecond)) }

// drainSteps returns, per drain step, the last line an agent's log has for it: of the lines
// that parse as JSON and have an action and a state, the last one of each action.
func drainSteps(log string) map[string]drainStep {
	steps := map[string]drainStep{}
	for line := range strings.Lines(log) {
		var s drainStep
		if json.Unmarshal([]byte(line), &s) == nil && s.State != "" {
			steps[s.Action] = s
		}
	}
	return steps
}

// TestDrainSteps: the last line of each step wins, lines without a state or not JSON are no
// step, and the elapsed time and timestamp are read as the agent logs them.
func TestDrainSteps(t *testing.T) {
	log := `not json
{"level":"info","action":"join","time":"2026-12-01T10:00:00.000Z","message":"boot finished"}
{"level":"info","action":"tasks","state":"waiting","elapsed":12.5,"time":"2026-12-01T10:00:01.000Z","message":"3 tasks left"}
{"level":"info","action":"tasks","state":"done","elapsed":1500.25,"time":"2026-12-01T10:00:02.500Z","message":"no tasks left"}
{"level":"info","action":"remove","state":"done","elapsed":40,"time":"2026-12-01T10:00:03.000Z","message":"removed at once"}`
	steps := drainSteps(log)
	if _, ok := steps["join"]; ok {
		t.Errorf("a line without a state counted as a drain step: %+v", steps["join"])
	}
	tasks := steps["tasks"]
	if tasks.State != "done" || tasks.Message != "no tasks left" || tasks.took() != 1500250*time.Microsecond ||
		!tasks.Time.Equal(time.Date(2026, 12, 1, 10, 0, 2, 500e6, time.UTC)) {
		t.Errorf("tasks step = %+v (took %s), want the last line: done, 1.50025s, 10:00:02.500", tasks, tasks.took())
	}
	if r := steps["remove"]; r.State+": "+r.Message != "done: removed at once" || r.took() != 40*time.Millisecond {
		t.Errorf("remove step = %+v, want done in 40ms", r)
	}
	if len(steps) != 2 {
		t.Errorf("%d steps, want 2 (tasks, remove): %+v", len(steps), steps)
	}
}
