package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/swarm-agent/swarm-agent/bootstrap"
)

// localCounter is an engine whose swarm state reads are counted.
type localCounter struct {
	bootstrap.Engine
	reads int
}

func (e *localCounter) Local(context.Context) (bootstrap.LocalNode, error) {
	e.reads++
	return bootstrap.LocalNode{State: bootstrap.StateActive}, nil
}

// TestFirstLocal: boot's first swarm state read is the one taken while the engine was
// checked; later reads, a first read whose advance read failed, and one after the engine's
// configuration changed (discard) go to the engine.
func TestFirstLocal(t *testing.T) {
	ctx := t.Context()
	pre := bootstrap.LocalNode{State: bootstrap.StateInactive}
	e := &localCounter{}
	f := &firstLocal{Engine: e, pre: &localRead{node: pre}}
	if got, _ := f.Local(ctx); got.State != bootstrap.StateInactive || e.reads != 0 {
		t.Fatalf("first read: %s with %d engine reads; want the advance read's inactive, none", got.State, e.reads)
	}
	if got, _ := f.Local(ctx); got.State != bootstrap.StateActive || e.reads != 1 {
		t.Fatalf("second read: %s with %d engine reads; want the engine's active, 1", got.State, e.reads)
	}
	for name, f := range map[string]*firstLocal{
		"advance read failed": {Engine: e, pre: &localRead{err: errors.New("engine starting")}},
		"discarded":           {Engine: e, pre: &localRead{node: pre}},
	} {
		e.reads = 0
		if name == "discarded" {
			f.discard()
		}
		if got, _ := f.Local(ctx); got.State != bootstrap.StateActive || e.reads != 1 {
			t.Errorf("%s: first read %s with %d engine reads; want the engine's active, 1", name, got.State, e.reads)
		}
	}
}
