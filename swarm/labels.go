package swarm

// LabelPrefix is the namespace of every label the agent owns, engine labels (dockerd --label)
// and node labels alike. The agent rewrites engine labels under it on each merge, and it is
// the only namespace a node may set node labels in on itself through the control API.
const LabelPrefix = "swarm-agent."

// LabelInstanceID carries the node's EC2 instance id, as an engine label (daemon.json) and as
// a node label (set at boot on managers): a hint that the leader checks against EC2.
const LabelInstanceID = LabelPrefix + "instance-id"

// Engine label keys the agent writes into daemon.json, besides LabelInstanceID.
const (
	LabelAZ           = LabelPrefix + "az"
	LabelInstanceType = LabelPrefix + "instance-type"
	LabelRole         = LabelPrefix + "role"
	// LabelNodeLabels lists (comma-separated) the operator's label keys the agent wrote, which
	// managers copy into node labels for placement constraints.
	LabelNodeLabels = LabelPrefix + "node-labels"
)

// Node label keys a drain and the leader write.
const (
	// LabelLeaving marks a node whose drain has started (value: RFC3339 time it started).
	LabelLeaving = LabelPrefix + "leaving"
	// LabelProgress is kept fresh by a running drain (value: Unix seconds, every
	// lifecycle.ProgressInterval), so that the leader can tell a drain that goes on from one
	// whose agent died.
	LabelProgress = LabelPrefix + "leaving-progress"
	// LabelLeavingRole is set next to LabelLeaving on a manager that is leaving (value
	// "manager"), so that a drain resumed after the demotion still knows to deregister the
	// node from discovery.
	LabelLeavingRole = LabelPrefix + "leaving-role"
	// LabelTurn is set on a manager whose drain has its turn to leave the managers (value:
	// Unix seconds); managers leave one at a time.
	LabelTurn = LabelPrefix + "leaving-turn"
	// LabelProtected marks a manager whose instance the leader protected from scale-in, so
	// that the leader only ever lifts protection it set itself (an operator's stays).
	LabelProtected = LabelPrefix + "scale-in-protected"
	// LabelMaintenance marks a node that its own agent drained ahead of an EC2 scheduled
	// reboot or maintenance event of its instance (value: the event id), so that the agent
	// makes the node active again once the event is over, and only then: a drain it did not
	// make (an operator's) is never undone. The control API lets a node set it only while the
	// node is active (or marked already), and make itself active again only while marked.
	LabelMaintenance = LabelPrefix + "maintenance"
	// LabelImpaired marks a node that the leader drained because EC2 reported its instance's
	// status checks failing (value: RFC3339 time of the drain); the leader makes the node
	// active again once both checks pass. Only the leader writes it: the control API refuses it.
	LabelImpaired = LabelPrefix + "impaired"
)

// Service label keys: an operator opts a service in with them (docker service update
// --label-add). Nothing without them is ever touched by the leader's scale-out duties.
const (
	// LabelRebalance ("true") lets the leader spread the service's tasks onto nodes that
	// joined, with a rolling update (a ForceUpdate bump) under the service's own update config.
	LabelRebalance = LabelPrefix + "rebalance"
	// LabelReplicasPerNode (a whole number, 1..1000) makes the leader keep the service's
	// replicas at that many per node the service may run on, between LabelReplicasMin and
	// LabelReplicasMax when they are set.
	LabelReplicasPerNode = LabelPrefix + "replicas-per-node"
	LabelReplicasMin     = LabelPrefix + "replicas-min"
	LabelReplicasMax     = LabelPrefix + "replicas-max"
)

// Service label keys the leader writes on the services it changes, so that what it did
// survives a change of leader: the Unix second of its last rebalance of the service (nodes
// that joined before it count as placed) and of its last change of the replicas (the rate
// limit).
const (
	LabelRebalanced = LabelPrefix + "rebalanced"
	LabelResized    = LabelPrefix + "resized"
)

// LabelCounted is the node label ("true") the leader sets on a node that some
// replicas-per-node service counts. A drain of such a node waits (bounded) for the leader to
// clear it, which the leader does once it has scaled those services down without the node:
// the replicas shrink before the node's lifecycle action completes.
const LabelCounted = LabelPrefix + "replicas-counted"
