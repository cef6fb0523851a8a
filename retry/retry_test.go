package retry

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestExp(t *testing.T) {
	const base, limit = 500 * time.Millisecond, 8 * time.Second
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := Exp(i+1, base, limit); got != w {
			t.Errorf("Exp(%d) = %s, want %s", i+1, got, w)
		}
	}
	// A cap below the base caps the first wait too; a huge attempt number does not overflow.
	if got := Exp(1, time.Minute, time.Second); got != time.Second {
		t.Errorf("Exp(1, 1m, 1s) = %s, want 1s", got)
	}
	if got := Exp(1000, time.Second, time.Hour); got != time.Hour {
		t.Errorf("Exp(1000, 1s, 1h) = %s, want 1h", got)
	}
}

// TestBackoffJitter: every wait lies in [Exp/2, Exp], and the waits spread over that range
// (not all equal: agents retrying together must not stay in step).
func TestBackoffJitter(t *testing.T) {
	for n := 1; n <= 6; n++ {
		d := Exp(n, time.Second, 20*time.Second)
		lo, hi := d, time.Duration(0)
		for range 1000 {
			w := Backoff(n, time.Second, 20*time.Second)
			if w < d/2 || w > d {
				t.Fatalf("Backoff(%d) = %s, outside [%s, %s]", n, w, d/2, d)
			}
			lo, hi = min(lo, w), max(hi, w)
		}
		if hi-lo < d/4 {
			t.Errorf("Backoff(%d) spread over [%s, %s] only, want most of [%s, %s]", n, lo, hi, d/2, d)
		}
	}
	if got := Jitter(0); got != 0 {
		t.Errorf("Jitter(0) = %s, want 0", got)
	}
}

func TestSleep(t *testing.T) {
	t.Run("completes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			if !Sleep(t.Context(), 3*time.Second) {
				t.Fatal("Sleep reported an interrupted wait")
			}
			if took := time.Since(start); took != 3*time.Second {
				t.Fatalf("slept %s, want 3s", took)
			}
		})
	})
	t.Run("ends with its context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			start := time.Now()
			if Sleep(ctx, time.Hour) {
				t.Fatal("Sleep reported a completed wait after its context ended")
			}
			if took := time.Since(start); took != time.Second {
				t.Fatalf("returned after %s, want 1s (the context's end)", took)
			}
		})
	})
}
