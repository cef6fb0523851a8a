package awsfront

// Injected faults and throttling: what a test asks the front to answer instead of moto.

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Fault kinds.
const (
	FaultThrottle   = "throttle"
	Fault5xx        = "5xx"
	FaultLatency    = "latency"
	FaultDrop       = "drop"
	FaultPriorReqNC = "prior-request-not-complete"
	FaultDenied     = "denied" // IAM refuses: AccessDeniedException (JSON services) or AccessDenied
)

// Fault makes the next Count matching requests fail or slow down.
type Fault struct {
	Service   string `json:"service"`
	Operation string `json:"operation,omitempty"` // "" = any
	// InstanceID limits the fault to requests from that instance (by source address, as the
	// request log names it); "" = anyone's.
	InstanceID string        `json:"instance_id,omitempty"`
	Kind       string        `json:"kind"`              // throttle|5xx|latency|drop|prior-request-not-complete|denied
	Count      int           `json:"count"`             // <= 0 counts as 1
	Latency    time.Duration `json:"latency,omitempty"` // for latency
	Status     int           `json:"status,omitempty"`  // for 5xx: 500 (InternalFailure, default) or 503 (ServiceUnavailable)
	// Arrived, when set, is closed as the first matching request arrives (for a latency
	// fault: as its hold begins), so that a test can act while AWS holds it.
	Arrived chan struct{} `json:"-"`
}

// InjectFault queues a fault; faults apply in the order injected.
func (f *Front) InjectFault(ft Fault) {
	if ft.Count <= 0 {
		ft.Count = 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &ft)
}

func (f *Front) takeFault(service, op, instanceID string) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, ft := range f.faults {
		if ft.Service != service || (ft.Operation != "" && ft.Operation != op) || (ft.InstanceID != "" && ft.InstanceID != instanceID) {
			continue
		}
		ft.Count--
		if ft.Arrived != nil {
			close(ft.Arrived)
			ft.Arrived = nil
		}
		cp := *ft
		if ft.Count <= 0 {
			f.faults = append(f.faults[:i], f.faults[i+1:]...)
		}
		return &cp
	}
	return nil
}

// applyFault acts on a fault; it reports whether the response is done.
func (c *call) applyFault(ft *Fault) bool {
	switch ft.Kind {
	case FaultThrottle:
		c.writeError(http.StatusBadRequest, "Throttling", "Rate exceeded")
	case Fault5xx:
		if ft.Status == http.StatusServiceUnavailable {
			c.writeError(http.StatusServiceUnavailable, "ServiceUnavailable", "Service is unavailable")
		} else {
			c.writeError(http.StatusInternalServerError, "InternalFailure", "An internal error occurred")
		}
	case FaultDenied:
		msg := fmt.Sprintf("User: arn:aws:sts::123456789012:assumed-role/swarm-agent/%s is not authorized to perform: %s:%s because no identity-based policy allows the %s:%s action",
			orDash(c.req.InstanceID), c.req.Service, c.req.Operation, c.req.Service, c.req.Operation)
		if c.r.Header.Get("X-Amz-Target") != "" {
			c.writeError(http.StatusBadRequest, "AccessDeniedException", msg)
		} else {
			c.writeError(http.StatusForbidden, "AccessDenied", msg)
		}
	case FaultPriorReqNC:
		c.writeError(http.StatusBadRequest, "PriorRequestNotComplete",
			"The request was rejected because Route 53 was still processing a prior request.")
	case FaultDrop:
		c.w.status = -1
		if hj, ok := c.w.ResponseWriter.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	case FaultLatency:
		select {
		case <-time.After(ft.Latency):
		case <-c.r.Context().Done():
		}
		return false
	default:
		return false
	}
	return true
}

// bucket is a token bucket.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(l Limit) *bucket {
	b := float64(l.Burst)
	if b < 1 {
		b = 1
	}
	return &bucket{rate: l.RPS, burst: b, tokens: b, last: time.Now()}
}

func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	b.last = now
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
