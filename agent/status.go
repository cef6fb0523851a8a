package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/lifecycle/scaleout"
)

// Status is what boot and run record for `swarm-agent status`.
type Status struct {
	PID        int       `json:"pid"`
	Command    string    `json:"command"`
	Stage      string    `json:"stage"`
	Role       string    `json:"role,omitempty"`
	Cluster    string    `json:"cluster,omitempty"`
	InstanceID string    `json:"instance_id,omitempty"`
	NodeID     string    `json:"node_id,omitempty"`
	Action     string    `json:"action,omitempty"`
	Error      string    `json:"error,omitempty"`
	Started    time.Time `json:"started"`
	Updated    time.Time `json:"updated"`
	// Scaling is what the leader's scale-out does now and next (rebalances, resizes), and why
	// it waits: written by the leader's run, and worked out afresh by status on a manager.
	Scaling []string `json:"scaling,omitempty"`
	// Live fields, filled by the status command from the engine.
	SwarmState string `json:"swarm_state,omitempty"`
	IsManager  bool   `json:"is_manager,omitempty"`
	EngineErr  string `json:"engine_error,omitempty"`
}

// statusFile keeps Status on disk, written atomically on every change.
type statusFile struct {
	mu    sync.Mutex
	path  string
	s     Status
	marks []stageMark // when each stage began, for the "boot finished" line
	// onStage, when set, hears every new stage (run: systemd's STATUS, which `systemctl status`
	// shows while the unit is still activating, waiting to join).
	onStage func(string)
}

type stageMark struct {
	name string
	at   time.Time
}

func newStatusFile(path, command string) *statusFile {
	now := time.Now().UTC()
	return &statusFile{path: path, s: Status{PID: os.Getpid(), Command: command, Started: now, Updated: now}}
}

func (f *statusFile) update(fn func(*Status)) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	before := f.s.Stage
	fn(&f.s)
	f.s.Updated = time.Now().UTC()
	if f.onStage != nil && f.s.Stage != before {
		f.onStage(f.s.Stage)
	}
	if f.path == "" {
		return
	}
	data, _ := json.MarshalIndent(f.s, "", "  ")
	_ = os.MkdirAll(filepath.Dir(f.path), 0o755)
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err == nil {
		_ = os.Rename(tmp, f.path)
	}
}

func (f *statusFile) stage(s string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.marks = append(f.marks, stageMark{s, time.Now()})
	f.mu.Unlock()
	f.update(func(st *Status) { st.Stage = s })
}

// stageTimes is how long each stage took until end, in milliseconds, by stage name (a stage
// entered twice adds up), as a log field.
func (f *statusFile) stageTimes(end time.Time) *zerolog.Event {
	d := zerolog.Dict()
	if f == nil {
		return d
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	sum := map[string]time.Duration{}
	var order []string
	for i, m := range f.marks {
		next := end
		if i+1 < len(f.marks) {
			next = f.marks[i+1].at
		}
		if _, ok := sum[m.name]; !ok {
			order = append(order, m.name)
		}
		sum[m.name] += next.Sub(m.at)
	}
	for _, name := range order {
		d.Float64(name, float64(sum[name].Microseconds())/1000)
	}
	return d
}

// setOnStage sets (nil: removes) the hook that hears every new stage.
func (f *statusFile) setOnStage(fn func(string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onStage = fn
}

func statusCmd(e env) *cobra.Command {
	var cfg Config
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what the agent is doing and the node's swarm state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := resolve(cmd.Flags(), e.environ, e.readFile); err != nil {
				return err
			}
			if err := cfg.validate(cmd.Flags()); err != nil {
				return err
			}
			var st Status
			data, err := e.readFile(cfg.StatusFile)
			switch {
			case err == nil:
				if err := json.Unmarshal(data, &st); err != nil {
					return fmt.Errorf("status file %s: %w", cfg.StatusFile, err)
				}
			case errors.Is(err, os.ErrNotExist):
				st.Stage = "no agent has run on this node (no status file)"
			default:
				return fmt.Errorf("status file %s: %w", cfg.StatusFile, err)
			}
			live(cmd.Context(), cfg, &st)
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
			row := func(k, v string) {
				if v != "" {
					fmt.Fprintf(tw, "%s:\t%s\n", k, v)
				}
			}
			row("Command", st.Command)
			if st.PID != 0 {
				row("PID", fmt.Sprint(st.PID))
			}
			row("Stage", st.Stage)
			row("Role", st.Role)
			row("Cluster", st.Cluster)
			row("Instance", st.InstanceID)
			row("Node", st.NodeID)
			row("Last action", st.Action)
			row("Error", st.Error)
			if !st.Updated.IsZero() {
				row("Updated", st.Updated.Format(time.RFC3339)+fmt.Sprintf(" (%s ago)", time.Since(st.Updated).Round(time.Second)))
			}
			row("Swarm state", st.SwarmState)
			if st.SwarmState == "active" {
				row("Manager", fmt.Sprint(st.IsManager))
			}
			row("Engine", st.EngineErr)
			for i, l := range st.Scaling {
				row(map[bool]string{true: "Scale-out"}[i == 0], l)
			}
			return tw.Flush()
		},
	}
	bindOptions(cmd.Flags(), &cfg, "status-file", "docker-host", "config-file", "rebalance-cooldown", "resize-interval")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// live adds the engine's current swarm state to st and, on a manager, what the leader's
// scale-out would do now and next (a dry run: it reads and changes nothing).
func live(ctx context.Context, cfg Config, st *Status) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	eng, err := engine.New(cfg.DockerHost)
	if err != nil {
		st.EngineErr = err.Error()
		return
	}
	defer eng.Close()
	ln, err := eng.Local(ctx)
	if err != nil {
		st.EngineErr = err.Error()
		return
	}
	st.SwarmState, st.IsManager = string(ln.State), ln.IsManager
	if st.NodeID == "" {
		st.NodeID = ln.NodeID
	}
	if ln.State == bootstrap.StateActive && ln.IsManager {
		now := time.Now()
		if _, p, err := scaleout.Read(ctx, engineServices{eng}, now, scaleOptions(cfg)); err != nil {
			st.Scaling = []string{"cannot tell: " + err.Error()}
		} else {
			st.Scaling = p.Lines(now)
		}
	}
}

func jsonEncode(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// snapshot returns a copy of the current status (for the /status endpoint).
func (f *statusFile) snapshot() Status {
	if f == nil {
		return Status{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}
