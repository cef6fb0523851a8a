package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// faultMode is how an injected fault strikes.
type faultMode int

const (
	// failErr makes the operation return the fault's error, every time until cleared.
	failErr faultMode = iota
	// crashBefore ends the calling goroutine (runtime.Goexit: as if the agent died) before
	// the operation takes effect. It strikes once.
	crashBefore
	// crashAfter ends the calling goroutine after the operation took effect. It strikes once.
	crashAfter
	// lostResponse returns an error after the operation took effect, as when a response is
	// lost on the way back. It strikes once.
	lostResponse
)

func (m faultMode) String() string {
	return [...]string{"error", "crash before", "crash after", "lost response"}[m]
}

type fault struct {
	mode faultMode
	err  error
	skip int // calls that pass before the fault strikes
}

// faults injects failures into a fake's operations.
type faults struct {
	fmu     sync.Mutex
	armed   map[string]*fault
	calls   map[string]int
	crashes int
	struck  int // faults that struck, crashes included
}

func (f *faults) inject(op string, mode faultMode, skip int) {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	if f.armed == nil {
		f.armed = map[string]*fault{}
	}
	f.armed[op] = &fault{mode: mode, skip: skip, err: fmt.Errorf("injected failure of %s", op)}
}

func (f *faults) clearFaults() {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	f.armed = nil
}

func (f *faults) crashed() int {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	return f.crashes
}

func (f *faults) strikes() int {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	return f.struck
}

func (f *faults) count(op string) int {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	return f.calls[op]
}

// strike reports whether op's fault of mode strikes now; the caller holds no other lock.
func (f *faults) strike(op string, mode faultMode) (*fault, bool) {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	ft := f.armed[op]
	if ft == nil || ft.mode != mode {
		return nil, false
	}
	if ft.skip > 0 {
		ft.skip--
		return nil, false
	}
	if mode != failErr {
		delete(f.armed, op) // crashes and lost responses strike once
	}
	if mode == crashBefore || mode == crashAfter {
		f.crashes++
	}
	f.struck++
	return ft, true
}

// before is called first by every fake operation: it counts the call and strikes a
// failErr or crashBefore fault.
func (f *faults) before(op string) error {
	f.fmu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	f.fmu.Unlock()
	if ft, ok := f.strike(op, failErr); ok {
		return ft.err
	}
	if _, ok := f.strike(op, crashBefore); ok {
		runtime.Goexit()
	}
	return nil
}

// after is deferred by every fake operation, to run once it released its locks: it strikes
// a crashAfter or lostResponse fault, the latter by replacing the operation's *err.
func (f *faults) after(op string, err *error) {
	if _, ok := f.strike(op, crashAfter); ok {
		runtime.Goexit()
	}
	if ft, ok := f.strike(op, lostResponse); ok && *err == nil {
		*err = fmt.Errorf("%w: response lost", ft.err)
	}
}

// journal is the ordered record of what changed, shared by the fakes of one test.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
}

func (j *journal) all() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

// index returns the position of the first entry with prefix, or -1.
func (j *journal) index(prefix string) int {
	return slices.IndexFunc(j.all(), func(e string) bool { return strings.HasPrefix(e, prefix) })
}

