package scaleout

import (
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/swarm"
)

func TestParseLabels(t *testing.T) {
	good := []struct {
		labels map[string]string
		want   OptIn
	}{
		{map[string]string{}, OptIn{}},
		{map[string]string{"other": "x"}, OptIn{}},
		{map[string]string{swarm.LabelRebalance: "true"}, OptIn{Rebalance: true}},
		{map[string]string{swarm.LabelRebalance: "false"}, OptIn{}},
		{map[string]string{swarm.LabelReplicasPerNode: "2"}, OptIn{PerNode: 2}},
		{map[string]string{swarm.LabelReplicasPerNode: "2", swarm.LabelReplicasMin: "6", swarm.LabelReplicasMax: "20"}, OptIn{PerNode: 2, Min: 6, Max: 20}},
		{map[string]string{swarm.LabelReplicasPerNode: "1", swarm.LabelReplicasMin: "0"}, OptIn{PerNode: 1}},
		{map[string]string{swarm.LabelReplicasPerNode: "1000", swarm.LabelReplicasMin: "3", swarm.LabelReplicasMax: "3"}, OptIn{PerNode: 1000, Min: 3, Max: 3}},
	}
	for _, c := range good {
		got, err := ParseLabels(c.labels)
		if err != nil || got != c.want {
			t.Errorf("ParseLabels(%v) = %+v, %v; want %+v", c.labels, got, err, c.want)
		}
	}
	bad := []struct {
		labels map[string]string
		says   string
	}{
		{map[string]string{swarm.LabelRebalance: "yes"}, `swarm-agent.rebalance="yes": must be true or false`},
		{map[string]string{swarm.LabelRebalance: ""}, "must be true or false"},
		{map[string]string{swarm.LabelReplicasPerNode: "0"}, `swarm-agent.replicas-per-node="0": must be a whole number from 1 to 1000`},
		{map[string]string{swarm.LabelReplicasPerNode: "1001"}, "from 1 to 1000"},
		{map[string]string{swarm.LabelReplicasPerNode: "-1"}, "from 1 to 1000"},
		{map[string]string{swarm.LabelReplicasPerNode: " 2"}, "from 1 to 1000"},
		{map[string]string{swarm.LabelReplicasPerNode: "2.5"}, "from 1 to 1000"},
		{map[string]string{swarm.LabelReplicasPerNode: "2", swarm.LabelReplicasMax: "0"}, "replicas-max=\"0\": must be a whole number from 1 to 100000"},
		{map[string]string{swarm.LabelReplicasPerNode: "2", swarm.LabelReplicasMin: "100001"}, "from 0 to 100000"},
		{map[string]string{swarm.LabelReplicasPerNode: "2", swarm.LabelReplicasMin: "5", swarm.LabelReplicasMax: "4"}, "replicas-min=5 is above swarm-agent.replicas-max=4"},
		{map[string]string{swarm.LabelReplicasMax: "4"}, "need swarm-agent.replicas-per-node"},
	}
	for _, c := range bad {
		_, err := ParseLabels(c.labels)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("ParseLabels(%v) error %v, want one saying %q", c.labels, err, c.says)
		}
	}
}

// FuzzParseLabels: whatever the labels say, ParseLabels does not panic, and what it accepts
// is within the documented bounds.
func FuzzParseLabels(f *testing.F) {
	f.Add("true", "2", "6", "20")
	f.Add("false", "1", "", "")
	f.Add("", "1000", "0", "100000")
	f.Add("TRUE", "+3", "-1", "1e3")
	f.Fuzz(func(t *testing.T, rebalance, per, lo, hi string) {
		l := map[string]string{}
		for k, v := range map[string]string{swarm.LabelRebalance: rebalance, swarm.LabelReplicasPerNode: per,
			swarm.LabelReplicasMin: lo, swarm.LabelReplicasMax: hi} {
			if v != "" {
				l[k] = v
			}
		}
		o, err := ParseLabels(l)
		if err != nil {
			if o != (OptIn{}) {
				t.Errorf("an error with a non-zero opt-in %+v", o)
			}
			return
		}
		if o.PerNode > MaxPerNode || o.Min > MaxReplicas || o.Max > MaxReplicas || (o.Max > 0 && o.Min > o.Max) {
			t.Errorf("accepted %v as %+v: out of bounds", l, o)
		}
		if o.PerNode == 0 && (o.Min > 0 || o.Max > 0) {
			t.Errorf("accepted %v as %+v: min or max without per-node", l, o)
		}
	})
}

