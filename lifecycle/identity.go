package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Instance is what EC2 says of an instance (DescribeInstances).
type Instance struct {
	ID string
	// Found is false when EC2 does not know the instance: it never existed, the id is
	// malformed, or it was terminated long ago.
	Found bool
	// State is EC2's state name: pending, running, shutting-down, terminated, stopping,
	// stopped.
	State string
	// Addrs are the private addresses of all its network interfaces: the primary and
	// secondary private IPv4 addresses and the IPv6 addresses. A terminated instance has none.
	Addrs []string
}

// EC2 instance states the leader looks at.
const (
	EC2ShuttingDown = "shutting-down"
	EC2Terminated   = "terminated"
)

// Gone reports whether EC2 says the instance is gone for good: unknown, shutting down or
// terminated. Pending, running, stopping and stopped instances may come back with their
// swarm state (a stopped instance detached for maintenance is not gone).
func (i Instance) Gone() bool {
	return !i.Found || i.State == EC2ShuttingDown || i.State == EC2Terminated
}

// HasAddr reports whether addr is one of the instance's private addresses.
func (i Instance) HasAddr(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(i.Addrs, func(s string) bool {
		b, err := netip.ParseAddr(s)
		return err == nil && b.Unmap() == a.Unmap()
	})
}

// Instances is what the leader asks EC2 about instances; *asg.Instances satisfies it.
type Instances interface {
	// Instance describes the instance; an unknown instance is Found false, not an error.
	Instance(ctx context.Context, instanceID string) (Instance, error)
}

// ErrIdentity means EC2 does not confirm that a node runs on the instance its label names.
// Labels a node set on itself (through the control API a node may set any swarm-agent.*
// label, the instance id included) are hints: no AWS action is taken on their word alone.
var ErrIdentity = errors.New("EC2 does not confirm the node's instance")

// VerifyNode checks with EC2 that node n runs on the instance its instance-id label names:
// EC2 knows the instance, it is not gone, and the node's address as the swarm sees it (the
// address its managers see it connect from, not a label) is one of the instance's private
// addresses. It returns nil when it does, ErrIdentity (wrapped, saying what disagrees) when
// it does not, and EC2's error when EC2 could not be asked. Without Instances nothing can be
// verified: ErrIdentity.
func VerifyNode(ctx context.Context, ec Instances, n swarm.Node) error {
	id := n.InstanceID()
	switch {
	case id == "":
		return fmt.Errorf("node %s has no instance-id label: %w", n.ID, ErrIdentity)
	case ec == nil:
		return fmt.Errorf("node %s claims instance %s and there is no EC2 to ask: %w", n.ID, id, ErrIdentity)
	case n.Addr == "":
		return fmt.Errorf("node %s claims instance %s but the swarm shows no address for it: %w", n.ID, id, ErrIdentity)
	}
	in, err := ec.Instance(ctx, id)
	if err != nil {
		return fmt.Errorf("verify node %s as instance %s: %w", n.ID, id, err)
	}
	switch {
	case !in.Found:
		return fmt.Errorf("node %s claims instance %s, which EC2 does not know: %w", n.ID, id, ErrIdentity)
	case in.Gone():
		return fmt.Errorf("node %s claims instance %s, which EC2 says is %s: %w", n.ID, id, in.State, ErrIdentity)
	case !in.HasAddr(n.Addr):
		return fmt.Errorf("node %s at %s claims instance %s, whose private addresses are %s: %w",
			n.ID, n.Addr, id, cmpOrNone(strings.Join(in.Addrs, ", ")), ErrIdentity)
	}
	return nil
}

func cmpOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