func (j *journal) countPrefix(prefix string) int {
	n := 0
	for _, e := range j.all() {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

// fakeCluster is an in-memory swarm as its managers see it. Time moves it on (read through
// time.Now, so synctest's clock drives it): a drained node's tasks stop after stopDelay
// while their replacements, placed at once on the active node with the fewest tasks, run
// after startDelay; a demoted manager leaves raft after demoteDelay, and when it led,
// another reachable manager leads electDelay later; a node that left shows down after
// downDelay. Like Docker it refuses to demote the last manager or break quorum, to remove
// a raft member, and to remove a node that is not down without force; like the managers'
// control API, through which a node that left asks for its removal, it forces the removal
// only of a node that drained and is marked leaving.
type fakeCluster struct {
	faults
	j *journal

	startDelay, stopDelay, demoteDelay, electDelay, downDelay time.Duration
	// refuseForce, when set, is what every forced removal answers (managers from before
	// forced removals answer a bad request; a refusal matches ErrNotAllowed).
	refuseForce error
	forced      []string // nodes removed by force before they showed down

	mu       sync.Mutex
	nodes    []*fakeNode
	tasks    []*fakeTask
	nextTask int
	electAt  time.Time // a new leader is elected then; zero when none is pending
}

type fakeNode struct {
	swarm.Node
	raft      bool      // raft member (has manager status)
	raftOutAt time.Time // a pending demotion takes effect then
	left      bool      // its engine left the swarm
	downAt    time.Time // it shows down then
}

type fakeTask struct {
	swarm.Task
	runAt  time.Time // it runs then (desired running)
	stopAt time.Time // it stops then (desired shutdown)
}

func newFakeCluster(j *journal) *fakeCluster {
	return &fakeCluster{j: j, startDelay: 20 * time.Second, stopDelay: 5 * time.Second,
		demoteDelay: 3 * time.Second, electDelay: 2 * time.Second, downDelay: 5 * time.Second}
}

var _ Swarm = (*fakeCluster)(nil)

// addNode adds a ready, active node; the first manager leads.
func (c *fakeCluster) addNode(id string, role swarm.Role, instanceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := &fakeNode{Node: swarm.Node{ID: id, Hostname: "host-" + id, Addr: fmt.Sprintf("10.0.0.%d", len(c.nodes)+1), Role: role,
		Availability: "active", State: "ready", Labels: map[string]string{}, EngineLabels: map[string]string{}}}
	if instanceID != "" {
		n.EngineLabels[swarm.LabelInstanceID] = instanceID
	}
	if role == swarm.RoleManager {
		n.raft, n.Reachability = true, reachable
		n.Leader = !slices.ContainsFunc(c.nodes, func(o *fakeNode) bool { return o.Leader })
	}
	c.nodes = append(c.nodes, n)
}

// addService starts replicas running tasks spread over the active nodes, or one task per
// node (slot 0) when replicas is 0: a global service.
func (c *fakeCluster) addService(id string, replicas int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if replicas == 0 {
		for _, n := range c.nodes {
			c.newTaskLocked(id, 0, n.ID, "running")
		}
		return
	}
	for slot := 1; slot <= replicas; slot++ {
		c.newTaskLocked(id, slot, c.placeLocked(), "running")
	}
}

func (c *fakeCluster) newTaskLocked(svc string, slot int, nodeID, state string) *fakeTask {
	c.nextTask++
	t := &fakeTask{Task: swarm.Task{ID: fmt.Sprintf("t%d", c.nextTask), ServiceID: svc, NodeID: nodeID, Slot: slot,
		DesiredState: "running", State: state}}
	c.tasks = append(c.tasks, t)
	return t
}

// placeLocked picks the active, ready node with the fewest tasks meant to run; "" if none.
func (c *fakeCluster) placeLocked() string {
	best, load := "", 0
	for _, n := range c.nodes {
		if n.Availability != "active" || n.State != "ready" || n.left {
			continue
		}
		l := 0
		for _, t := range c.tasks {
			if t.NodeID == n.ID && t.DesiredState == "running" {
				l++
			}
		}
		if best == "" || l < load {
			best, load = n.ID, l
		}
	}
	return best
}

// advanceLocked applies what time has brought.
func (c *fakeCluster) advanceLocked() {
	now := time.Now()
	for _, t := range c.tasks {
		if !t.stopAt.IsZero() && !now.Before(t.stopAt) {
			t.State, t.stopAt = "shutdown", time.Time{}
		}
		if !t.runAt.IsZero() && !now.Before(t.runAt) && t.DesiredState == "running" {
			t.State, t.runAt = "running", time.Time{}
		}
	}
	for _, n := range c.nodes {
		if !n.raftOutAt.IsZero() && !now.Before(n.raftOutAt) {
			if n.Leader {
				n.Leader = false
				c.electAt = n.raftOutAt.Add(c.electDelay) // counted from the demotion, not from when it is seen
			}
			n.raft, n.Reachability, n.raftOutAt = false, "", time.Time{}
		}
		if !n.downAt.IsZero() && !now.Before(n.downAt) {
			n.State, n.downAt = "down", time.Time{}
			if n.raft {
				n.Reachability = "unreachable"
			}
		}
	}
	if !c.electAt.IsZero() && !now.Before(c.electAt) {
		c.electAt = time.Time{}
		members, up := 0, []*fakeNode{}
		for _, n := range c.nodes {
			if n.raft {
				members++
				if n.Reachability == reachable {
					up = append(up, n)
				}
			}
		}
		if len(up) > members/2 {
			up[0].Leader = true
			c.j.add("leader %s", up[0].ID)
		}
	}
}

func (c *fakeCluster) findLocked(id string) *fakeNode {
	for _, n := range c.nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

func (n *fakeNode) view() swarm.Node {
	out := n.Node
	out.Labels, out.EngineLabels = maps.Clone(n.Labels), maps.Clone(n.EngineLabels)
	return out
}

func noSuchNode(id string) error { return fmt.Errorf("node %s: %w", id, ErrNoSuchNode) }

func (c *fakeCluster) Node(_ context.Context, id string) (_ swarm.Node, err error) {
	if ferr := c.before("Node"); ferr != nil {
		return swarm.Node{}, ferr
	}
	defer c.after("Node", &err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	n := c.findLocked(id)
	if n == nil {
		return swarm.Node{}, noSuchNode(id)
	}
	return n.view(), nil
}

func (c *fakeCluster) Nodes(context.Context) (_ []swarm.Node, err error) {
	if ferr := c.before("Nodes"); ferr != nil {
		return nil, ferr
	}
	defer c.after("Nodes", &err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	out := make([]swarm.Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n.view())
	}
	return out, nil
}

func (c *fakeCluster) SetNodeLabels(_ context.Context, id string, labels map[string]string) (err error) {
	if ferr := c.before("SetNodeLabels"); ferr != nil {
		return ferr
	}
	defer c.after("SetNodeLabels", &err)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.findLocked(id)
	if n == nil {
		return noSuchNode(id)
	}
	changed := false
	for k, v := range labels {
		if old, ok := n.Labels[k]; !ok || old != v {
			n.Labels[k], changed = v, true
		}
	}
	_, progress := labels[swarm.LabelProgress]
	turn, isTurn := labels[swarm.LabelTurn]
	switch {
	case !changed: // like the engine adapter, an update that changes nothing writes nothing
	case progress && len(labels) == 1:
		// a drain's progress beat: counted as a call, not journaled
	case isTurn && len(labels) == 1:
		if turn == "" {
			turn = "given back"
		}
		c.j.add("turn %s %s", id, turn)
	default:
		c.j.add("labels %s %v", id, labels)
	}
	return nil
}

func (c *fakeCluster) SetAvailability(_ context.Context, id, availability string) (err error) {
	if ferr := c.before("SetAvailability"); ferr != nil {
		return ferr
	}
	defer c.after("SetAvailability", &err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	n := c.findLocked(id)
	if n == nil {
		return noSuchNode(id)
	}
	if n.Availability == availability {
		return nil
	}
	n.Availability = availability
	c.j.add("availability %s %s", id, availability)
	if availability != availabilityDrain {
		return nil
	}
	now := time.Now()
	for _, t := range slices.Clone(c.tasks) {
		if t.NodeID != id || t.DesiredState != "running" {
			continue
		}
		t.DesiredState, t.runAt, t.stopAt = "shutdown", time.Time{}, now.Add(c.stopDelay)
		if t.Slot == 0 {
			continue // a global service's task is not replaced
		}
		r := c.newTaskLocked(t.ServiceID, t.Slot, c.placeLocked(), "pending")
		if r.NodeID != "" {
			r.runAt = now.Add(c.startDelay)
		}
	}
	return nil
}

func (c *fakeCluster) SetRole(_ context.Context, id string, role swarm.Role) (err error) {
	if ferr := c.before("SetRole"); ferr != nil {
		return ferr
	}
	defer c.after("SetRole", &err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	n := c.findLocked(id)
	if n == nil {
		return noSuchNode(id)
	}
	if n.Role == role {
		return nil
	}
	if role == swarm.RoleManager {
		n.Role, n.raft, n.Reachability = swarm.RoleManager, true, reachable
		c.j.add("role %s manager", id)
		return nil
	}
	managers, members, reachableOthers := 0, 0, 0
	for _, o := range c.nodes {
		if o.Role == swarm.RoleManager {
			managers++
		}
		if o.raft {
			members++
			if o.ID != id && o.Reachability == reachable {
				reachableOthers++
			}
		}
	}
	if managers == 1 {
		return fmt.Errorf("rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm")
	}
	if n.raft && reachableOthers <= (members-1)/2 {
		return fmt.Errorf("rpc error: code = FailedPrecondition desc = can't remove member from the raft: this would result in a loss of quorum")
	}
	n.Role = swarm.RoleWorker
	if n.raft {
		n.raftOutAt = time.Now().Add(c.demoteDelay)
	}
	c.j.add("role %s worker", id)
	return nil
}

func (c *fakeCluster) RemoveNode(_ context.Context, id string, force bool) (err error) {
	if ferr := c.before("RemoveNode"); ferr != nil {
		return ferr
	}
	defer c.after("RemoveNode", &err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	n := c.findLocked(id)
	switch {
	case n == nil:
		return noSuchNode(id)
	case n.Role == swarm.RoleManager || n.raft:
		return fmt.Errorf("rpc error: code = FailedPrecondition desc = node %s is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal", id)
	case force && c.refuseForce != nil:
		return c.refuseForce
	case force && n.State != "down" && (n.Labels[swarm.LabelLeaving] == "" || n.Availability != availabilityDrain):
		return fmt.Errorf("node %s is not leaving: %w", id, ErrNotAllowed)
	case !force && n.State != "down":
		return fmt.Errorf("rpc error: code = FailedPrecondition desc = node %s is not down and can't be removed", id)
	}
	c.nodes = slices.DeleteFunc(c.nodes, func(o *fakeNode) bool { return o.ID == id })
	if force && n.State != "down" {
		c.forced = append(c.forced, id)
	}
	c.j.add("remove %s", id)
	return nil
}

func (c *fakeCluster) Tasks(_ context.Context, nodeID, serviceID string) (_ []swarm.Task, err error) {
	if ferr := c.before("Tasks"); ferr != nil {
		return nil, ferr
	}
	defer c.after("Tasks", &err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	var out []swarm.Task
	for _, t := range c.tasks {
		if (nodeID == "" || t.NodeID == nodeID) && (serviceID == "" || t.ServiceID == serviceID) {
			out = append(out, t.Task)
		}
	}
	return out, nil
}

// kill stops a node's engine: it shows down at once, unreachable if a manager.
func (c *fakeCluster) kill(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	n := c.findLocked(id)
	n.State = "down"
	if n.raft {
		n.Reachability = "unreachable"
		if n.Leader {
			n.Leader = false
			c.electAt = time.Now().Add(c.electDelay)
		}
	}
}

// revive starts a killed node's engine again.
func (c *fakeCluster) revive(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.findLocked(id)
	n.State = "ready"
	if n.raft {
		n.Reachability = reachable
	}
}

// node returns the node as the managers see it, and whether it exists.
func (c *fakeCluster) node(id string) (swarm.Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	n := c.findLocked(id)
	if n == nil {
		return swarm.Node{}, false
	}
	return n.view(), true
}

func (c *fakeCluster) leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	for _, n := range c.nodes {
		if n.Leader {
			return n.ID
		}
	}
	return ""
}

func (c *fakeCluster) managers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	var out []string
	for _, n := range c.nodes {
		if n.Role == swarm.RoleManager {
			out = append(out, n.ID)
		}
	}
	return out
}

// running counts the service's tasks meant to run and running, except on node not.
func (c *fakeCluster) running(svc, not string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	n := 0
	for _, t := range c.tasks {
		if t.ServiceID == svc && t.NodeID != not && t.DesiredState == "running" && t.State == "running" {
			n++
		}
	}
	return n
}

// onNode counts the tasks running on node or meant to.
func (c *fakeCluster) onNode(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	n := 0
	for _, t := range c.tasks {
		if t.NodeID == id && (t.DesiredState == "running" || t.State == "running") {
			n++
		}
	}
	return n
}

// fakeLocal is one node's own engine in a fakeCluster.
type fakeLocal struct {
	c  *fakeCluster
	id string
}

var _ Local = fakeLocal{}

func (l fakeLocal) Self(context.Context) (_ string, _ bool, err error) {
	if ferr := l.c.before("Self"); ferr != nil {
		return "", false, ferr
	}
	defer l.c.after("Self", &err)
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.c.advanceLocked()
	n := l.c.findLocked(l.id)
	if n == nil || n.left {
		return "", false, nil
	}
	return n.ID, n.raft, nil
}

func (l fakeLocal) Leave(_ context.Context, force bool) (err error) {
	if ferr := l.c.before("Leave"); ferr != nil {
		return ferr
	}
	defer l.c.after("Leave", &err)
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.c.advanceLocked()
	n := l.c.findLocked(l.id)
	switch {
	case n == nil || n.left:
		return errors.New("this node is not part of a swarm")
	case n.raft && !force:
		return errors.New("you are attempting to leave the swarm on a node that is participating as a manager")
	}
	n.left, n.downAt = true, time.Now().Add(l.c.downDelay)
	if n.Leader {
		n.Leader = false
		l.c.electAt = time.Now().Add(l.c.electDelay)
	}
	if n.raft {
		n.Reachability = "unreachable"
	}
	l.c.j.add("leave %s force=%t", l.id, force)
	return nil
}

// fakeHook is Auto Scaling's termination lifecycle hook for one instance. Its action waits
// heartbeatTimeout from its start or last heartbeat and never longer than globalTimeout;
// then, or once completed, the instance proceeds and Heartbeat and Complete answer
// ErrNoAction.
type fakeHook struct {
	faults
	j *journal

	asg, hook        string
	instanceID       string
	heartbeatTimeout time.Duration
	globalTimeout    time.Duration
	noHook           bool
	// onComplete is called after a successful completion, with no lock held.
	onComplete func(result string)

	mu             sync.Mutex
	state          string
	deadline       time.Time
	globalDeadline time.Time
	heartbeats     int
	completions    []string
	expired        bool
}

var _ Hook = (*fakeHook)(nil)

func newFakeHook(j *journal, instanceID string, heartbeatTimeout time.Duration) *fakeHook {
	return &fakeHook{j: j, asg: "asg-1", hook: "drain", instanceID: instanceID, heartbeatTimeout: heartbeatTimeout,
		globalTimeout: min(48*time.Hour, 100*heartbeatTimeout), state: "InService"}
}

// scaleIn puts the instance in Terminating:Wait.
func (h *fakeHook) scaleIn() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	h.state, h.deadline, h.globalDeadline = StateTerminatingWait, now.Add(h.heartbeatTimeout), now.Add(h.globalTimeout)
}

func (h *fakeHook) expireLocked() {
	now := time.Now()
	if h.state == StateTerminatingWait && (!now.Before(h.deadline) || !now.Before(h.globalDeadline)) {
		h.state, h.expired = StateTerminatingProceed, true
		h.j.add("expired %s", h.instanceID)
	}
}

func (h *fakeHook) Action(_ context.Context, instanceID string) (_ HookAction, err error) {
	if ferr := h.before("Action"); ferr != nil {
		return HookAction{}, ferr
	}
	defer h.after("Action", &err)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.noHook || instanceID != h.instanceID {
		return HookAction{}, fmt.Errorf("instance %s is in no auto scaling group: %w", instanceID, ErrNoHook)
	}
	h.expireLocked()
	return HookAction{ASG: h.asg, Hook: h.hook, State: h.state, HeartbeatTimeout: h.heartbeatTimeout,
		GlobalTimeout: h.globalTimeout, DefaultResult: ResultAbandon}, nil
}

func (h *fakeHook) activeLocked(asg, hook, instanceID string) error {
	h.expireLocked()
	if asg != h.asg || hook != h.hook || instanceID != h.instanceID || h.state != StateTerminatingWait {
		return fmt.Errorf("ValidationError: No active Lifecycle Action found with instance ID %s: %w", instanceID, ErrNoAction)
	}
	return nil
}

func (h *fakeHook) Heartbeat(_ context.Context, asg, hook, instanceID string) (err error) {
	if ferr := h.before("Heartbeat"); ferr != nil {
		return ferr
	}
	defer h.after("Heartbeat", &err)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.activeLocked(asg, hook, instanceID); err != nil {
		return err
	}
	h.deadline = time.Now().Add(h.heartbeatTimeout)
	h.heartbeats++
	return nil
}

func (h *fakeHook) Complete(_ context.Context, asg, hook, instanceID, result string) (err error) {
	if ferr := h.before("Complete"); ferr != nil {
		return ferr
	}
	defer h.after("Complete", &err)
	h.mu.Lock()
	if err := h.activeLocked(asg, hook, instanceID); err != nil {
		h.mu.Unlock()
		return err
	}
	h.completions = append(h.completions, result)
	h.state = StateTerminatingProceed
	h.j.add("complete %s %s", instanceID, result)
	h.mu.Unlock()
	if h.onComplete != nil {
		h.onComplete(result)
	}
	return nil
}

func (h *fakeHook) status() (completions []string, heartbeats int, expired bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expireLocked()
	return slices.Clone(h.completions), h.heartbeats, h.expired
}

// fakeRegistrar records deregistrations.
type fakeRegistrar struct {
	faults
	j *journal
}

func (f *fakeRegistrar) Deregister(_ context.Context, m swarm.Member) (err error) {
	if ferr := f.before("Deregister"); ferr != nil {
		return ferr
	}
	defer f.after("Deregister", &err)
	f.j.add("deregister %s %s", m.InstanceID, m.Addr)
	return nil
}
