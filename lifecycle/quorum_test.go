package lifecycle

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
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
	mgr := func(id, reach string) swarm.Node {
		return swarm.Node{ID: id, Role: swarm.RoleManager, Reachability: reach}
	}
	worker := func(id string) swarm.Node { return swarm.Node{ID: id, Role: swarm.RoleWorker} }
	tests := []struct {
		name    string
		nodes   []swarm.Node
		self    string
		wantErr error
	}{
		{name: "one of three, all reachable", nodes: []swarm.Node{mgr("m1", reachable), mgr("m2", reachable), mgr("m3", reachable), worker("w1")}, self: "m1"},
		{name: "one of three, another unreachable", nodes: []swarm.Node{mgr("m1", reachable), mgr("m2", "unreachable"), mgr("m3", reachable)}, self: "m1", wantErr: ErrNoQuorum},
		{name: "the unreachable one of three", nodes: []swarm.Node{mgr("m1", reachable), mgr("m2", "unreachable"), mgr("m3", reachable)}, self: "m2"},
		{name: "one of two", nodes: []swarm.Node{mgr("m1", reachable), mgr("m2", reachable)}, self: "m2"},
		{name: "one of two, other unknown", nodes: []swarm.Node{mgr("m1", "unknown"), mgr("m2", reachable)}, self: "m2", wantErr: ErrNoQuorum},
		{name: "last manager", nodes: []swarm.Node{mgr("m1", reachable), worker("w1"), worker("w2")}, self: "m1", wantErr: ErrLastManager},
		{name: "a worker", nodes: []swarm.Node{mgr("m1", reachable), worker("w1")}, self: "w1"},
		{name: "unknown node", nodes: []swarm.Node{mgr("m1", reachable)}, self: "x"},
		{name: "one of five, two others down", nodes: []swarm.Node{mgr("m1", reachable), mgr("m2", reachable), mgr("m3", reachable), mgr("m4", "unreachable"), mgr("m5", "unreachable")}, self: "m1", wantErr: ErrNoQuorum},
		{name: "one of five, one other down", nodes: []swarm.Node{mgr("m1", reachable), mgr("m2", reachable), mgr("m3", reachable), mgr("m4", reachable), mgr("m5", "unreachable")}, self: "m1"},
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

func TestTurnOf(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	mgr := func(id, leaving string, holds bool) swarm.Node {
		n := swarm.Node{ID: id, Role: swarm.RoleManager, Reachability: reachable, Labels: map[string]string{}}
		if leaving != "" {
			n.Labels[swarm.LabelLeaving] = leaving
		}
		if holds {
			n.Labels[swarm.LabelTurn] = "1"
		}
		return n
	}
	before, same, after := at.Add(-time.Minute).Format(time.RFC3339), at.Format(time.RFC3339), at.Add(time.Minute).Format(time.RFC3339)
	alive := func(swarm.Node) bool { return true }
	tests := []struct {
		name        string
		nodes       []swarm.Node // m1 is the one deciding, marked at at
		mine        bool
		alive       func(swarm.Node) bool
		want        turn
		wantHolders []string
	}{
		{name: "nobody else leaving: claim", nodes: []swarm.Node{mgr("m2", "", false)}, want: turnClaim},
		{name: "claimed, alone: go", nodes: []swarm.Node{mgr("m2", "", false)}, mine: true, want: turnGo},
		{name: "others leave but hold nothing: claim", nodes: []swarm.Node{mgr("m2", before, false), mgr("m3", after, false)}, want: turnClaim},
		{name: "another holds it: wait without claiming", nodes: []swarm.Node{mgr("m2", after, true)}, want: turnWait, wantHolders: []string{"m2"}},
		{name: "both claimed, the other came first: give it back", nodes: []swarm.Node{mgr("m2", before, true)}, mine: true, want: turnYield, wantHolders: []string{"m2"}},
		{name: "both claimed at the same second, the smaller id keeps it", nodes: []swarm.Node{mgr("m2", same, true)}, mine: true, want: turnWait, wantHolders: []string{"m2"}},
		{name: "both claimed, this one came first: wait for the other to give it back", nodes: []swarm.Node{mgr("m2", after, true)}, mine: true, want: turnWait, wantHolders: []string{"m2"}},
		{name: "an unreadable mark comes first", nodes: []swarm.Node{mgr("m2", "soon", true)}, mine: true, want: turnYield, wantHolders: []string{"m2"}},
		{name: "a demoted holder does not count", nodes: []swarm.Node{{ID: "m2", Role: swarm.RoleWorker, Labels: map[string]string{swarm.LabelLeaving: before, swarm.LabelTurn: "1"}}}, mine: true, want: turnGo},
		{name: "a holder whose drain stopped does not count", nodes: []swarm.Node{mgr("m2", before, true)}, mine: true, alive: func(swarm.Node) bool { return false }, want: turnGo},
		{name: "a holder no longer leaving does not count", nodes: []swarm.Node{mgr("m2", "", true)}, want: turnClaim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := cmpOr(tt.alive, alive)
			nodes := append([]swarm.Node{mgr("m1", same, tt.mine)}, tt.nodes...)
			got, holders := turnOf(nodes, "m1", at.Add(300*time.Millisecond), tt.mine, a)
			var ids []string
			for _, n := range holders {
				ids = append(ids, n.ID)
			}
			if got != tt.want || !slices.Equal(ids, tt.wantHolders) {
				t.Errorf("turnOf = %d %v, want %d %v", got, ids, tt.want, tt.wantHolders)
			}
		})
	}
}

func cmpOr(f, g func(swarm.Node) bool) func(swarm.Node) bool {
	if f != nil {
		return f
	}
	return g
}
