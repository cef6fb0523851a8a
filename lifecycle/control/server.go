package control

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// Bounds of the server.
const (
	// requestTimeout bounds the swarm calls of one request.
	requestTimeout = 30 * time.Second
	// shutdownGrace is how long requests in flight may finish once Serve's context ends.
	shutdownGrace = 10 * time.Second
)

// Server serves the control API of a manager.
//
// Endpoints (JSON; errors are {"error": "...", "code": "..."} with the HTTP status):
//
//	GET    /v1/nodes                      every node               any member of the swarm
//	GET    /v1/nodes/{id}                 one node                 any member of the swarm
//	GET    /v1/tasks?node={id}&service={id}  tasks (filters optional) any member of the swarm
//	POST   /v1/nodes/{id}/availability    {"availability": "drain"}; "active" only while
//	                                      marked swarm-agent.maintenance (its own drain) node {id} only
//	POST   /v1/nodes/{id}/labels          {"labels": {"swarm-agent.x": "v"}} (merged; not
//	                                      swarm-agent.impaired; swarm-agent.maintenance only
//	                                      while active or marked)      node {id} only
//	DELETE /v1/nodes/{id}                 remove; only once the node is down           node {id} only
//	DELETE /v1/nodes/{id}?force=true      remove at once; only a worker that drained and
//	                                      marked itself leaving (it has left or is leaving) node {id} only
//
// Role changes are not offered (403). The caller is the CN of its verified client
// certificate; it must belong to this manager's cluster (O).
type Server struct {
	// Swarm is the manager's own engine.
	Swarm lifecycle.Swarm
	// Certs is the manager's certificate directory.
	Certs *Certs
	Log   zerolog.Logger
}

// Serve serves the control API on ln until ctx ends, then lets requests in flight finish for
// a few seconds, stops them, and returns nil once every goroutine it started has returned.
// It fails at once, closing ln, when this node's certificates cannot be read or are not a
// manager's.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	addr := ln.Addr().String()
	if s.Swarm == nil || s.Certs == nil {
		ln.Close()
		return errors.New("control API: Server needs a Swarm and Certs")
	}
	id, err := s.Certs.Identity()
	if err != nil {
		ln.Close()
		return fmt.Errorf("control API on %s: %w", addr, err)
	}
	if id.Role != swarm.RoleManager {
		ln.Close()
		return fmt.Errorf("control API on %s: the certificate of node %s is a %s's: only managers serve the control API", addr, id.NodeID, OUWorker)
	}
	logger := s.Log.With().Str("manager_addr", addr).Logger()

	// Requests run on a context that survives ctx (so that Shutdown lets them finish) and is
	// cancelled once the grace period is over.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	var tr tracker
	h := &handler{swarm: s.Swarm, certs: s.Certs, log: logger}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !tr.enter() {
				writeError(w, &apiError{status: http.StatusServiceUnavailable, code: codeSwarm, msg: "control API is shutting down"})
				return
			}
			defer tr.leave()
			h.ServeHTTP(w, r)
		}),
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      requestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(errorLog{logger}, "", 0),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(ln, s.Certs.serverConfig())) }()
	logger.Info().Str("node_id", id.NodeID).Str("cluster_id", id.ClusterID).Msg("control API serving")

	select {
	case err := <-done:
		srv.Close()
		cancelBase()
		tr.closeAndWait()
		return fmt.Errorf("control API on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn().Err(err).Msg("control API: requests still running after the grace period: stopping them")
		srv.Close()
	}
	cancelBase()
	<-done
	tr.closeAndWait()
	logger.Info().Msg("control API stopped")
	return nil
}

// tracker counts running handlers so that Serve can wait for them.
type tracker struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *tracker) leave() { t.wg.Done() }

func (t *tracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}

// errorLog sends net/http's own messages (refused TLS handshakes among them) to zerolog.
type errorLog struct{ log zerolog.Logger }

func (e errorLog) Write(p []byte) (int, error) {
	e.log.Warn().Str("reason", strings.TrimSpace(string(p))).Msg("control API connection failed")
	return len(p), nil
}

// handler serves the API's requests.
type handler struct {
	swarm lifecycle.Swarm
	certs *Certs
	log   zerolog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	path := r.URL.EscapedPath()
	caller, aerr := h.caller(r)
	var req request
	if aerr == nil {
		req, aerr = readRequest(w, r)
	}
	if aerr == nil {
		aerr = authorize(req, caller)
	}
	status, out := http.StatusNoContent, any(nil)
	if aerr == nil {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		status, out, aerr = h.do(ctx, req)
		cancel()
	}
	if aerr != nil {
		status = aerr.status
		writeError(w, aerr)
	} else {
		writeJSON(w, status, out)
	}

	ev := h.log.Debug()
	switch {
	case status >= 500 || status == http.StatusForbidden:
		ev = h.log.Warn()
	case req.op.writes():
		ev = h.log.Info()
	}
	if aerr != nil {
		ev = ev.Str("error", aerr.msg)
	}
	ev.Str("node_id", caller.NodeID).Str("action", string(req.op)).Str("path", path).
		Int("status_code", status).Dur("elapsed", time.Since(start)).Msg("control API request")
}

