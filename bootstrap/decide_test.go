package bootstrap

import (
	"fmt"
	"testing"
)

func TestDecideTable(t *testing.T) {
	M, W := RoleManager, RoleWorker
	tests := []struct {
		name string
		obs  Observation
		want Action
	}{
		{"locked manager", Observation{Role: M, Local: StateLocked, Managers: true}, ActFail},
		{"locked worker", Observation{Role: W, Local: StateLocked}, ActFail},
		{"pending manager leaves", Observation{Role: M, Local: StatePending, Managers: true}, ActLeave},
		{"error worker leaves", Observation{Role: W, Local: StateError}, ActLeave},
		{"active in cluster reconciles", Observation{Role: M, Local: StateActive, Managers: true}, ActReconcile},
		{"active alone reconciles", Observation{Role: M, Local: StateActive}, ActReconcile},
		{"active worker reconciles", Observation{Role: W, Local: StateActive, Managers: true, TokenReady: true}, ActReconcile},
		{"active in foreign swarm leaves", Observation{Role: W, Local: StateActive, Foreign: true, Managers: true}, ActLeave},
		{"active foreign manager leaves", Observation{Role: M, Local: StateActive, Foreign: true, Managers: true}, ActLeave},
		{"worker joins", Observation{Role: W, Local: StateInactive, Managers: true, TokenReady: true}, ActJoin},
		{"manager joins", Observation{Role: M, Local: StateInactive, Managers: true, TokenReady: true}, ActJoin},
		{"worker waits for token", Observation{Role: W, Local: StateInactive, Managers: true}, ActWait},
		{"manager waits for token", Observation{Role: M, Local: StateInactive, Managers: true}, ActWait},
		{"worker without managers waits", Observation{Role: W, Local: StateInactive}, ActWait},
		{"worker never inits even with lock", Observation{Role: W, Local: StateInactive, Lock: LockAcquired}, ActWait},
		{"manager alone tries lock", Observation{Role: M, Local: StateInactive}, ActLock},
		{"manager with lock still alone inits", Observation{Role: M, Local: StateInactive, Lock: LockAcquired}, ActInit},
		{"manager with lock sees a manager", Observation{Role: M, Local: StateInactive, Managers: true, Lock: LockAcquired}, ActRelease},
		{"manager with lock sees a manager, token ready", Observation{Role: M, Local: StateInactive, Managers: true, TokenReady: true, Lock: LockAcquired}, ActRelease},
		{"lock held elsewhere waits", Observation{Role: M, Local: StateInactive, Lock: LockHeld}, ActWait},
		{"lock held elsewhere but manager appeared joins", Observation{Role: M, Local: StateInactive, Managers: true, TokenReady: true, Lock: LockHeld}, ActJoin},
		{"unknown state treated as inactive", Observation{Role: M, Local: SwarmState("")}, ActLock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.obs); got != tt.want {
				t.Errorf("Decide(%+v) = %s, want %s", tt.obs, got, tt.want)
			}
		})
	}
}

// TestDecideInvariants walks every combination of role, local state, discovery answer, token
// and lock outcome and checks the safety rules that "exactly one swarm" rests on.
func TestDecideInvariants(t *testing.T) {
	roles := []Role{RoleManager, RoleWorker}
	states := []SwarmState{StateInactive, StatePending, StateActive, StateError, StateLocked}
	locks := []LockOutcome{LockNotTried, LockAcquired, LockHeld}
	n := 0
	for _, role := range roles {
		for _, st := range states {
			for _, foreign := range []bool{false, true} {
				for _, mgr := range []bool{false, true} {
					for _, tok := range []bool{false, true} {
						for _, lk := range locks {
							o := Observation{Role: role, Local: st, Foreign: foreign, Managers: mgr, TokenReady: tok, Lock: lk}
							a := Decide(o)
							n++
							name := fmt.Sprintf("%+v", o)
							if a == ActInit && !(role == RoleManager && st == StateInactive && !mgr && lk == LockAcquired) {
								t.Errorf("%s: init without (manager, inactive, no manager found, lock held)", name)
							}
							if a == ActJoin && !(st == StateInactive && mgr && tok) {
								t.Errorf("%s: join without a reachable manager and a token", name)
							}
							if a == ActLock && role != RoleManager {
								t.Errorf("%s: a worker went for the lock", name)
							}
							if st == StateActive && !foreign && a != ActReconcile {
								t.Errorf("%s: node in this swarm did %s, want reconcile", name, a)
							}
							if (st == StatePending || st == StateError || (st == StateActive && foreign)) && a != ActLeave {
								t.Errorf("%s: stale state not left (did %s)", name, a)
							}
							if st == StateLocked && a != ActFail {
								t.Errorf("%s: locked swarm did %s", name, a)
							}
						}
					}
				}
			}
		}
	}
	if n != 2*5*2*2*2*3 {
		t.Fatalf("walked %d combinations", n)
	}
}
