package lifecycle

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// TagCluster is the AWS tag that names the cluster an Auto Scaling group (and, propagated at
// launch, each of its instances) belongs to: the value of --cluster on its nodes. Several
// clusters may share one account and one termination queue; the tag tells their leaders
// which notices are whose.
const TagCluster = "swarm-agent:cluster"

// Tagged is what ClusterScope asks AWS; *asg.Client and *asg.Instances together satisfy it
// (agent wires them).
type Tagged interface {
	// InstanceTags returns the instance's tags; found is false for an instance EC2 does not
	// know.
	InstanceTags(ctx context.Context, instanceID string) (tags map[string]string, found bool, err error)
	// GroupTags returns the Auto Scaling group's tags; found is false for a group that does
	// not exist.
	GroupTags(ctx context.Context, name string) (tags map[string]string, found bool, err error)
}

// scopeCache is how long a ClusterScope remembers which cluster an instance or group is in.
const scopeCache = 10 * time.Minute

// ClusterScope tells whether a termination notice belongs to this cluster, by the
// TagCluster tag of the notice's instance, else of its Auto Scaling group: the same value as
// Cluster is this cluster's, another value another cluster's. A notice whose instance and
// group carry no such tag (an account with one cluster that never tagged) is taken as this
// cluster's, as before clusters were told apart, and said once per group: untagged groups
// must not share a queue with another cluster. Answers are remembered for a while (a foreign
// notice comes back every few seconds until its own leader takes it).
type ClusterScope struct {
	Cluster string
	Tags    Tagged
	Log     zerolog.Logger

	mu     sync.Mutex
	known  map[string]scopeEntry // "i/<id>" or "g/<name>" -> its cluster ("" untagged)
	warned map[string]bool       // groups said to be untagged
}

type scopeEntry struct {
	cluster string
	at      time.Time
}

// Owns reports whether n is this cluster's notice; an error means AWS could not tell now.
func (s *ClusterScope) Owns(ctx context.Context, n Notice) (bool, error) {
	cluster, tagged, err := s.clusterOf(ctx, n)
	if err != nil {
		return false, err
	}
	if !tagged {
		s.mu.Lock()
		first := !s.warned[n.ASG]
		if s.warned == nil {
			s.warned = map[string]bool{}
		}
		s.warned[n.ASG] = true
		s.mu.Unlock()
		if first {
			s.Log.Warn().Str("instance_id", n.InstanceID).Str("asg_name", n.ASG).
				Msg("termination notice of an instance without a " + TagCluster + " tag (nor on its group): taken as this cluster's; tag the groups when clusters share the queue")
		}
		return true, nil
	}
	return cluster == s.Cluster, nil
}

// clusterOf reads the notice's cluster: the instance's tag, else its group's.
func (s *ClusterScope) clusterOf(ctx context.Context, n Notice) (cluster string, tagged bool, err error) {
	look := func(key string, read func() (map[string]string, bool, error)) (string, bool, error) {
		s.mu.Lock()
		e, ok := s.known[key]
		s.mu.Unlock()
		if ok && time.Since(e.at) < scopeCache {
			return e.cluster, e.cluster != "", nil
		}
		tags, found, err := read()
		if err != nil {
			return "", false, err
		}
		c := tags[TagCluster]
		if found {
			s.mu.Lock()
			if s.known == nil {
				s.known = map[string]scopeEntry{}
			}
			if len(s.known) > 10000 {
				clear(s.known)
			}
			s.known[key] = scopeEntry{cluster: c, at: time.Now()}
			s.mu.Unlock()
		}
		return c, c != "", nil
	}
	if n.InstanceID != "" {
		c, ok, err := look("i/"+n.InstanceID, func() (map[string]string, bool, error) { return s.Tags.InstanceTags(ctx, n.InstanceID) })
		if err != nil {
			return "", false, fmt.Errorf("cluster of instance %s: %w", n.InstanceID, err)
		}
		if ok {
			return c, true, nil
		}
	}
	if n.ASG != "" {
		c, ok, err := look("g/"+n.ASG, func() (map[string]string, bool, error) { return s.Tags.GroupTags(ctx, n.ASG) })
		if err != nil {
			return "", false, fmt.Errorf("cluster of group %s: %w", n.ASG, err)
		}
		if ok {
			return c, true, nil
		}
	}
	return "", false, nil
}