func TestConstraints(t *testing.T) {
	n := swarm.Node{ID: "n1abc", Hostname: "worker-1", Role: swarm.RoleWorker, Addr: "10.0.1.5", OS: "linux", Arch: "x86_64",
		Labels: map[string]string{"az": "eu-west-1a", "Tier": "Web"}, EngineLabels: map[string]string{"swarm-agent.instance-type": "t3.large"}}
	cases := []struct {
		expr string
		want bool
	}{
		{"node.role==worker", true},
		{"node.role == manager", false},
		{"node.role!=manager", true},
		{"NODE.ROLE==WORKER", true}, // keys and values without regard to case
		{"node.id==n1abc", true},
		{"node.hostname!=worker-1", false},
		{"node.platform.os==linux", true},
		{"node.platform.arch==x86_64", true},
		{"node.labels.az==eu-west-1a", true},
		{"node.labels.az==eu-west-1b", false},
		{"Node.Labels.az==EU-WEST-1A", true},
		{"node.labels.AZ==eu-west-1a", false}, // label names with case: AZ is missing, ""
		{"node.labels.tier==web", false},      // Tier, not tier
		{"node.labels.Tier==web", true},
		{"node.labels.missing!=x", true},
		{"engine.labels.swarm-agent.instance-type==t3.large", true},
		{"node.ip==10.0.1.5", true},
		{"node.ip==10.0.1.0/24", true},
		{"node.ip!=10.0.2.0/24", true},
		{"node.ip==10.0.2.0/24", false},
		{"node.ip==not-an-ip", false},
		{"node.ip!=not-an-ip", false}, // a malformed address matches no node
		{"node.unknown==x", false},
	}
	for _, c := range cases {
		k, err := parseConstraint(c.expr)
		if err != nil {
			t.Errorf("parseConstraint(%q): %v", c.expr, err)
			continue
		}
		if got := k.matches(n); got != c.want {
			t.Errorf("%q matches %v, want %v", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{"node.role", "node.role=worker", "a==b", "node.labels.x==", "node.labels.x==a<b", "==x", "node.labels.x!==y", "1node.role==x"} {
		if _, err := parseConstraint(bad); err == nil {
			t.Errorf("parseConstraint(%q) accepted it", bad)
		}
	}
	if !platformMatches([]string{"linux/amd64"}, n) || !platformMatches([]string{"/arm64", "linux/"}, n) || platformMatches([]string{"linux/arm64", "windows/amd64"}, n) {
		t.Error("platformMatches: x86_64 is amd64; an empty part matches anything")
	}
}

// FuzzParseConstraint: no expression makes the parser panic; an accepted one has a trimmed
// key and value without the operator, and its == and != forms disagree on every node.
func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{"node.role==worker", "node.labels.az != a", "node.ip==10.0.0.0/8", "engine.labels.x==y", "x", "a!=b==c"} {
		f.Add(s, "worker", "10.0.0.1")
	}
	f.Fuzz(func(t *testing.T, expr, label, addr string) {
		c, err := parseConstraint(expr)
		if err != nil {
			return
		}
		if c.key != strings.TrimSpace(c.key) || c.value != strings.TrimSpace(c.value) || strings.Contains(c.key, "=") || strings.Contains(c.value, "=") {
			t.Fatalf("parseConstraint(%q) = %+v", expr, c)
		}
		n := swarm.Node{ID: label, Hostname: label, Role: swarm.Role(label), Addr: addr, OS: label, Arch: label,
			Labels: map[string]string{label: label}, EngineLabels: map[string]string{label: label}}
		other := c
		other.equal = !c.equal
		if ip := strings.EqualFold(c.key, "node.ip"); !ip && c.matches(n) == other.matches(n) && knownKey(c.key) {
			t.Fatalf("%q and its negation agree on %+v", expr, n)
		}
	})
}

// knownKey reports whether key is one the scheduler knows (an unknown one matches nothing).
func knownKey(key string) bool {
	switch strings.ToLower(key) {
	case "node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch":
		return true
	}
	_, ok := labelOf(key, swarm.Node{})
	return ok
}
