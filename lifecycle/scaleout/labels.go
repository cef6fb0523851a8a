package scaleout

import (
	"fmt"
	"strconv"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// Bounds of the replicas-per-node labels.
const (
	MaxPerNode  = 1000   // swarm-agent.replicas-per-node
	MaxReplicas = 100000 // swarm-agent.replicas-min and -max
)

// OptIn is what a service's labels ask of the leader.
type OptIn struct {
	// Rebalance: spread the tasks onto nodes that joined (swarm-agent.rebalance=true).
	Rebalance bool
	// PerNode > 0: keep PerNode replicas per node the service may run on
	// (swarm-agent.replicas-per-node), never fewer than Min nor, when Max > 0, more than Max.
	PerNode  uint64
	Min, Max uint64
}

// Any reports whether the service opted in to anything.
func (o OptIn) Any() bool { return o.Rebalance || o.PerNode > 0 }

// optInKeys are the labels a service opts in with.
var optInKeys = []string{swarm.LabelRebalance, swarm.LabelReplicasPerNode, swarm.LabelReplicasMin, swarm.LabelReplicasMax}

// labelled reports whether the service carries any opt-in label, valid or not.
func labelled(l map[string]string) bool {
	for _, k := range optInKeys {
		if _, ok := l[k]; ok {
			return true
		}
	}
	return false
}

// ParseLabels reads a service's opt-in labels. A label that is present but not of its shape
// is an error naming the label, the value and the rule, and the service is left alone: a
// typo must not scale a service to something nobody asked for.
func ParseLabels(l map[string]string) (OptIn, error) {
	var o OptIn
	if v, ok := l[swarm.LabelRebalance]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return OptIn{}, fmt.Errorf("label %s=%q: must be true or false", swarm.LabelRebalance, v)
		}
		o.Rebalance = b
	}
	num := func(key string, lo, hi uint64) (uint64, bool, error) {
		v, ok := l[key]
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n < lo || n > hi {
			return 0, true, fmt.Errorf("label %s=%q: must be a whole number from %d to %d", key, v, lo, hi)
		}
		return n, true, nil
	}
	per, hasPer, err := num(swarm.LabelReplicasPerNode, 1, MaxPerNode)
	if err != nil {
		return OptIn{}, err
	}
	lo, hasMin, err := num(swarm.LabelReplicasMin, 0, MaxReplicas)
	if err != nil {
		return OptIn{}, err
	}
	hi, hasMax, err := num(swarm.LabelReplicasMax, 1, MaxReplicas)
	if err != nil {
		return OptIn{}, err
	}
	if !hasPer && (hasMin || hasMax) {
		return OptIn{}, fmt.Errorf("labels %s and %s need %s", swarm.LabelReplicasMin, swarm.LabelReplicasMax, swarm.LabelReplicasPerNode)
	}
	if hasMin && hasMax && lo > hi {
		return OptIn{}, fmt.Errorf("label %s=%d is above %s=%d", swarm.LabelReplicasMin, lo, swarm.LabelReplicasMax, hi)
	}
	o.PerNode, o.Min, o.Max = per, lo, hi
	return o, nil
}

// unixLabel reads a label holding a Unix second; ok is false when it is absent or not one.
func unixLabel(l map[string]string, key string) (time.Time, bool) {
	v, ok := l[key]
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// unixValue is the label value of a Unix second at t.
func unixValue(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
