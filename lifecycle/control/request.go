package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Limits of requests.
const (
	// maxBody bounds a request body.
	maxBody = 64 << 10
	// maxLabels bounds the labels of one request; maxLabelKey and maxLabelValue their size.
	maxLabels     = 32
	maxLabelKey   = 128
	maxLabelValue = 1024
)

// op is what a request asks for.
type op string

const (
	opNode         op = "read-node"
	opNodes        op = "list-nodes"
	opTasks        op = "list-tasks"
	opAvailability op = "set-availability"
	opLabels       op = "set-labels"
	opRemove       op = "remove-node"
	// opForceRemove is a node removing its own node object by force once it has left the
	// swarm, so that the managers need not wait for its heartbeat to time out.
	opForceRemove op = "force-remove-node"
)

// writes reports whether o changes a node (and so is allowed only on the caller's own).
func (o op) writes() bool {
	return o == opAvailability || o == opLabels || o == opRemove || o == opForceRemove
}

// request is a parsed control API request.
type request struct {
	op           op
	nodeID       string // the node in the path; for opTasks the node filter ("" all)
	serviceID    string // opTasks: the service filter ("" all)
	availability string
	labels       map[string]string
}

// Error codes in error responses, next to the HTTP status.
const (
	codeBadRequest = "bad_request"
	codeNotFound   = "not_found"    // no such endpoint
	codeNoSuchNode = "no_such_node" // lifecycle.ErrNoSuchNode
	codeNotAllowed = "not_allowed"  // lifecycle.ErrNotAllowed
	codeMethod     = "method_not_allowed"
	codeTooLarge   = "too_large"
	codeNotDown    = "not_down"
	codeSwarm      = "swarm_error" // the manager's engine failed
	codeTimeout    = "timeout"
)

// errorBody is every error response's body.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// apiError is a refused request: its status, code and message.
type apiError struct {
	status int
	code   string
	msg    string
	allow  string // codeMethod: the Allow header
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: codeBadRequest, msg: fmt.Sprintf(format, args...)}
}

func notAllowed(format string, args ...any) *apiError {
	return &apiError{status: http.StatusForbidden, code: codeNotAllowed, msg: fmt.Sprintf(format, args...)}
}

func notFound(path string) *apiError {
	return &apiError{status: http.StatusNotFound, code: codeNotFound, msg: fmt.Sprintf("no endpoint %q", path)}
}

func methodNotAllowed(method, path string, allow ...string) *apiError {
	return &apiError{status: http.StatusMethodNotAllowed, code: codeMethod, allow: strings.Join(allow, ", "),
		msg: fmt.Sprintf("%s %s: allowed: %s", method, path, strings.Join(allow, ", "))}
}

// Wire forms of requests and answers.
type (
	availabilityBody struct {
		Availability string `json:"availability"`
	}
	labelsBody struct {
		Labels map[string]string `json:"labels"`
	}
	nodesJSON struct {
		Nodes []swarm.Node `json:"nodes"`
	}
	tasksJSON struct {
		Tasks []swarm.Task `json:"tasks"`
	}
)

// parseRequest reads a request from its method, escaped path, raw query and body. It is
// strict: a path is made of ids that need no escaping, unknown query keys and JSON fields are
// refused, bodies must be one JSON object, values are checked. It never panics.
func parseRequest(method, path, rawQuery string, body []byte) (request, *apiError) {
	if len(body) > maxBody {
		return request{}, &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge,
			msg: fmt.Sprintf("request body of %d bytes: at most %d", len(body), maxBody)}
	}
	rest, ok := strings.CutPrefix(path, "/v1/")
	if !ok {
		return request{}, notFound(path)
	}
	seg := strings.Split(rest, "/")
	var req request
	var aerr *apiError
	switch {
	case len(seg) == 1 && seg[0] == "nodes":
		if method != http.MethodGet {
			return request{}, methodNotAllowed(method, path, http.MethodGet)
		}
		req.op = opNodes
	case len(seg) == 1 && seg[0] == "tasks":
		if method != http.MethodGet {
			return request{}, methodNotAllowed(method, path, http.MethodGet)
		}
		req.op = opTasks
	case len(seg) == 2 && seg[0] == "nodes":
		if !validID(seg[1]) {
			return request{}, badRequest("node id %q: want 1 to 64 letters and digits", seg[1])
		}
		req.nodeID = seg[1]
		switch method {
		case http.MethodGet:
			req.op = opNode
		case http.MethodDelete:
			req.op = opRemove
		default:
			return request{}, methodNotAllowed(method, path, http.MethodGet, http.MethodDelete)
		}
	case len(seg) == 3 && seg[0] == "nodes" && seg[2] == "role":
		return request{}, notAllowed("role changes are not offered by the control API")
	case len(seg) == 3 && seg[0] == "nodes" && (seg[2] == "availability" || seg[2] == "labels"):
		if !validID(seg[1]) {
			return request{}, badRequest("node id %q: want 1 to 64 letters and digits", seg[1])
		}
		if method != http.MethodPost {
			return request{}, methodNotAllowed(method, path, http.MethodPost)
		}
		req.nodeID = seg[1]
		if seg[2] == "availability" {
			req.op = opAvailability
		} else {
			req.op = opLabels
		}
	default:
		return request{}, notFound(path)
	}
	// A refused request keeps its operation, for the log; nothing else of it.
	if aerr = parseQuery(&req, rawQuery); aerr != nil {
		return request{op: req.op}, aerr
	}
	if aerr = parseBody(&req, body); aerr != nil {
		return request{op: req.op}, aerr
	}
	return req, nil
}

