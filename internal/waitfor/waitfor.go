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

// Throughout checks cond every period for d and fails the test at the first sample where it
// returns an error: an invariant that must hold all along, not only at the end.
func Throughout(t testing.TB, d, every time.Duration, what string, cond func() error) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		if err := cond(); err != nil {
			t.Fatalf("%s broke: %v", what, err)
		}
		if !time.Now().Before(end) {
			return
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("watching %s: %v", what, t.Context().Err())
		case <-time.After(every):
		}
	}
}
