package bootstrap

import (
	"fmt"
	"testing"
	"time"

	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestDecideTable(t *testing.T) {
	M, W := swarm.RoleManager, swarm.RoleWorker
	settle := time.Minute
	tests := []struct {
		name string
		obs  Observation
		want Action
	}{
		{"locked manager", Observation{Role: M, Local: StateLocked, Managers: true}, ActFail},
		{"locked worker", Observation{Role: W, Local: StateLocked}, ActFail},
		{"locked manager with its swarm's key in the store unlocks", Observation{Role: M, Local: StateLocked, HasNodeID: true, UnlockKey: true}, ActUnlock},
		{"locked manager with its key and managers answering unlocks", Observation{Role: M, Local: StateLocked, HasNodeID: true, UnlockKey: true, Managers: true, Membership: MemberForeign}, ActUnlock},
		{"pending manager with identity settles", Observation{Role: M, Local: StatePending, HasNodeID: true, Managers: true, Settle: settle}, ActSettle},
		{"pending manager with identity settles forever", Observation{Role: M, Local: StatePending, HasNodeID: true, Unsettled: time.Hour, Settle: settle}, ActSettle},
		{"pending of this cluster settles", Observation{Role: M, Local: StatePending, HasNodeID: true, Membership: MemberSame, Unsettled: time.Hour, Settle: settle}, ActSettle},
		{"pending unproven settles", Observation{Role: W, Local: StatePending, HasNodeID: true, Membership: MemberUnproven, Unsettled: time.Hour, Settle: settle}, ActSettle},
		{"error worker with identity settles", Observation{Role: W, Local: StateError, HasNodeID: true, Settle: settle}, ActSettle},
		{"pending of another cluster leaves", Observation{Role: M, Local: StatePending, HasNodeID: true, Membership: MemberForeign, Settle: settle}, ActLeave},
		{"error of another cluster leaves", Observation{Role: W, Local: StateError, HasNodeID: true, Membership: MemberForeign, Settle: settle}, ActLeave},
		{"expired worker leaves at once", Observation{Role: W, Local: StateError, HasNodeID: true, CertExpired: true, Settle: settle}, ActLeave},
		{"expired manager leaves while its swarm answers", Observation{Role: M, Local: StateError, HasNodeID: true, CertExpired: true, CertManager: true, Membership: MemberSame, Managers: true, Settle: settle}, ActLeave},
		{"expired manager alone keeps its Raft copy", Observation{Role: M, Local: StateError, HasNodeID: true, CertExpired: true, CertManager: true, Unsettled: time.Hour, Settle: settle}, ActSettle},
		{"expired manager unproven keeps its Raft copy", Observation{Role: W, Local: StateError, HasNodeID: true, CertExpired: true, CertManager: true, Membership: MemberUnproven, Unsettled: time.Hour, Settle: settle}, ActSettle},
		{"pending join without identity settles a while", Observation{Role: W, Local: StatePending, Unsettled: 10 * time.Second, Settle: settle}, ActSettle},
		{"pending join without identity leaves once stuck", Observation{Role: W, Local: StatePending, Unsettled: settle, Settle: settle}, ActLeave},
		{"error without identity leaves once stuck", Observation{Role: M, Local: StateError, Unsettled: 2 * settle, Settle: settle}, ActLeave},
		{"active in cluster reconciles", Observation{Role: M, Local: StateActive, HasNodeID: true, Membership: MemberSame, Managers: true}, ActReconcile},
		{"active alone reconciles", Observation{Role: M, Local: StateActive, HasNodeID: true}, ActReconcile},
		{"active worker reconciles", Observation{Role: W, Local: StateActive, HasNodeID: true, Membership: MemberSame, Managers: true, TokenReady: true}, ActReconcile},
		{"active in foreign swarm leaves", Observation{Role: W, Local: StateActive, HasNodeID: true, Membership: MemberForeign, Managers: true}, ActLeave},
		{"active foreign manager leaves", Observation{Role: M, Local: StateActive, HasNodeID: true, Membership: MemberForeign, Managers: true}, ActLeave},
		{"active unproven holds", Observation{Role: W, Local: StateActive, HasNodeID: true, Membership: MemberUnproven, Managers: true}, ActHold},
		{"worker joins", Observation{Role: W, Local: StateInactive, Managers: true, TokenReady: true}, ActJoin},
		{"manager joins", Observation{Role: M, Local: StateInactive, Managers: true, TokenReady: true}, ActJoin},
		{"worker waits for token", Observation{Role: W, Local: StateInactive, Managers: true}, ActWait},
		{"manager waits for token", Observation{Role: M, Local: StateInactive, Managers: true}, ActWait},
		{"worker without managers waits", Observation{Role: W, Local: StateInactive}, ActWait},
		{"worker never inits even with lock", Observation{Role: W, Local: StateInactive, Lock: LockAcquired}, ActWait},
		{"manager alone tries lock", Observation{Role: M, Local: StateInactive}, ActLock},
		{"manager with silent registered managers waits", Observation{Role: M, Local: StateInactive, Registered: true}, ActWait},
		{"manager with lock and silent registered managers releases", Observation{Role: M, Local: StateInactive, Registered: true, Lock: LockAcquired}, ActRelease},
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

// TestDecideInvariants walks every combination of role, local state, node identity, how long
// the state has been unsettled, membership, discovery answers, token and lock outcome, and
// checks the rules that "exactly one swarm" and "never destroy what is not proven stale" rest
// on.
func TestDecideInvariants(t *testing.T) {
	roles := []swarm.Role{swarm.RoleManager, swarm.RoleWorker}
	states := []SwarmState{StateInactive, StatePending, StateActive, StateError, StateLocked}
	members := []Membership{MemberUnknown, MemberSame, MemberForeign, MemberUnproven}
	locks := []LockOutcome{LockNotTried, LockAcquired, LockHeld}
	settle := time.Minute
	n := 0
	for _, role := range roles {
		for _, st := range states {
			for _, id := range []bool{false, true} {
				for _, unsettled := range []time.Duration{0, settle, time.Hour} {
					for _, ms := range members {
						for _, mgr := range []bool{false, true} {
							for _, reg := range []bool{false, true} {
								for _, tok := range []bool{false, true} {
									for _, lk := range locks {
										for _, cert := range [][2]bool{{false, false}, {true, false}, {true, true}, {false, true}} {
											for _, key := range []bool{false, true} {
												o := Observation{Role: role, Local: st, HasNodeID: id, Unsettled: unsettled, Settle: settle,
													Membership: ms, Managers: mgr, Registered: reg, TokenReady: tok, Lock: lk,
													CertExpired: cert[0], CertManager: cert[1], UnlockKey: key}
												checkInvariants(t, o, Decide(o))
												n++
											}
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
	if n != 2*5*2*3*4*2*2*2*3*4*2 {
		t.Fatalf("walked %d combinations", n)
	}
}

func checkInvariants(t *testing.T, o Observation, a Action) {
	t.Helper()
	name := fmt.Sprintf("%+v", o)
	if a == ActInit && !(o.Role == swarm.RoleManager && o.Local == StateInactive && !o.Managers && !o.Registered && o.Lock == LockAcquired) {
		t.Errorf("%s: init without (manager, inactive, no manager answering or registered, lock held)", name)
	}
	if a == ActJoin && !(o.Local == StateInactive && o.Managers && o.TokenReady) {
		t.Errorf("%s: join without an answering manager and a token", name)
	}
	if a == ActLock && (o.Role != swarm.RoleManager || o.Registered || o.Managers) {
		t.Errorf("%s: went for the lock (worker, or managers exist)", name)
	}
	// Never destroy what is not proven stale: leave only another cluster's swarm, an expired
	// identity that holds no Raft copy the swarm still lacks (a worker's, or a manager's while
	// managers of its swarm answer), or a join that never got an identity and stayed stuck
	// past the settle time.
	unsettled := o.Local == StatePending || o.Local == StateError
	expiredStale := unsettled && o.CertExpired && (!o.CertManager || o.Membership == MemberSame)
	if a == ActLeave {
		proven := o.Membership == MemberForeign && o.Local != StateInactive && o.Local != StateLocked
		stuckJoin := !o.HasNodeID && unsettled && o.Unsettled >= o.Settle
		if !proven && !stuckJoin && !expiredStale {
			t.Errorf("%s: left swarm state that is not proven stale", name)
		}
	}
	if o.HasNodeID && unsettled && o.Membership != MemberForeign && !expiredStale && a != ActSettle {
		t.Errorf("%s: a node with an identity did %s, want settle", name, a)
	}
	// A manager's expired identity with no manager of its swarm answering may hold the last
	// copy of Raft: never left.
	if unsettled && o.CertExpired && o.CertManager && o.HasNodeID && o.Membership != MemberSame && o.Membership != MemberForeign && a == ActLeave {
		t.Errorf("%s: left an expired manager's state with no manager of its swarm answering", name)
	}
	if o.Local == StateActive && (o.Membership == MemberSame || o.Membership == MemberUnknown) && a != ActReconcile {
		t.Errorf("%s: node in this swarm did %s, want reconcile", name, a)
	}
	// A locked node has an identity and Raft state: it is unlocked with its own swarm's key
	// or left alone, never left, joined or initialised.
	if o.Local == StateLocked && a != ActFail && !(a == ActUnlock && o.UnlockKey) {
		t.Errorf("%s: locked swarm did %s", name, a)
	}
	if a == ActUnlock && o.Local != StateLocked {
		t.Errorf("%s: unlock of a node that is not locked", name)
	}
}
