package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/discovery"
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

// TestWireHandsBootTheAutolocker: boot gets the engine as firstLocal (its first swarm state
// read taken in advance) and the engine's autolock side beside it, so that a locked manager
// can be unlocked with the key from the token store and --autolock can keep the key published.
func TestWireHandsBootTheAutolocker(t *testing.T) {
	spec, err := discovery.Parse("provider=static managers=10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Role: "manager", Identity: "static", InstanceID: "i-1", PrivateIP: "10.0.0.1",
		DockerHost: fakeDockerSocket(t, "20.10.24"), Spec: spec}
	w, err := wire(t.Context(), cfg, zerolog.Nop(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if w.deps.Engine != bootstrap.Engine(w.first) {
		t.Errorf("boot's engine is %T, want the firstLocal over the engine", w.deps.Engine)
	}
	if w.deps.Autolocker == nil || w.deps.Autolocker != bootstrap.Autolocker(w.engine) {
		t.Errorf("boot's autolocker is %v, want the engine", w.deps.Autolocker)
	}
}