// caller is the identity of the request's verified client certificate, which must belong to
// this manager's cluster (the handshake checked it too, against the files of that moment).
func (h *handler) caller(r *http.Request) (Identity, *apiError) {
	if r.TLS == nil {
		return Identity{}, notAllowed("no TLS client certificate")
	}
	id, err := peerIdentity(*r.TLS)
	if err != nil {
		return Identity{}, notAllowed("client certificate: %v", err)
	}
	self, err := h.certs.Identity()
	if err != nil {
		return id, &apiError{status: http.StatusServiceUnavailable, code: codeSwarm, msg: err.Error()}
	}
	if id.ClusterID != self.ClusterID {
		return id, notAllowed("node %s belongs to cluster %s, not %s", id.NodeID, id.ClusterID, self.ClusterID)
	}
	return id, nil
}

// readRequest reads the body (at most maxBody) and parses the request.
func readRequest(w http.ResponseWriter, r *http.Request) (request, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return request{}, &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge,
				msg: fmt.Sprintf("request body over %d bytes", maxBody)}
		}
		return request{}, badRequest("read request body: %v", err)
	}
	return parseRequest(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, body)
}

// do carries out an authorized request on the swarm.
func (h *handler) do(ctx context.Context, req request) (int, any, *apiError) {
	switch req.op {
	case opNode:
		n, err := h.swarm.Node(ctx, req.nodeID)
		if err != nil {
			return 0, nil, swarmError(err)
		}
		return http.StatusOK, n, nil
	case opNodes:
		ns, err := h.swarm.Nodes(ctx)
		if err != nil {
			return 0, nil, swarmError(err)
		}
		if ns == nil {
			ns = []swarm.Node{} // [] on the wire, not null
		}
		return http.StatusOK, nodesJSON{Nodes: ns}, nil
	case opTasks:
		ts, err := h.swarm.Tasks(ctx, req.nodeID, req.serviceID)
		if err != nil {
			return 0, nil, swarmError(err)
		}
		if ts == nil {
			ts = []swarm.Task{} // [] on the wire, not null
		}
		return http.StatusOK, tasksJSON{Tasks: ts}, nil
	case opAvailability:
		if req.availability == "active" {
			n, err := h.swarm.Node(ctx, req.nodeID)
			if err != nil {
				return 0, nil, swarmError(err)
			}
			if aerr := mayActivate(n); aerr != nil {
				return 0, nil, aerr
			}
		}
		if err := h.swarm.SetAvailability(ctx, req.nodeID, req.availability); err != nil {
			return 0, nil, swarmError(err)
		}
		return http.StatusNoContent, nil, nil
	case opLabels:
		if req.labels[swarm.LabelMaintenance] != "" {
			n, err := h.swarm.Node(ctx, req.nodeID)
			if err != nil {
				return 0, nil, swarmError(err)
			}
			if aerr := mayMarkMaintenance(n); aerr != nil {
				return 0, nil, aerr
			}
		}
		if err := h.swarm.SetNodeLabels(ctx, req.nodeID, req.labels); err != nil {
			return 0, nil, swarmError(err)
		}
		return http.StatusNoContent, nil, nil
	case opRemove:
		// Never forced: the node must have left and show down, as an unforced removal by
		// Docker requires too; this says so plainly instead of relaying the engine's error.
		n, err := h.swarm.Node(ctx, req.nodeID)
		if err != nil {
			return 0, nil, swarmError(err)
		}
		if n.State != "down" {
			return 0, nil, &apiError{status: http.StatusConflict, code: codeNotDown,
				msg: fmt.Sprintf("node %s is %s, not down: it must leave the swarm before it is removed", n.ID, n.State)}
		}
		if err := h.swarm.RemoveNode(ctx, req.nodeID, false); err != nil {
			return 0, nil, swarmError(err)
		}
		return http.StatusNoContent, nil, nil
	case opForceRemove:
		n, err := h.swarm.Node(ctx, req.nodeID)
		if err != nil {
			return 0, nil, swarmError(err)
		}
		if aerr := mayForceRemove(n); aerr != nil {
			return 0, nil, aerr
		}
		if err := h.swarm.RemoveNode(ctx, req.nodeID, true); err != nil {
			return 0, nil, swarmError(err)
		}
		return http.StatusNoContent, nil, nil
	}
	return 0, nil, &apiError{status: http.StatusInternalServerError, code: codeSwarm, msg: "unknown operation " + string(req.op)}
}
