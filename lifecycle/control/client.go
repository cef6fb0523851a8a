package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// DefaultTimeout bounds one call to one manager.
const DefaultTimeout = 15 * time.Second

// handshakeTimeout bounds connecting to a manager, TLS handshake included.
const handshakeTimeout = 10 * time.Second

// maxAnswer bounds an answer's body (a task list of a large swarm included).
const maxAnswer = 32 << 20

// Client is the managers' control API as a lifecycle.Swarm: what a node, a worker above
// all, uses to drain and remove itself. Managers refuse every change to another node
// (lifecycle.ErrNotAllowed); SetRole is not offered at all, and a node removes itself by force only
// once it has drained and is marked leaving.
//
// Each call tries the managers in the order the managers function gives them until one
// answers; an answer that is a refusal (403, 404, 409, 400) is final, a failure to connect,
// a time-out or a 5xx moves on to the next manager.
type Client struct {
	// Timeout bounds one call to one manager; 0 means DefaultTimeout. Set it before use.
	Timeout time.Duration

	certs    *Certs
	managers func(context.Context) ([]string, error)
	log      zerolog.Logger
	hc       *http.Client
}

var _ lifecycle.Swarm = (*Client)(nil)

// NewClient returns a client that authenticates with the node certificate in certs and
// reaches the managers whose control API addresses (host:port) managers returns.
//
// It reads the certificate now and fails if it cannot; from then on the pair stays in memory:
// a node that has left the swarm (whose engine deleted the files) still presents it, as it
// needs to ask for its own removal. While the files exist, a rotated pair is picked up.
func NewClient(certs *Certs, managers func(context.Context) ([]string, error), log zerolog.Logger) (*Client, error) {
	if managers == nil {
		return nil, errors.New("control client: no managers function")
	}
	if _, err := certs.load(); err != nil {
		return nil, fmt.Errorf("control client: %w", err)
	}
	c := &Client{certs: certs, managers: managers, log: log}
	c.hc = &http.Client{
		Transport: &http.Transport{
			DialTLSContext:      c.dialTLS,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Close drops the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// dialTLS connects to a manager with the certificates of this moment.
func (c *Client) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	m, err := c.certs.load()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: handshakeTimeout}
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, clientConfig(m))
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return conn, nil
}

// Node reads a node.
func (c *Client) Node(ctx context.Context, id string) (swarm.Node, error) {
	if err := checkID("node", id); err != nil {
		return swarm.Node{}, err
	}
	var out swarm.Node
	if err := c.call(ctx, http.MethodGet, "/v1/nodes/"+id, nil, nil, &out); err != nil {
		return swarm.Node{}, fmt.Errorf("inspect node %s: %w", id, err)
	}
	return out, nil
}

