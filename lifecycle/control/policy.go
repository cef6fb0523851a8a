package control

// What a caller may do to a node, and how refusals are written.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// mayForceRemove decides whether a node (authorized as the caller's own) may be removed by
// force, before the managers see it down: only a worker (a manager is demoted first, as Docker
// requires) that is down already or has drained and marked itself leaving, which its own
// drain does before it leaves the swarm. So the removal spares the wait for the node's
// heartbeat to time out, and nothing else: a node that is not on its way out cannot cut
// itself off by mistake. Removing a node orphans its remaining tasks (the orchestrator
// replaces them elsewhere) and denylists its certificate; its engine, having left, joins
// again as a new node.
func mayForceRemove(n swarm.Node) *apiError {
	if n.Role != swarm.RoleWorker || n.Reachability != "" {
		return notAllowed("node %s is a manager: it must be demoted before it is removed", n.ID)
	}
	if n.State == "down" {
		return nil
	}
	if n.Labels[swarm.LabelLeaving] == "" || n.Availability != "drain" {
		return notAllowed("node %s is %s, availability %s, label %s=%q: a node may remove itself by force only once it has drained and marked itself leaving",
			n.ID, n.State, n.Availability, swarm.LabelLeaving, n.Labels[swarm.LabelLeaving])
	}
	return nil
}

// mayActivate decides whether a node (authorized as the caller's own) may make itself
// active: only to undo its own maintenance drain, which it marked (swarm.LabelMaintenance)
// while it was active, before an EC2 reboot event of its instance. A drain it did not mark
// is an operator's (or the leader's), and stays.
func mayActivate(n swarm.Node) *apiError {
	if n.Labels[swarm.LabelMaintenance] == "" {
		return notAllowed("node %s is %s without %s: a node may make itself active only after its own maintenance drain; undoing another drain is for an operator",
			n.ID, n.Availability, swarm.LabelMaintenance)
	}
	return nil
}

// mayMarkMaintenance decides whether a node may mark itself for a maintenance drain: only
// while it is active (or marked already), so that the mark, which later lets it make itself
// active again, can never be put on a drain that someone else made.
func mayMarkMaintenance(n swarm.Node) *apiError {
	if n.Availability != "active" && n.Labels[swarm.LabelMaintenance] == "" {
		return notAllowed("node %s is %s: a node may mark itself %s only while it is active, before its own maintenance drain",
			n.ID, n.Availability, swarm.LabelMaintenance)
	}
	return nil
}

// swarmError maps an error of the manager's engine to an answer.
func swarmError(err error) *apiError {
	switch {
	case errors.Is(err, lifecycle.ErrNoSuchNode):
		return &apiError{status: http.StatusNotFound, code: codeNoSuchNode, msg: err.Error()}
	case errors.Is(err, lifecycle.ErrNotAllowed):
		return &apiError{status: http.StatusForbidden, code: codeNotAllowed, msg: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusGatewayTimeout, code: codeTimeout, msg: err.Error()}
	}
	return &apiError{status: http.StatusBadGateway, code: codeSwarm, msg: err.Error()}
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.allow != "" {
		w.Header().Set("Allow", e.allow)
	}
	writeJSON(w, e.status, errorBody{Error: e.msg, Code: e.code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusNoContent || v == nil {
		w.WriteHeader(status)
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data, _ = json.Marshal(errorBody{Error: "encode answer: " + err.Error(), Code: codeSwarm})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}
