package dnsfake

// Route 53's routing policies as its resolver answers them: failover, multivalue and weighted
// sets, healthy or not.

import (
	"math/rand/v2"
	"strings"
)

func (z *zone) healthy(rs RecordSet) bool {
	return rs.HealthCheckID == "" || z.opts.Healthy == nil || z.opts.Healthy(rs.HealthCheckID)
}

// route picks the sets Route 53 would answer with among those of one name and type. When no
// set of a routed group is healthy, Route 53 treats them all as healthy.
func (z *zone) route(sets []RecordSet) []RecordSet {
	switch {
	case hasFailover(sets):
		return z.failover(sets)
	case hasMultiValue(sets):
		return z.multiValue(sets)
	case hasWeight(sets):
		return z.weighted(sets)
	}
	return sets // simple routing: one set with all its values
}

func hasFailover(sets []RecordSet) bool {
	for _, rs := range sets {
		if rs.Failover != "" {
			return true
		}
	}
	return false
}

func hasMultiValue(sets []RecordSet) bool {
	for _, rs := range sets {
		if rs.MultiValue {
			return true
		}
	}
	return false
}

func hasWeight(sets []RecordSet) bool {
	for _, rs := range sets {
		if rs.Weight != nil {
			return true
		}
	}
	return false
}

// failover answers PRIMARY while it is healthy, else SECONDARY while that is healthy; when
// neither is, PRIMARY.
func (z *zone) failover(sets []RecordSet) []RecordSet {
	var primary, secondary *RecordSet
	for i := range sets {
		switch strings.ToUpper(sets[i].Failover) {
		case "PRIMARY":
			primary = &sets[i]
		case "SECONDARY":
			secondary = &sets[i]
		}
	}
	switch {
	case primary != nil && z.healthy(*primary):
		return []RecordSet{*primary}
	case secondary != nil && z.healthy(*secondary):
		return []RecordSet{*secondary}
	case primary != nil:
		return []RecordSet{*primary}
	case secondary != nil:
		return []RecordSet{*secondary}
	}
	return nil
}

// multiValue answers up to eight healthy sets in random order; when none is healthy, up to
// eight unhealthy ones.
func (z *zone) multiValue(sets []RecordSet) []RecordSet {
	var pool []RecordSet
	for _, rs := range sets {
		if z.healthy(rs) {
			pool = append(pool, rs)
		}
	}
	if len(pool) == 0 {
		pool = append(pool, sets...)
	}
	rand.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	return pool[:min(len(pool), maxMultiValue)]
}

// weighted answers one set chosen with probability weight/total among the healthy sets with
// a weight above zero; then among healthy sets of weight zero (equally); when none is healthy,
// among all sets the same way.
func (z *zone) weighted(sets []RecordSet) []RecordSet {
	var healthy []RecordSet
	for _, rs := range sets {
		if z.healthy(rs) {
			healthy = append(healthy, rs)
		}
	}
	if len(healthy) == 0 {
		healthy = sets
	}
	var total int64
	for _, rs := range healthy {
		total += weight(rs)
	}
	if total == 0 {
		return []RecordSet{healthy[rand.IntN(len(healthy))]}
	}
	n := rand.Int64N(total)
	for _, rs := range healthy {
		if n < weight(rs) {
			return []RecordSet{rs}
		}
		n -= weight(rs)
	}
	return []RecordSet{healthy[len(healthy)-1]}
}

func weight(rs RecordSet) int64 {
	if rs.Weight == nil || *rs.Weight < 0 {
		return 0
	}
	return *rs.Weight
}
