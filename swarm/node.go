package swarm

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
