// Package retry is the agent's one backoff policy: waits that double per attempt up to a cap,
// with equal jitter (half fixed, half random) so that many agents retrying together do not hit
// a service in step, and a wait that ends early with its context. Standard library only.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Exp is the wait before attempt n (1-based) without jitter: base doubled per attempt after
// the first, capped at limit.
func Exp(n int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Backoff is the jittered wait before attempt n (1-based): Jitter(Exp(n, base, limit)).
func Backoff(n int, base, limit time.Duration) time.Duration {
	return Jitter(Exp(n, base, limit))
}

// Jitter returns a wait in [d/2, d]: half of d fixed, half random.
func Jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx is done; it reports whether the wait completed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
