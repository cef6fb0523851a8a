package bootstrap

// What the dry run says about a decision, and the helpers that format values in boot's messages.

import (
	"fmt"
	"strings"
	"time"
)

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// cut shortens a value shown in a message to n bytes, saying how long it was.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}

func explain(o Observation, a Action, canLock bool, local LocalNode, seen observed) string {
	switch a {
	case ActLock:
		if !canLock {
			return "no manager found and this discovery provider has no bootstrap lock: would wait for a manager"
		}
		return "no manager answers or is registered: would take the bootstrap lock, read the registry again and init the swarm if still alone"
	case ActJoin:
		return fmt.Sprintf("a manager answers and the %s token is published: would join as %s", o.Role, o.Role)
	case ActWait:
		switch {
		case o.Managers:
			return "a manager answers but the join token is not published yet: would wait"
		case o.Registered:
			return fmt.Sprintf("registered managers do not answer and are not proven gone (%s): would wait, never init a second swarm", strings.Join(seen.silentWhy, "; "))
		}
		return "no manager answers and this node is a worker: would wait for a manager"
	case ActReconcile:
		return "already active in this cluster's swarm: would only reconcile registration and labels"
	case ActLeave:
		if o.CertExpired && o.Membership != MemberForeign {
			if o.CertManager {
				return fmt.Sprintf("this manager's swarm certificate expired at %s and managers of its swarm answer (they hold the state): would leave and join again", local.CertNotAfter.UTC().Format(time.RFC3339))
			}
			return fmt.Sprintf("this node's swarm certificate expired at %s (off longer than its validity): would leave and join again", local.CertNotAfter.UTC().Format(time.RFC3339))
		}
		if o.Membership == MemberForeign {
			return fmt.Sprintf("local swarm state %s belongs to another swarm (managers show %v): would leave it and then join", o.Local, seen.clusterIDs)
		}
		return fmt.Sprintf("local swarm state %s has no node identity after %s (a join that never completed): would leave it and then join", o.Local, o.Settle)
	case ActSettle:
		if o.CertExpired {
			return fmt.Sprintf("this manager's swarm certificate expired at %s and no manager of its swarm answers: its Raft state may be the last copy, so it is left alone (recover with `docker swarm init --force-new-cluster`)", local.CertNotAfter.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("local swarm state %s with node %s is not proven stale: would wait for it to settle and never force-leave it", o.Local, orNone(local.NodeID))
	case ActHold:
		return "active in a swarm that no answering manager shows to be this cluster's or another's: would leave it alone and report"
	case ActFail:
		return "the swarm is locked and the token store holds no unlock key of its swarm: would wait up to --wait for someone to unlock it (docker swarm unlock), touching nothing, then exit 7"
	case ActUnlock:
		return "the swarm is locked and the token store holds its unlock key: would unlock it with that key, touching nothing else"
	}
	return string(a)
}
