package lifecycle

// How the drain waits and retries: one poll loop with a deadline, one retry loop that stops on
// permanent errors.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/swarm-agent/swarm-agent/retry"
)

// waitFor polls cond at once and then every Poll until it holds or until passes, and
// reports whether it held with cond's last detail. Errors from cond are logged and polled
// through (managers answer errors for a few seconds while they elect a leader); the last
// one is returned when the wait gives up.
func (r *drainRun) waitFor(ctx context.Context, what string, until time.Time, cond func(context.Context) (bool, string, error)) (bool, string, error) {
	last := ""
	for attempt := 1; ; attempt++ {
		ok, detail, err := cond(ctx)
		if ok {
			return true, detail, nil
		}
		if err != nil {
			r.log.Debug().Str("action", what).Int("attempt", attempt).Err(err).Msg("waiting")
		} else if detail != last {
			r.log.Info().Str("action", what).Int("attempt", attempt).Msg(detail)
			last = detail
		}
		wait := min(r.opts.Poll, time.Until(until))
		if wait <= 0 {
			return false, detail, err
		}
		if !retry.Sleep(ctx, wait) {
			return false, detail, cmp.Or(err, context.Cause(ctx))
		}
	}
}

// retry calls op until it succeeds, fails with an error retrying cannot fix, or
// retryAttempts calls failed, waiting with capped exponential backoff and jitter (so that
// agents draining together do not hit the managers in step).
func (r *drainRun) retry(ctx context.Context, what string, op func(context.Context) error) error {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		switch {
		case err == nil:
			return nil
		case permanent(err):
			return fmt.Errorf("%s: %w", what, err)
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w (and %w)", what, err, context.Cause(ctx))
		case attempt == retryAttempts:
			return fmt.Errorf("%s: gave up after %d attempts in %s: %w", what, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		wait := retry.Backoff(attempt, retryBase, retryMax)
		r.log.Warn().Str("action", what).Int("attempt", attempt).Dur("retry_in", wait).Err(err).Msg("drain step failed")
		if !retry.Sleep(ctx, wait) {
			return fmt.Errorf("%s: %w (and %w)", what, err, context.Cause(ctx))
		}
	}
}

// permanent reports errors that retrying does not change.
func permanent(err error) bool {
	for _, target := range []error{ErrNoSuchNode, ErrNoHook, ErrNoAction, ErrNotAllowed, ErrLastManager, ErrNoQuorum, ErrAmbiguous} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
