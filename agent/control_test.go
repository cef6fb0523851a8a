package agent

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestCachedManagers(t *testing.T) {
	now := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	calls := 0
	answer, fail := []string{"10.0.0.1:2380", "10.0.0.2:2380"}, error(nil)
	find := func(context.Context) ([]string, error) {
		calls++
		return slices.Clone(answer), fail
	}
	get := cachedManagers(find, 10*time.Second, func() time.Time { return now })
	ask := func(want []string, wantErr bool, wantCalls int) {
		t.Helper()
		got, err := get(t.Context())
		if (err != nil) != wantErr || !slices.Equal(got, want) || calls != wantCalls {
			t.Errorf("managers = %v, %v after %d lookups; want %v (error %t) after %d", got, err, calls, want, wantErr, wantCalls)
		}
	}
	first := slices.Clone(answer)
	ask(first, false, 1)
	now = now.Add(9 * time.Second)
	ask(first, false, 1) // reused within the TTL
	now = now.Add(2 * time.Second)
	answer = []string{"10.0.0.3:2380"}
	ask(answer, false, 2) // looked up again once it expired
	now = now.Add(11 * time.Second)
	answer, fail = nil, errors.New("no other manager known to this engine or to discovery")
	ask([]string{"10.0.0.3:2380"}, false, 3) // the lookup failed (the node left): the last list serves

	// Nothing found yet: the lookup's error, and no list is cached.
	calls = 0
	empty := cachedManagers(find, 10*time.Second, func() time.Time { return now })
	if got, err := empty(t.Context()); err == nil || len(got) != 0 || calls != 1 {
		t.Errorf("first lookup failing: %v, %v after %d lookups; want the error", got, err, calls)
	}
}
