package engine

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/moby/moby/client"
)

// ErrorObserver is told about every failed call to the engine: op names the call with ids
// left out ("POST /nodes/{id}/update"), kind is "unreachable" (the connection failed),
// "4xx" or "5xx" (the engine refused or failed; 404 and 304 are answers, not errors).
type ErrorObserver func(op, kind string)

// Option configures New.
type Option func(*options)

type options struct{ observe ErrorObserver }

// WithErrorObserver has f told about the engine's failed calls (for metrics).
func WithErrorObserver(f ErrorObserver) Option { return func(o *options) { o.observe = f } }

// observerOpts returns the client options that report failed calls of the client of host
// (as the client resolved it) to f.
func observerOpts(host string, f ErrorObserver) ([]client.Opt, error) {
	u, err := client.ParseHostURL(host)
	if err != nil {
		return nil, err
	}
	network, addr := u.Scheme, u.Host // unix: Host is the socket's path
	var d net.Dialer
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			f("dial", "unreachable")
		}
		return c, err
	}
	hook := func(resp *http.Response) {
		s := resp.StatusCode
		if s < 400 || s == http.StatusNotFound {
			return
		}
		kind := "4xx"
		if s >= 500 {
			kind = "5xx"
		}
		f(opOf(resp.Request), kind)
	}
	opts := []client.Opt{client.WithHTTPResponseHook(hook)}
	if network == "unix" || network == "tcp" {
		opts = append(opts, client.WithDialContext(dial))
	}
	return opts, nil
}

// apiWords are the path segments an op keeps; anything else is an id or a name.
var apiWords = map[string]bool{
	"_ping": true, "info": true, "version": true, "nodes": true, "tasks": true, "services": true,
	"swarm": true, "init": true, "join": true, "leave": true, "update": true, "unlock": true,
	"unlockkey": true, "containers": true, "networks": true, "images": true, "json": true,
	"events": true, "system": true, "logs": true,
}

// opOf names a request by method and path, without the API version and with ids as {id}.
func opOf(r *http.Request) string {
	if r == nil || r.URL == nil {
		return "unknown"
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) > 0 && strings.HasPrefix(segs[0], "v1.") {
		segs = segs[1:]
	}
	for i, s := range segs {
		if !apiWords[s] {
			segs[i] = "{id}"
		}
	}
	return fmt.Sprintf("%s /%s", r.Method, strings.Join(segs, "/"))
}
