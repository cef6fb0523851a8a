package scaleout

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// A placement constraint, as Docker accepts it: "key==value" or "key!=value". The planner
// reads them to know the nodes a service may run on, with the scheduler's rules: keys are
// matched without regard to case (label names with it), values are compared without regard
// to case, a missing label is the empty value, node.ip takes an address or a CIDR block,
// and an unknown key matches no node.
type constraint struct {
	key   string
	equal bool // == (else !=)
	value string
}

// The shapes Docker accepts: a key of letters, digits, '-', '_', '.' starting with a letter
// or '_', at least two characters; a value without operators such as < > ~ ! =.
var (
	constraintKey   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9._-]+$`)
	constraintValue = regexp.MustCompile(`^[A-Za-z0-9:_\s.*()?+\[\]\\^$|/-]+$`)
)

// parseConstraint parses one constraint expression. "==" is looked for first, as Docker does.
func parseConstraint(expr string) (constraint, error) {
	for _, op := range []string{"==", "!="} {
		k, v, ok := strings.Cut(expr, op)
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !constraintKey.MatchString(k) {
			return constraint{}, fmt.Errorf("constraint %q: key %q is invalid", expr, k)
		}
		if !constraintValue.MatchString(v) {
			return constraint{}, fmt.Errorf("constraint %q: value %q is invalid", expr, v)
		}
		return constraint{key: k, equal: op == "==", value: v}, nil
	}
	return constraint{}, fmt.Errorf("constraint %q: no == or != in it", expr)
}

func parseConstraints(exprs []string) ([]constraint, error) {
	out := make([]constraint, 0, len(exprs))
	for _, e := range exprs {
		c, err := parseConstraint(e)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// labelOf returns the label a "node.labels.NAME" or "engine.labels.NAME" key (prefix
// without regard to case) names on n, and whether the key is such a key.
func labelOf(key string, n swarm.Node) (string, bool) {
	for prefix, labels := range map[string]map[string]string{"node.labels.": n.Labels, "engine.labels.": n.EngineLabels} {
		if len(key) > len(prefix) && strings.EqualFold(key[:len(prefix)], prefix) {
			return labels[key[len(prefix):]], true
		}
	}
	return "", false
}

// matches reports whether node n satisfies c.
func (c constraint) matches(n swarm.Node) bool {
	var have string
	switch k := strings.ToLower(c.key); k {
	case "node.id":
		have = n.ID
	case "node.hostname":
		have = n.Hostname
	case "node.role":
		have = string(n.Role)
	case "node.platform.os":
		have = n.OS
	case "node.platform.arch":
		have = n.Arch
	case "node.ip":
		addr := net.ParseIP(n.Addr)
		var in bool
		if ip := net.ParseIP(c.value); ip != nil {
			in = ip.Equal(addr)
		} else if _, block, err := net.ParseCIDR(c.value); err == nil {
			in = addr != nil && block.Contains(addr)
		} else {
			return false // not an address: matches no node
		}
		return in == c.equal
	default:
		v, ok := labelOf(c.key, n)
		if !ok {
			return false
		}
		have = v
	}
	return strings.EqualFold(have, c.value) == c.equal
}

// platformMatches reports whether node n runs one of platforms ("os/arch", either part may
// be empty: any), as the scheduler's platform filter does (x86_64 is amd64, aarch64 arm64).
func platformMatches(platforms []string, n swarm.Node) bool {
	if len(platforms) == 0 {
		return true
	}
	norm := func(a string) string {
		switch a {
		case "x86_64":
			return "amd64"
		case "aarch64":
			return "arm64"
		}
		return a
	}
	for _, p := range platforms {
		os, arch, _ := strings.Cut(p, "/")
		if (arch == "" || norm(arch) == norm(n.Arch)) && (os == "" || os == n.OS) {
			return true
		}
	}
	return false
}
