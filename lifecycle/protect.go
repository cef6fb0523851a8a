package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// EventProtection: the leader set (reason "set") or lifted ("cleared") scale-in protection.
const EventProtection = "protection"

// GroupMember is an instance as its Auto Scaling group sees it.
type GroupMember struct {
	ASG       string
	State     string // LifecycleState: InService, Terminating:Wait, ...
	Protected bool   // ProtectedFromScaleIn
}

// ScaleIn is what the leader needs from Auto Scaling to keep scale-in protection;
// *asg.Client satisfies it.
type ScaleIn interface {
	// Members describes the instances; those in no group are absent from the map.
	Members(ctx context.Context, instanceIDs []string) (map[string]GroupMember, error)
	Protect(ctx context.Context, asg string, instanceIDs []string, protect bool) error
}

// Protector keeps Auto Scaling's scale-in protection on the managers whose loss would cost
// quorum: those a drain would refuse to take out (CheckDemotion: the last manager, or one
// without which too few reachable managers would stay). Auto Scaling then picks another
// instance to scale in instead of one whose drain would refuse and wait out the hook. Once a
// manager may go again the protection the Protector set is lifted; protection it did not
// set is left alone. Managers that are leaving, and instances in no group or not in
// service, are not touched. Before protecting or unprotecting an instance on a node's
// account, EC2 must confirm that the node is on that instance (VerifyNode).
type Protector struct {
	Swarm     Swarm
	ASG       ScaleIn
	Instances Instances
	Log       zerolog.Logger
	// Observe is told of each protection set or lifted, and of refusals.
	Observe Observer

	verified map[string]string // node id -> "instance|addr" EC2 confirmed
	// off: Auto Scaling refused SetInstanceProtection for want of permission (the managers'
	// policy does not grant it); the Protector then does nothing more.
	off bool
}

// Pass brings the protection of the managers in nodes (one leader pass's list) in line.
func (p *Protector) Pass(ctx context.Context, nodes []swarm.Node) error {
	if p.off {
		return nil
	}
	if p.verified == nil {
		p.verified = map[string]string{}
	}
	var managers []swarm.Node
	var ids []string
	for _, n := range nodes {
		if n.Role != swarm.RoleManager || n.InstanceID() == "" || n.Labels[swarm.LabelLeaving] != "" {
			continue
		}
		managers = append(managers, n)
		ids = append(ids, n.InstanceID())
	}
	if len(managers) == 0 {
		return nil
	}
	members, err := p.ASG.Members(ctx, ids)
	if err != nil {
		return fmt.Errorf("scale-in protection: %w", err)
	}
	var errs []error
	for _, n := range managers {
		id := n.InstanceID()
		m, ok := members[id]
		if !ok || m.State != "InService" {
			continue
		}
		need := CheckDemotion(nodes, n.ID) != nil
		ours := n.Labels[swarm.LabelProtected] != ""
		log := p.Log.With().Str("node_id", n.ID).Str("instance_id", id).Str("asg_name", m.ASG).Logger()
		switch {
		case need && !m.Protected:
			errs = append(errs, p.set(ctx, n, m, true, log))
		case !need && m.Protected && ours:
			errs = append(errs, p.set(ctx, n, m, false, log))
		case !m.Protected && ours && !need:
			// lifted by someone else: forget it was ours
			errs = append(errs, p.Swarm.SetNodeLabels(ctx, n.ID, map[string]string{swarm.LabelProtected: ""}))
		}
	}
	for id := range p.verified {
		if !slices.ContainsFunc(nodes, func(n swarm.Node) bool { return n.ID == id }) {
			delete(p.verified, id)
		}
	}
	return errors.Join(errs...)
}

// set protects (or unprotects) the manager's instance. The label goes first when protecting
// and last when unprotecting, so that a failure half-way is mended by the next pass and an
// operator's protection is never taken for the leader's.
func (p *Protector) set(ctx context.Context, n swarm.Node, m GroupMember, protect bool, log zerolog.Logger) error {
	if err := p.verify(ctx, n); err != nil {
		if errors.Is(err, ErrIdentity) {
			log.Warn().Err(err).Str("reason", ReasonIdentity).Msg("scale-in protection left as it is: EC2 does not confirm the manager's instance")
			p.Observe.observe(EventRefused, ReasonIdentity)
			return nil
		}
		return err
	}
	id := n.InstanceID()
	if protect {
		if err := p.Swarm.SetNodeLabels(ctx, n.ID, map[string]string{swarm.LabelProtected: "true"}); err != nil {
			return fmt.Errorf("label manager %s protected: %w", n.ID, err)
		}
	}
	if err := p.ASG.Protect(ctx, m.ASG, []string{id}, protect); err != nil {
		if denied(err) {
			p.off = true
			log.Warn().Err(err).Msg("scale-in protection is off: the managers' instance profile does not grant autoscaling:SetInstanceProtection")
			return nil
		}
		return err
	}
	if !protect {
		if err := p.Swarm.SetNodeLabels(ctx, n.ID, map[string]string{swarm.LabelProtected: ""}); err != nil {
			return fmt.Errorf("label manager %s unprotected: %w", n.ID, err)
		}
	}
	if protect {
		log.Info().Str("result", "set").Msg("scale-in protection set: the managers would lose quorum without this one")
		p.Observe.observe(EventProtection, "set")
	} else {
		log.Info().Str("result", "cleared").Msg("scale-in protection lifted: the managers keep quorum without this one")
		p.Observe.observe(EventProtection, "cleared")
	}
	return nil
}

// verify is VerifyNode, remembered per node, instance and address.
func (p *Protector) verify(ctx context.Context, n swarm.Node) error {
	key := n.InstanceID() + "|" + n.Addr
	if p.verified[n.ID] == key {
		return nil
	}
	if err := VerifyNode(ctx, p.Instances, n); err != nil {
		return err
	}
	p.verified[n.ID] = key
	return nil
}

// denied reports an AWS refusal for want of permission.
func denied(err error) bool {
	var coded interface{ ErrorCode() string }
	if !errors.As(err, &coded) {
		return false
	}
	switch coded.ErrorCode() {
	case "AccessDenied", "AccessDeniedException", "UnauthorizedOperation":
		return true
	}
	return false
}
