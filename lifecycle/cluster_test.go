package lifecycle

import (
	"context"
	"errors"
	"testing"
)

// fakeTags is AWS's tags of instances and groups; asked counts the calls.
type fakeTags struct {
	instances, groups map[string]map[string]string
	err               error
	asked             int
}

func (f *fakeTags) InstanceTags(_ context.Context, id string) (map[string]string, bool, error) {
	f.asked++
	if f.err != nil {
		return nil, false, f.err
	}
	t, ok := f.instances[id]
	return t, ok, nil
}

func (f *fakeTags) GroupTags(_ context.Context, name string) (map[string]string, bool, error) {
	f.asked++
	if f.err != nil {
		return nil, false, f.err
	}
	t, ok := f.groups[name]
	return t, ok, nil
}

// TestClusterScope: a notice is this cluster's when its instance's swarm-agent:cluster tag
// says so, else its group's; another value is another cluster's; no tag anywhere is this
// cluster's (one untagged cluster per account, as before); AWS failing is an error, not a
// verdict; answers are remembered.
func TestClusterScope(t *testing.T) {
	tags := &fakeTags{
		instances: map[string]map[string]string{
			"i-a1": {TagCluster: "a"}, "i-b1": {TagCluster: "b"},
			"i-untagged": {"Name": "x"}, "i-other-group": {},
		},
		groups: map[string]map[string]string{"group-b": {TagCluster: "b"}, "group-untagged": {}},
	}
	s := &ClusterScope{Cluster: "a", Tags: tags, Log: testLogger(t)}
	for _, tt := range []struct {
		name string
		n    Notice
		want bool
	}{
		{"instance tagged a", Notice{InstanceID: "i-a1", ASG: "group-b"}, true},
		{"instance tagged b", Notice{InstanceID: "i-b1", ASG: "group-untagged"}, false},
		{"untagged instance in b's group", Notice{InstanceID: "i-other-group", ASG: "group-b"}, false},
		{"instance gone, b's group", Notice{InstanceID: "i-gone", ASG: "group-b"}, false},
		{"nothing tagged", Notice{InstanceID: "i-untagged", ASG: "group-untagged"}, true},
		{"spot warning of a's instance (no group)", Notice{InstanceID: "i-a1"}, true},
		{"spot warning of b's instance (no group)", Notice{InstanceID: "i-b1"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Owns(t.Context(), tt.n)
			if err != nil || got != tt.want {
				t.Fatalf("Owns = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	before := tags.asked
	if ok, _ := s.Owns(t.Context(), Notice{InstanceID: "i-b1"}); ok || tags.asked != before {
		t.Errorf("asked AWS %d more times for a notice seen before, want 0", tags.asked-before)
	}
	tags.err = errors.New("RequestLimitExceeded")
	if _, err := s.Owns(t.Context(), Notice{InstanceID: "i-new", ASG: "group-new"}); err == nil {
		t.Errorf("AWS failing: no error")
	}
}
