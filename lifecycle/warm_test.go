package lifecycle

import (
	"strings"
	"testing"
)

func TestWarmed(t *testing.T) {
	for _, s := range []string{StateWarmedStopped, StateWarmedRunning, StateWarmedHibernated, StateWarmedPending, StateWarmedPendingWait, "Warmed:Pending:Proceed"} {
		if !Warmed(s) {
			t.Errorf("Warmed(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"", StateInService, StateTerminated, StateWarmedTerminated, "Warmed:", "Warmed:stopped", "warmed:Stopped",
		"Warmed:Stopped ", "Warmed:Stopped:Wait", "Standby", "Detached", StatePendingWait} {
		if Warmed(s) {
			t.Errorf("Warmed(%q) = true, want false", s)
		}
	}
}

// FuzzWarmed: only the pool's own states are warm, whatever instance metadata answers.
func FuzzWarmed(f *testing.F) {
	for _, s := range []string{"Warmed:Stopped", "Warmed:Terminated", "InService", "Warmed:", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Warmed(s) && (!strings.HasPrefix(s, "Warmed:") || strings.ContainsAny(s, " \n\t") || s == StateWarmedTerminated) {
			t.Fatalf("Warmed(%q) = true", s)
		}
	})
}