// Nodes lists the swarm's nodes.
func (c *Client) Nodes(ctx context.Context) ([]swarm.Node, error) {
	var out nodesJSON
	if err := c.call(ctx, http.MethodGet, "/v1/nodes", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out.Nodes, nil
}

// Tasks lists tasks; nodeID "" means every node, serviceID "" every service.
func (c *Client) Tasks(ctx context.Context, nodeID, serviceID string) ([]swarm.Task, error) {
	q := url.Values{}
	for k, v := range map[string]string{"node": nodeID, "service": serviceID} {
		if v == "" {
			continue
		}
		if err := checkID(k, v); err != nil {
			return nil, err
		}
		q.Set(k, v)
	}
	var out tasksJSON
	if err := c.call(ctx, http.MethodGet, "/v1/tasks", q, nil, &out); err != nil {
		return nil, fmt.Errorf("list tasks (node %q, service %q): %w", nodeID, serviceID, err)
	}
	return out.Tasks, nil
}

// SetAvailability sets a node's availability; managers allow it only on the caller's node.
func (c *Client) SetAvailability(ctx context.Context, nodeID, availability string) error {
	if err := checkID("node", nodeID); err != nil {
		return err
	}
	err := c.call(ctx, http.MethodPost, "/v1/nodes/"+nodeID+"/availability", nil, availabilityBody{Availability: availability}, nil)
	if err != nil {
		return fmt.Errorf("set availability of node %s to %s: %w", nodeID, availability, err)
	}
	return nil
}

// SetNodeLabels merges labels into a node's labels; managers allow it only on the caller's
// node and only for keys under swarm.LabelPrefix.
func (c *Client) SetNodeLabels(ctx context.Context, nodeID string, labels map[string]string) error {
	if err := checkID("node", nodeID); err != nil {
		return err
	}
	if err := c.call(ctx, http.MethodPost, "/v1/nodes/"+nodeID+"/labels", nil, labelsBody{Labels: labels}, nil); err != nil {
		return fmt.Errorf("label node %s: %w", nodeID, err)
	}
	return nil
}

// SetRole is not offered by the control API: a manager demotes itself on its own engine.
func (c *Client) SetRole(_ context.Context, nodeID string, role swarm.Role) error {
	return fmt.Errorf("set role of node %s to %s: the control API offers no role changes: %w", nodeID, role, lifecycle.ErrNotAllowed)
}

// RemoveNode asks a manager to remove a node, which it does only for the caller's own node:
// unforced once the node shows down; forced (at once) only while the node is a worker that
// has drained and is marked leaving (lifecycle.LabelLeaving), which is how a drained node
// that has just left spares the wait for its heartbeat to time out. A refused forced removal
// matches lifecycle.ErrNotAllowed; a manager from before forced removals answers a bad
// request.
func (c *Client) RemoveNode(ctx context.Context, nodeID string, force bool) error {
	if err := checkID("node", nodeID); err != nil {
		return err
	}
	var q url.Values
	what := "remove node " + nodeID
	if force {
		q = url.Values{"force": {"true"}}
		what += " by force"
	}
	if err := c.call(ctx, http.MethodDelete, "/v1/nodes/"+nodeID, q, nil, nil); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func checkID(what, id string) error {
	if !validID(id) {
		return fmt.Errorf("%s id %q: want 1 to 64 letters and digits", what, id)
	}
	return nil
}

// StatusError is a manager's refusal or failure, as it answered. It matches
// lifecycle.ErrNoSuchNode (404 no_such_node) and lifecycle.ErrNotAllowed (403) with
// errors.Is.
type StatusError struct {
	Manager string // host:port
	Status  int
	Code    string
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("manager %s answered %d %s: %s", e.Manager, e.Status, e.Code, e.Message)
}

// Unwrap gives the lifecycle sentinel the answer stands for, if any.
func (e *StatusError) Unwrap() error {
	switch {
	case e.Status == http.StatusNotFound && e.Code == codeNoSuchNode:
		return lifecycle.ErrNoSuchNode
	case e.Status == http.StatusForbidden:
		return lifecycle.ErrNotAllowed
	}
	return nil
}

// final reports whether another manager would answer the same (a refusal), so trying on is
// pointless.
func (e *StatusError) final() bool { return e.Status < 500 }

// call makes one API call, trying the managers in turn.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	addrs, err := c.managers(ctx)
	if err != nil {
		return fmt.Errorf("find the managers' control API: %w", err)
	}
	if len(addrs) == 0 {
		return errors.New("find the managers' control API: no manager address")
	}
	start := time.Now()
	var errs []string
	var last error
	for i, addr := range addrs {
		err := c.try(ctx, addr, method, path, q, body, out)
		if err == nil {
			return nil
		}
		if se, ok := errors.AsType[*StatusError](err); ok && se.final() {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("via %s: %w (and %w)", addr, err, context.Cause(ctx))
		}
		c.log.Debug().Str("manager_addr", addr).Int("attempt", i+1).Err(err).Msg("control API call failed: trying the next manager")
		errs = append(errs, err.Error())
		last = err
	}
	if len(errs) > 1 {
		last = fmt.Errorf("%s; %w", strings.Join(errs[:len(errs)-1], "; "), last)
	}
	return fmt.Errorf("no manager answered (tried %s in %s): %w", strings.Join(addrs, ", "),
		time.Since(start).Round(time.Millisecond), last)
}

// try makes the call to one manager.
func (c *Client) try(ctx context.Context, addr, method, path string, q url.Values, body []byte, out any) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := url.URL{Scheme: "https", Host: addr, Path: path, RawQuery: q.Encode()}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("manager %s: %w", addr, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("manager %s: %w", addr, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("manager %s: read answer: %w", addr, err)
	}
	if len(data) > maxAnswer {
		return fmt.Errorf("manager %s: answer over %d bytes", addr, maxAnswer)
	}
	if resp.StatusCode >= 300 {
		se := &StatusError{Manager: addr, Status: resp.StatusCode}
		var eb errorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			se.Code, se.Message = eb.Code, eb.Error
		} else {
			se.Message = strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
		return se
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("manager %s: decode answer: %w", addr, err)
	}
	return nil
}

// unwrapURLError drops net/http's "Get \"https://...\":" prefix, which repeats what the
// caller's message says.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}
