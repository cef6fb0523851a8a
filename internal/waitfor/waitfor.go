// Package waitfor is the tests' one way to wait for a condition on real components.
package waitfor

import (
	"testing"
	"time"
)

// Until calls cond every 250 ms until it returns nil, and fails the test with cond's last
// error if that takes longer than wait or the test's context ends. what names the awaited
// state in the failure.
func Until(t testing.TB, wait time.Duration, what string, cond func() error) {
	t.Helper()
	Every(t, wait, 250*time.Millisecond, what, cond)
}

// Every is Until with a chosen period (a narrow window needs a short one).
func Every(t testing.TB, wait, every time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", wait, what, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v (last: %v)", what, t.Context().Err(), err)
		case <-time.After(every):
		}
	}
}
