package engine

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/swarm-agent/swarm-agent/swarm"
)

func testService() *swarmapi.Service {
	replicas := uint64(6)
	s := &swarmapi.Service{ID: "s1", Spec: swarmapi.ServiceSpec{
		Annotations: swarmapi.Annotations{Name: "web", Labels: map[string]string{"swarm-agent.rebalance": "true", "keep": "me"}},
		TaskTemplate: swarmapi.TaskSpec{
			ContainerSpec: &swarmapi.ContainerSpec{Image: "nginx:1.27"},
			Placement: &swarmapi.Placement{Constraints: []string{"node.role==worker"}, MaxReplicas: 3,
				Preferences: []swarmapi.PlacementPreference{{Spread: &swarmapi.SpreadOver{SpreadDescriptor: "node.labels.az"}}},
				Platforms:   []swarmapi.Platform{{OS: "linux", Architecture: "amd64"}}},
			ForceUpdate: 4,
		},
		Mode:         swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
		UpdateConfig: &swarmapi.UpdateConfig{Parallelism: 2, Delay: time.Second, Order: swarmapi.UpdateOrderStartFirst},
	}}
	s.Version.Index = 11
	return s
}

// TestServices: the service list as the scale-out sees it; a service without an update config
// gets Docker's defaults.
func TestServices(t *testing.T) {
	global := &swarmapi.Service{ID: "s2", Spec: swarmapi.ServiceSpec{Annotations: swarmapi.Annotations{Name: "agent"},
		Mode: swarmapi.ServiceMode{Global: &swarmapi.GlobalService{}}}}
	e := serve(t, &fakeDaemon{services: map[string]*swarmapi.Service{"s1": testService(), "s2": global}})
	got, err := e.Services(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b swarm.Service) int { return strings.Compare(a.ID, b.ID) })
	want := []swarm.Service{
		{ID: "s1", Name: "web", Version: 11, Labels: map[string]string{"swarm-agent.rebalance": "true", "keep": "me"},
			Replicated: true, Replicas: 6, Constraints: []string{"node.role==worker"}, Spread: []string{"node.labels.az"},
			MaxPerNode: 3, Platforms: []string{"linux/amd64"}, ForceUpdate: 4,
			Update: swarm.UpdateConfig{Parallelism: 2, Delay: time.Second, Order: "start-first", Monitor: 5 * time.Second}},
		{ID: "s2", Name: "agent", Labels: map[string]string{}, Update: swarm.UpdateConfig{Parallelism: 1, Order: "stop-first", Monitor: 5 * time.Second}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Services =\n%+v\nwant\n%+v", got, want)
	}
}

// TestServiceUpdates: a forced update bumps ForceUpdate only, a scale changes the replicas
// only, both merge the labels (an empty value deletes one) in the same update, keep the rest
// of the spec (image and all), and refuse a service that moved on since it was read.
func TestServiceUpdates(t *testing.T) {
	s := testService()
	f := &fakeDaemon{services: map[string]*swarmapi.Service{"s1": s}}
	e := serve(t, f)
	ctx := t.Context()
	before := s.Spec
	if err := e.ForceUpdateService(ctx, "s1", 11, map[string]string{"swarm-agent.rebalanced": "100", "keep": ""}); err != nil {
		t.Fatal(err)
	}
	if s.Spec.TaskTemplate.ForceUpdate != 5 || s.Spec.Labels["swarm-agent.rebalanced"] != "100" || s.Spec.Labels["keep"] != "" || s.Version.Index != 12 {
		t.Fatalf("after a forced update: force %d, labels %v, version %d", s.Spec.TaskTemplate.ForceUpdate, s.Spec.Labels, s.Version.Index)
	}
	after := s.Spec
	after.TaskTemplate.ForceUpdate, after.Labels = before.TaskTemplate.ForceUpdate, before.Labels
	if !reflect.DeepEqual(after, before) {
		t.Errorf("a forced update changed more than the counter and labels:\n%+v\n%+v", after, before)
	}
	if err := e.ScaleService(ctx, "s1", 12, 10, map[string]string{"swarm-agent.resized": "200"}); err != nil {
		t.Fatal(err)
	}
	if *s.Spec.Mode.Replicated.Replicas != 10 || s.Spec.TaskTemplate.ForceUpdate != 5 || s.Spec.Labels["swarm-agent.resized"] != "200" {
		t.Fatalf("after a scale: replicas %d, force %d, labels %v", *s.Spec.Mode.Replicated.Replicas, s.Spec.TaskTemplate.ForceUpdate, s.Spec.Labels)
	}
	// Read at version 12, changed since: nothing written.
	n := f.updates
	if err := e.ScaleService(ctx, "s1", 12, 4, nil); !errors.Is(err, ErrServiceChanged) || f.updates != n {
		t.Fatalf("stale version: %v (%d updates sent), want ErrServiceChanged and none", err, f.updates-n)
	}
	// Another writer wins between the read and the write.
	f.raceUpdates = 1
	if err := e.ForceUpdateService(ctx, "s1", 13, nil); !errors.Is(err, ErrServiceChanged) {
		t.Fatalf("lost race: %v, want ErrServiceChanged", err)
	}
	if s.Spec.TaskTemplate.ForceUpdate != 5 {
		t.Error("a lost race still updated the service")
	}
	if err := e.ScaleService(ctx, "nope", 1, 1, nil); !IsNotFound(err) {
		t.Errorf("unknown service: %v, want not found", err)
	}
	global := &swarmapi.Service{ID: "g", Spec: swarmapi.ServiceSpec{Mode: swarmapi.ServiceMode{Global: &swarmapi.GlobalService{}}}}
	f.services["g"] = global
	if err := e.ScaleService(ctx, "g", 0, 3, nil); err == nil {
		t.Error("scaled a global service")
	}
}