// parseQuery reads the query: list-tasks takes node and service, remove-node takes
// force=true (which makes it force-remove-node); each at most once.
func parseQuery(req *request, rawQuery string) *apiError {
	if rawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return badRequest("query: %v", err)
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return badRequest("query parameter %q: given %d times, at most once", k, len(vs))
		}
		if req.op == opRemove && k == "force" {
			if vs[0] != "true" {
				return badRequest("query parameter force=%q: want true, or no force parameter", vs[0])
			}
			req.op = opForceRemove
			continue
		}
		if req.op != opTasks || (k != "node" && k != "service") {
			return badRequest("query parameter %q: not accepted here", k)
		}
		if vs[0] != "" && !validID(vs[0]) {
			return badRequest("query parameter %s=%q: want 1 to 64 letters and digits", k, vs[0])
		}
		if k == "node" {
			req.nodeID = vs[0]
		} else {
			req.serviceID = vs[0]
		}
	}
	return nil
}

// parseBody reads the body: availability and labels take one JSON object, the rest none.
func parseBody(req *request, body []byte) *apiError {
	switch req.op {
	case opAvailability:
		var b availabilityBody
		if err := decodeStrict(body, &b); err != nil {
			return badRequest("availability request: %v", err)
		}
		switch b.Availability {
		case "drain":
		case "active":
			// Allowed only to undo the node's own maintenance drain (it carries
			// swarm.LabelMaintenance): the server checks the node before it acts. Any other
			// drain is the operator's to undo (docker node update).
		case "pause":
			return notAllowed("availability %q: a node may only drain itself (and make itself active again after its own maintenance drain); pausing a node is for an operator", b.Availability)
		default:
			return badRequest("availability %q: must be drain or active", b.Availability)
		}
		req.availability = b.Availability
	case opLabels:
		var b labelsBody
		if err := decodeStrict(body, &b); err != nil {
			return badRequest("labels request: %v", err)
		}
		if aerr := checkLabels(b.Labels); aerr != nil {
			return aerr
		}
		req.labels = b.Labels
	default:
		if len(bytes.TrimSpace(body)) > 0 {
			return badRequest("%s takes no request body", req.op)
		}
	}
	return nil
}

// decodeStrict decodes exactly one JSON object with no unknown fields into v.
func decodeStrict(body []byte, v any) error {
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' {
		return errors.New("body must be one JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("body must be one JSON object, with nothing after it")
	}
	return nil
}

// checkLabels checks labels a node sets on itself: at least one, within the limits, keys
// under swarm.LabelPrefix, printable text. Node labels steer placement constraints, so a node
// must not be able to attract services by labelling itself: the agent's own namespace is the
// only one it may write.
func checkLabels(labels map[string]string) *apiError {
	if len(labels) == 0 {
		return badRequest("labels: none given")
	}
	if len(labels) > maxLabels {
		return badRequest("labels: %d given, at most %d", len(labels), maxLabels)
	}
	for k, v := range labels {
		if len(k) > maxLabelKey || !printable(k) || strings.ContainsRune(k, ' ') {
			return badRequest("label key %q: want at most %d printable characters without spaces", k, maxLabelKey)
		}
		if !strings.HasPrefix(k, swarm.LabelPrefix) || len(k) == len(swarm.LabelPrefix) {
			return notAllowed("label key %q: a node may set only labels under %s on itself", k, swarm.LabelPrefix)
		}
		if k == swarm.LabelImpaired {
			return notAllowed("label key %q: only the leader marks a node impaired", k)
		}
		if len(v) > maxLabelValue || !printable(v) {
			return badRequest("label %s value %q: want at most %d printable characters", k, v, maxLabelValue)
		}
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// authorize decides whether caller may make req: anyone of the swarm may read, only the node
// itself may change or remove its node.
func authorize(req request, caller Identity) *apiError {
	if !req.op.writes() {
		return nil
	}
	if caller.NodeID == "" || req.nodeID != caller.NodeID {
		return notAllowed("node %s may %s only on its own node, not on %s", caller.NodeID, req.op, req.nodeID)
	}
	return nil
}
