package awsfront

import (
	"slices"
	"testing"
)

func TestPickScaleIn(t *testing.T) {
	tests := map[string]struct {
		in   []scaleInCandidate
		n    int
		want []string
	}{
		"lowest id when zones are even": {
			in: []scaleInCandidate{{id: "i-3", az: "a"}, {id: "i-1", az: "b"}, {id: "i-2", az: "c"}}, n: 1, want: []string{"i-1"}},
		"the zone with most instances first": {
			in: []scaleInCandidate{{id: "i-1", az: "a"}, {id: "i-2", az: "b"}, {id: "i-3", az: "b"}}, n: 1, want: []string{"i-2"}},
		"protected never, even in the fullest zone": {
			in: []scaleInCandidate{{id: "i-1", az: "a"}, {id: "i-2", az: "b", protected: true}, {id: "i-3", az: "b", protected: true}}, n: 1, want: []string{"i-1"}},
		"zones rebalance as instances go": {
			in: []scaleInCandidate{{id: "i-1", az: "a"}, {id: "i-2", az: "a"}, {id: "i-3", az: "b"}, {id: "i-4", az: "b"}}, n: 2, want: []string{"i-1", "i-3"}},
		"only protected left: fewer than asked": {
			in: []scaleInCandidate{{id: "i-1", az: "a", protected: true}, {id: "i-2", az: "a"}}, n: 2, want: []string{"i-2"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := pickScaleIn(tt.in, tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("pickScaleIn = %v, want %v", got, tt.want)
			}
		})
	}
}
