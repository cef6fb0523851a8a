package control

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestParseRequest(t *testing.T) {
	big := `{"labels":{"swarm-agent.x":"` + strings.Repeat("a", maxBody) + `"}}`
	tests := []struct {
		name                string
		method, path, query string
		body                string
		want                request
		status              int    // 0: accepted
		code                string // of the refusal
	}{
		{name: "list nodes", method: "GET", path: "/v1/nodes", want: request{op: opNodes}},
		{name: "read node", method: "GET", path: "/v1/nodes/" + worker1, want: request{op: opNode, nodeID: worker1}},
		{name: "tasks", method: "GET", path: "/v1/tasks", want: request{op: opTasks}},
		{name: "tasks of a node and service", method: "GET", path: "/v1/tasks", query: "node=" + worker1 + "&service=svc1",
			want: request{op: opTasks, nodeID: worker1, serviceID: "svc1"}},
		{name: "tasks with empty filter", method: "GET", path: "/v1/tasks", query: "node=", want: request{op: opTasks}},
		{name: "drain", method: "POST", path: "/v1/nodes/" + worker1 + "/availability", body: `{"availability":"drain"}`,
			want: request{op: opAvailability, nodeID: worker1, availability: "drain"}},
		{name: "drain, spaces around", method: "POST", path: "/v1/nodes/" + worker1 + "/availability", body: ` {"availability":"drain"} `,
			want: request{op: opAvailability, nodeID: worker1, availability: "drain"}},
		{name: "active: the server checks the node's own maintenance mark", method: "POST", path: "/v1/nodes/" + worker1 + "/availability", body: `{"availability":"active"}`,
			want: request{op: opAvailability, nodeID: worker1, availability: "active"}},
		{name: "the leader's impaired mark", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", body: `{"labels":{"swarm-agent.impaired":""}}`, status: 403, code: codeNotAllowed},
		{name: "pause", method: "POST", path: "/v1/nodes/" + worker1 + "/availability", body: `{"availability":"pause"}`, status: 403, code: codeNotAllowed},
		{name: "labels", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", body: `{"labels":{"swarm-agent.leaving":"2026-03-01T10:00:00Z"}}`,
			want: request{op: opLabels, nodeID: worker1, labels: map[string]string{"swarm-agent.leaving": "2026-03-01T10:00:00Z"}}},
		{name: "remove", method: "DELETE", path: "/v1/nodes/" + worker1, want: request{op: opRemove, nodeID: worker1}},
		{name: "remove by force", method: "DELETE", path: "/v1/nodes/" + worker1, query: "force=true", want: request{op: opForceRemove, nodeID: worker1}},

		{name: "no version", method: "GET", path: "/nodes", status: 404, code: codeNotFound},
		{name: "unknown endpoint", method: "GET", path: "/v1/services", status: 404, code: codeNotFound},
		{name: "too deep", method: "GET", path: "/v1/nodes/" + worker1 + "/labels/x", status: 404, code: codeNotFound},
		{name: "role change", method: "POST", path: "/v1/nodes/" + worker1 + "/role", body: `{"role":"manager"}`, status: 403, code: codeNotAllowed},
		{name: "post to nodes", method: "POST", path: "/v1/nodes", status: 405, code: codeMethod},
		{name: "put node", method: "PUT", path: "/v1/nodes/" + worker1, status: 405, code: codeMethod},
		{name: "get availability", method: "GET", path: "/v1/nodes/" + worker1 + "/availability", status: 405, code: codeMethod},
		{name: "escaped slash in id", method: "DELETE", path: "/v1/nodes/" + worker1 + "%2F" + worker2, status: 400, code: codeBadRequest},
		{name: "dot dot", method: "DELETE", path: "/v1/nodes/../nodes/" + worker2, status: 404, code: codeNotFound},
		{name: "dot dot id", method: "DELETE", path: "/v1/nodes/..", status: 400, code: codeBadRequest},
		{name: "empty id", method: "DELETE", path: "/v1/nodes/", status: 400, code: codeBadRequest},
		{name: "long id", method: "GET", path: "/v1/nodes/" + strings.Repeat("a", 65), status: 400, code: codeBadRequest},
		{name: "query on node", method: "GET", path: "/v1/nodes/" + worker1, query: "force=true", status: 400, code: codeBadRequest},
		{name: "force not true", method: "DELETE", path: "/v1/nodes/" + worker1, query: "force=1", status: 400, code: codeBadRequest},
		{name: "force twice", method: "DELETE", path: "/v1/nodes/" + worker1, query: "force=true&force=true", status: 400, code: codeBadRequest},
		{name: "force and more", method: "DELETE", path: "/v1/nodes/" + worker1, query: "force=true&node=" + worker2, status: 400, code: codeBadRequest},
		{name: "force on labels", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", query: "force=true", body: `{"labels":{"swarm-agent.a":"b"}}`, status: 400, code: codeBadRequest},
		{name: "unknown task filter", method: "GET", path: "/v1/tasks", query: "desired=running", status: 400, code: codeBadRequest},
		{name: "repeated task filter", method: "GET", path: "/v1/tasks", query: "node=a&node=b", status: 400, code: codeBadRequest},
		{name: "bad task filter", method: "GET", path: "/v1/tasks", query: "node=a%20b", status: 400, code: codeBadRequest},
		{name: "bad query", method: "GET", path: "/v1/tasks", query: "node=%zz", status: 400, code: codeBadRequest},
		{name: "body on delete", method: "DELETE", path: "/v1/nodes/" + worker1, body: `{"force":true}`, status: 400, code: codeBadRequest},
		{name: "unknown availability", method: "POST", path: "/v1/nodes/" + worker1 + "/availability", body: `{"availability":"gone"}`, status: 400, code: codeBadRequest},
		{name: "empty availability", method: "POST", path: "/v1/nodes/" + worker1 + "/availability", body: `{}`, status: 400, code: codeBadRequest},
		{name: "unknown field", method: "POST", path: "/v1/nodes/" + worker1 + "/availability", body: `{"availability":"drain","force":true}`, status: 400, code: codeBadRequest},
		{name: "two objects", method: "POST", path: "/v1/nodes/" + worker1 + "/availability", body: `{"availability":"drain"}{}`, status: 400, code: codeBadRequest},
		{name: "array body", method: "POST", path: "/v1/nodes/" + worker1 + "/availability", body: `["drain"]`, status: 400, code: codeBadRequest},
		{name: "no body", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", status: 400, code: codeBadRequest},
		{name: "no labels", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", body: `{"labels":{}}`, status: 400, code: codeBadRequest},
		{name: "label outside the prefix", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", body: `{"labels":{"secure":"true"}}`, status: 403, code: codeNotAllowed},
		{name: "bare prefix", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", body: `{"labels":{"swarm-agent.":"x"}}`, status: 403, code: codeNotAllowed},
		{name: "label with newline", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", body: `{"labels":{"swarm-agent.x":"a\nb"}}`, status: 400, code: codeBadRequest},
		{name: "label value not text", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", body: `{"labels":{"swarm-agent.x":1}}`, status: 400, code: codeBadRequest},
		{name: "body too large", method: "POST", path: "/v1/nodes/" + worker1 + "/labels", body: big, status: 413, code: codeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRequest(tt.method, tt.path, tt.query, []byte(tt.body))
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("parseRequest: %d %s %q, want accepted", err.status, err.code, err.msg)
				}
				if got.op != tt.want.op || got.nodeID != tt.want.nodeID || got.serviceID != tt.want.serviceID ||
					got.availability != tt.want.availability || !maps.Equal(got.labels, tt.want.labels) {
					t.Errorf("parseRequest\n got %+v\nwant %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseRequest accepted %+v, want %d %s", got, tt.status, tt.code)
			}
			if err.status != tt.status || err.code != tt.code || err.msg == "" {
				t.Errorf("parseRequest refused with %d %s %q, want %d %s", err.status, err.code, err.msg, tt.status, tt.code)
			}
			if tt.status == http.StatusMethodNotAllowed && err.allow == "" {
				t.Error("405 without Allow")
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	self := Identity{NodeID: worker1, Role: swarm.RoleWorker, ClusterID: clusterA}
	for _, tt := range []struct {
		req request
		ok  bool
	}{
		{request{op: opNode, nodeID: worker2}, true},
		{request{op: opNodes}, true},
		{request{op: opTasks, nodeID: worker2}, true},
		{request{op: opAvailability, nodeID: worker1, availability: "drain"}, true},
		{request{op: opLabels, nodeID: worker1}, true},
		{request{op: opRemove, nodeID: worker1}, true},
		{request{op: opAvailability, nodeID: worker2, availability: "drain"}, false},
		{request{op: opLabels, nodeID: worker2}, false},
		{request{op: opRemove, nodeID: worker2}, false},
		{request{op: opRemove, nodeID: ""}, false},
		{request{op: opForceRemove, nodeID: worker1}, true},
		{request{op: opForceRemove, nodeID: worker2}, false},
		{request{op: opForceRemove, nodeID: ""}, false},
	} {
		t.Run(fmt.Sprintf("%s %s", tt.req.op, tt.req.nodeID), func(t *testing.T) {
			err := authorize(tt.req, self)
			if (err == nil) != tt.ok {
				t.Fatalf("authorize = %v, want allowed %v", err, tt.ok)
			}
			if err != nil && (err.status != http.StatusForbidden || err.code != codeNotAllowed) {
				t.Errorf("refusal %d %s, want 403 %s", err.status, err.code, codeNotAllowed)
			}
		})
	}
	for _, o := range []op{opRemove, opForceRemove} {
		if err := authorize(request{op: o}, Identity{}); err == nil {
			t.Errorf("a caller without a node id may %s the node with an empty id", o)
		}
	}
}

// FuzzParseRequest checks that parsing never panics, that what it accepts is well formed,
// and that a write is never allowed on a node other than the caller's, whatever the path.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []struct{ method, path, query, body, caller string }{
		{"GET", "/v1/nodes", "", "", worker1},
		{"GET", "/v1/nodes/" + worker2, "", "", worker1},
		{"GET", "/v1/tasks", "node=" + worker1 + "&service=s", "", worker1},
		{"POST", "/v1/nodes/" + worker1 + "/availability", "", `{"availability":"drain"}`, worker1},
		{"POST", "/v1/nodes/" + worker2 + "/availability", "", `{"availability":"drain"}`, worker1},
		{"POST", "/v1/nodes/" + worker1 + "/labels", "", `{"labels":{"swarm-agent.leaving":"x"}}`, worker1},
		{"POST", "/v1/nodes/" + worker1 + "%2F" + worker2 + "/labels", "", `{"labels":{"swarm-agent.a":"b"}}`, worker1},
		{"DELETE", "/v1/nodes/" + worker1, "", "", worker1},
		{"DELETE", "/v1/nodes/" + worker2, "force=1", "", worker1},
		{"DELETE", "/v1/nodes/" + worker2, "force=true", "", worker1},
		{"DELETE", "/v1/nodes/" + worker1, "force=true", "", worker1},
		{"DELETE", "/v1/nodes/../" + worker2, "", "", worker1},
		{"POST", "/v1/nodes/" + worker1 + "/role", "", `{"role":"manager"}`, worker1},
		{"GET", "/v1//nodes", "", "", ""},
	} {
		f.Add(s.method, s.path, s.query, []byte(s.body), s.caller)
	}
	f.Fuzz(func(t *testing.T, method, path, query string, body []byte, callerID string) {
		req, err := parseRequest(method, path, query, body)
		if err != nil {
			if err.status < 400 || err.status > 499 || err.code == "" || err.msg == "" {
				t.Fatalf("refusal %+v: want a 4xx with code and message", err)
			}
			return
		}
		if !req.op.writes() {
			if method != http.MethodGet {
				t.Fatalf("%s %s accepted as read %s", method, path, req.op)
			}
			return
		}
		// A write names exactly one node, in the path, verbatim.
		if !validID(req.nodeID) {
			t.Fatalf("write %s on node id %q", req.op, req.nodeID)
		}
		seg := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
		if len(seg) < 2 || seg[0] != "nodes" || seg[1] != req.nodeID {
			t.Fatalf("write %s on node %q from path %q", req.op, req.nodeID, path)
		}
		switch req.op {
		case opAvailability:
			if req.availability != "active" && req.availability != "pause" && req.availability != "drain" {
				t.Fatalf("availability %q accepted", req.availability)
			}
		case opLabels:
			if len(req.labels) == 0 {
				t.Fatal("no labels accepted")
			}
			for k := range req.labels {
				if !strings.HasPrefix(k, swarm.LabelPrefix) {
					t.Fatalf("label %q accepted", k)
				}
			}
		}
		caller := Identity{NodeID: callerID, Role: swarm.RoleWorker, ClusterID: clusterA}
		if authorize(req, caller) == nil && req.nodeID != callerID {
			t.Fatalf("node %q allowed to %s node %q (path %q)", callerID, req.op, req.nodeID, path)
		}
	})
}
