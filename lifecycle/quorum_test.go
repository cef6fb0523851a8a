package lifecycle

import (
	"errors"
	"testing"
)

func TestKeepsQuorum(t *testing.T) {
	tests := []struct {
		managers, reachableOthers int
		want                      bool
	}{
		{managers: 1, reachableOthers: 0, want: false}, // the last manager
		{managers: 2, reachableOthers: 1, want: true},  // 1 of 1 left
		{managers: 2, reachableOthers: 0, want: false},
		{managers: 3, reachableOthers: 2, want: true}, // 2 of 2 left
		{managers: 3, reachableOthers: 1, want: false},
		{managers: 4, reachableOthers: 3, want: true},
		{managers: 4, reachableOthers: 2, want: true}, // 2 of 3 left
		{managers: 4, reachableOthers: 1, want: false},
		{managers: 5, reachableOthers: 4, want: true},
		{managers: 5, reachableOthers: 3, want: true},
		{managers: 5, reachableOthers: 2, want: false}, // 2 of 4 is no majority
		{managers: 7, reachableOthers: 4, want: true},
		{managers: 7, reachableOthers: 3, want: false},
		{managers: 0, reachableOthers: 0, want: false},
	}
	for _, tt := range tests {
		if got := KeepsQuorum(tt.managers, tt.reachableOthers); got != tt.want {
			t.Errorf("KeepsQuorum(%d, %d) = %t, want %t", tt.managers, tt.reachableOthers, got, tt.want)
		}
	}
}

func TestCheckDemotion(t *testing.T) {
	mgr := func(id, reach string) Node { return Node{ID: id, Role: roleManager, Reachability: reach} }
	worker := func(id string) Node { return Node{ID: id, Role: roleWorker} }
	tests := []struct {
		name    string
		nodes   []Node
		self    string
		wantErr error
	}{
		{name: "one of three, all reachable", nodes: []Node{mgr("m1", reachable), mgr("m2", reachable), mgr("m3", reachable), worker("w1")}, self: "m1"},
		{name: "one of three, another unreachable", nodes: []Node{mgr("m1", reachable), mgr("m2", "unreachable"), mgr("m3", reachable)}, self: "m1", wantErr: ErrNoQuorum},
		{name: "the unreachable one of three", nodes: []Node{mgr("m1", reachable), mgr("m2", "unreachable"), mgr("m3", reachable)}, self: "m2"},
		{name: "one of two", nodes: []Node{mgr("m1", reachable), mgr("m2", reachable)}, self: "m2"},
		{name: "one of two, other unknown", nodes: []Node{mgr("m1", "unknown"), mgr("m2", reachable)}, self: "m2", wantErr: ErrNoQuorum},
		{name: "last manager", nodes: []Node{mgr("m1", reachable), worker("w1"), worker("w2")}, self: "m1", wantErr: ErrLastManager},
		{name: "a worker", nodes: []Node{mgr("m1", reachable), worker("w1")}, self: "w1"},
		{name: "unknown node", nodes: []Node{mgr("m1", reachable)}, self: "x"},
		{name: "one of five, two others down", nodes: []Node{mgr("m1", reachable), mgr("m2", reachable), mgr("m3", reachable), mgr("m4", "unreachable"), mgr("m5", "unreachable")}, self: "m1", wantErr: ErrNoQuorum},
		{name: "one of five, one other down", nodes: []Node{mgr("m1", reachable), mgr("m2", reachable), mgr("m3", reachable), mgr("m4", reachable), mgr("m5", "unreachable")}, self: "m1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckDemotion(tt.nodes, tt.self)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("CheckDemotion(%s) = %v, want %v", tt.self, err, tt.wantErr)
			}
		})
	}
}
