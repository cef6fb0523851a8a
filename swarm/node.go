package swarm

import "time"

// Node is a swarm node as a manager sees it. The JSON names are the control API's wire form
// (lifecycle/control): renaming one changes that API.
type Node struct {
	ID           string            `json:"id"`
	Hostname     string            `json:"hostname"`
	Addr         string            `json:"addr"` // the node's IP
	Role         Role              `json:"role"`
	Availability string            `json:"availability"` // active | pause | drain
	State        string            `json:"state"`        // ready | down | unknown | disconnected
	Leader       bool              `json:"leader"`
	Reachability string            `json:"reachability,omitempty"` // managers: reachable | unreachable | unknown
	Labels       map[string]string `json:"labels"`
	// EngineLabels are the node's engine labels (dockerd --label).
	EngineLabels map[string]string `json:"engine_labels"`
	// CreatedAt is when the node joined the swarm (its node object was created).
	CreatedAt time.Time `json:"created_at,omitzero"`
	// OS and Arch are the engine's platform (linux, x86_64), as placement constraints
	// (node.platform.os, node.platform.arch) see them.
	OS   string `json:"os,omitempty"`
	Arch string `json:"arch,omitempty"`
}

// InstanceID is the EC2 instance id the agent labelled the node with, if any: the node label,
// else the engine label.
func (n Node) InstanceID() string {
	if v := n.Labels[LabelInstanceID]; v != "" {
		return v
	}
	return n.EngineLabels[LabelInstanceID]
}

// Task is a swarm task. The JSON names are the control API's wire form.
type Task struct {
	ID           string `json:"id"`
	ServiceID    string `json:"service_id"`
	NodeID       string `json:"node_id"`
	Slot         int    `json:"slot"`
	DesiredState string `json:"desired_state"` // running | shutdown | ...
	State        string `json:"state"`         // running | shutdown | complete | failed | ...
}

// Service is a swarm service as the leader's scale-out duties see it: its labels, how many
// replicas, where they may run and how it rolls out an update.
type Service struct {
	ID      string
	Name    string
	Version uint64 // the spec's version, for an update
	Labels  map[string]string
	// Replicated is false for global services and jobs, which have no replica count.
	Replicated bool
	Replicas   uint64
	// Constraints are the placement constraints (node.labels.az==a, node.role!=manager).
	Constraints []string
	// Spread are the spread preferences' descriptors, outermost first (node.labels.az).
	Spread []string
	// MaxPerNode is the placement's maximum of replicas per node; 0 for none.
	MaxPerNode uint64
	// Platforms are the image's platforms as "os/arch" ("linux/amd64", "/arm64" when one
	// part is empty); empty: any platform.
	Platforms []string
	// Update is the service's own update config (Docker's defaults where it has none).
	Update UpdateConfig
	// UpdateState is the state of its last update: "" (never updated), updating, paused,
	// completed, rollback_started, rollback_paused or rollback_completed.
	UpdateState string
	// UpdateStarted is when that update started; zero when unknown.
	UpdateStarted time.Time
	// ForceUpdate is the task template's ForceUpdate counter.
	ForceUpdate uint64
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// UpdateConfig is how a service rolls out an update.
type UpdateConfig struct {
	Parallelism uint64 // tasks updated at once; 0: all at once
	Delay       time.Duration
	Order       string // stop-first | start-first
	Monitor     time.Duration
}
