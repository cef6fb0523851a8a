package daemonconfig

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/swarm"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var node = Owned{
	InstanceID:   "i-0123456789abcdef0",
	AZ:           "eu-west-1a",
	InstanceType: "m7g.large",
	Role:         "manager",
}

func with(o Owned, f func(*Owned)) Owned { f(&o); return o }

func TestMergeGolden(t *testing.T) {
	tests := []struct {
		name string // testdata/<name>.in.json -> testdata/<name>.golden.json
		want Owned
	}{
		{name: "empty", want: node},
		{name: "whitespace", want: Owned{}},
		{name: "operator-keys", want: with(node, func(o *Owned) { o.Labels = map[string]string{"workload": "database", "zone": "blue"} })},
		{name: "owned-keys", want: with(node, func(o *Owned) {
			o.Role = "worker"
			o.Labels = map[string]string{"workload": "database"}
			o.LogDriver = "journald"
			o.LogOpts = map[string]string{"tag": "{{.Name}}"}
		})},
		{name: "log-keep", want: node},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tt.name+".in.json"))
			if err != nil {
				t.Fatal(err)
			}
			out, changed, err := Merge(in, tt.want)
			if err != nil {
				t.Fatalf("Merge: %v", err)
			}
			if !changed {
				t.Errorf("changed = false, want true for input %q", in)
			}
			golden := filepath.Join("testdata", tt.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("Merge output differs from %s:\ngot:\n%s\nwant:\n%s", golden, out, want)
			}
			checkInvariants(t, in, out, tt.want)

			// Merging again changes nothing and returns the same bytes.
			again, changed, err := Merge(out, tt.want)
			if err != nil || changed || !bytes.Equal(again, out) {
				t.Errorf("second Merge: changed=%v err=%v, identical=%v; want false, nil, true", changed, err, bytes.Equal(again, out))
			}
		})
	}
}

// checkInvariants asserts the merge rules on decoded documents, independent of the golden text.
func checkInvariants(t *testing.T, in, out []byte, want Owned) {
	t.Helper()
	var before, after map[string]any
	if len(bytes.TrimSpace(in)) > 0 {
		if err := json.Unmarshal(in, &before); err != nil {
			t.Fatalf("input: %v", err)
		}
	}
	if err := json.Unmarshal(out, &after); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if after["live-restore"] != false {
		t.Errorf("live-restore = %v, want false", after["live-restore"])
	}
	for k, v := range before {
		switch k {
		case "labels", "live-restore":
			continue
		case "log-driver":
			if want.LogDriver != "" {
				continue
			}
		case "log-opts":
			if want.LogOpts != nil {
				continue
			}
		}
		if got, _ := json.Marshal(after[k]); string(got) != mustJSON(t, v) {
			t.Errorf("operator key %q = %s, want kept as %s", k, got, mustJSON(t, v))
		}
	}
	if want.LogDriver != "" && after["log-driver"] != want.LogDriver {
		t.Errorf("log-driver = %v, want %q", after["log-driver"], want.LogDriver)
	}
	labels := map[string]int{}
	var list []any
	if l, ok := after["labels"].([]any); ok {
		list = l
	}
	for _, l := range list {
		labels[l.(string)]++
	}
	for l, n := range labels {
		if n > 1 {
			t.Errorf("label %q appears %d times", l, n)
		}
		k, _, _ := strings.Cut(l, "=")
		if strings.HasPrefix(k, swarm.LabelPrefix) {
			if !ownedLabel(want, l) {
				t.Errorf("stale agent label %q kept", l)
			}
		}
	}
	if want.InstanceID != "" && labels[swarm.LabelInstanceID+"="+want.InstanceID] != 1 {
		t.Errorf("labels %v: missing instance id", list)
	}
	for k, v := range want.Labels {
		if labels[k+"="+v] != 1 {
			t.Errorf("labels %v: missing operator label %s=%s", list, k, v)
		}
	}
	if bl, ok := before["labels"].([]any); ok {
		for _, l := range bl {
			k, _, _ := strings.Cut(l.(string), "=")
			if _, replaced := want.Labels[k]; replaced || strings.HasPrefix(k, swarm.LabelPrefix) {
				continue
			}
			if labels[l.(string)] != 1 {
				t.Errorf("operator label %q lost", l)
			}
		}
	}
}

func ownedLabel(o Owned, l string) bool {
	if len(o.Labels) > 0 {
		keys := slices.Sorted(maps.Keys(o.Labels))
		if l == swarm.LabelNodeLabels+"="+strings.Join(keys, ",") {
			return true
		}
	}
	for _, kv := range [][2]string{{swarm.LabelInstanceID, o.InstanceID}, {swarm.LabelAZ, o.AZ}, {swarm.LabelInstanceType, o.InstanceType}, {swarm.LabelRole, o.Role}} {
		if kv[1] != "" && l == kv[0]+"="+kv[1] {
			return true
		}
	}
	return false
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMergeUnchangedKeepsBytes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Owned
	}{
		{
			name: "compact, already merged",
			in:   `{"labels":["team=a","swarm-agent.instance-id=i-1"],"live-restore":false}`,
			want: Owned{InstanceID: "i-1"},
		},
		{
			name: "odd spacing and key order, log settings kept",
			in:   "{ \"log-opts\":{\"max-size\":\"10m\"},\n\t\"live-restore\" : false,\"log-driver\":\"json-file\" }",
			want: Owned{},
		},
		{
			name: "log settings given and equal",
			in:   `{"live-restore":false,"log-driver":"journald","log-opts":{"tag":"x"}}`,
			want: Owned{LogDriver: "journald", LogOpts: map[string]string{"tag": "x"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, changed, err := Merge([]byte(tt.in), tt.want)
			if err != nil {
				t.Fatalf("Merge: %v", err)
			}
			if changed {
				t.Errorf("changed = true, want false; out:\n%s", out)
			}
			if string(out) != tt.in {
				t.Errorf("out = %q, want the input byte for byte", out)
			}
		})
	}
}

func TestMergeRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Owned
		wantErr string
	}{
		{name: "truncated", in: `{"labels": [`, wantErr: "invalid JSON"},
		{name: "not an object", in: `["a"]`, wantErr: "top level must be a JSON object"},
		{name: "trailing data", in: `{} {}`, wantErr: "data after the top-level object"},
		{name: "duplicate key", in: `{"debug":true,"debug":false}`, wantErr: `key "debug" appears twice`},
		{name: "labels not a list", in: `{"labels":"a=b"}`, wantErr: `key "labels"`},
		{name: "reserved operator label", in: `{}`, want: Owned{Labels: map[string]string{"swarm-agent.role": "x"}}, wantErr: "reserved for the agent"},
		{name: "label key with =", in: `{}`, want: Owned{Labels: map[string]string{"a=b": "c"}}, wantErr: "must not contain"},
		{name: "empty label key", in: `{}`, want: Owned{Labels: map[string]string{"": "c"}}, wantErr: "empty key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := Merge([]byte(tt.in), tt.want)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Merge(%q) = %q, %v; want error containing %q", tt.in, out, err, tt.wantErr)
			}
		})
	}
}

func TestApply(t *testing.T) {
	t.Run("missing file and directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "etc", "docker", "daemon.json")
		changed, err := Apply(path, node)
		if err != nil || !changed {
			t.Fatalf("Apply = %v, %v; want true, nil", changed, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("mode = %v, want 0644", fi.Mode().Perm())
		}
		b, _ := os.ReadFile(path)
		if !strings.Contains(string(b), swarm.LabelInstanceID+"="+node.InstanceID) {
			t.Errorf("file lacks the instance id label:\n%s", b)
		}
	})
	t.Run("unchanged file is not rewritten", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "daemon.json")
		in := `{"live-restore":false}`
		if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
			t.Fatal(err)
		}
		before, _ := os.Stat(path)
		changed, err := Apply(path, Owned{})
		if err != nil || changed {
			t.Fatalf("Apply = %v, %v; want false, nil", changed, err)
		}
		after, _ := os.Stat(path)
		if !os.SameFile(before, after) || after.Mode().Perm() != 0o600 {
			t.Error("file was replaced although nothing changed")
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Errorf("directory holds %d entries, want only daemon.json (temp file left?)", len(entries))
		}
	})
	t.Run("invalid file names the path and stays untouched", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "daemon.json")
		in := `{"debug": tru`
		if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Apply(path, node)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "invalid JSON") {
			t.Fatalf("Apply error = %v; want one naming %s and invalid JSON", err, path)
		}
		if b, _ := os.ReadFile(path); string(b) != in {
			t.Errorf("file changed to %q", b)
		}
	})
}

func FuzzMerge(f *testing.F) {
	for _, s := range []string{"", "{}", `{"labels":["a=b","swarm-agent.role=x"],"live-restore":true}`, `{"log-opts":{"a":"b"}}`, "[1]", `{"a":{"b":[1,2,{"c":null}]}}`} {
		f.Add([]byte(s), "i-1", "web=1")
	}
	f.Fuzz(func(t *testing.T, in []byte, instanceID, label string) {
		want := Owned{InstanceID: instanceID}
		if k, v, ok := strings.Cut(label, "="); ok {
			want.Labels = map[string]string{k: v}
		}
		out, changed, err := Merge(in, want)
		if err != nil {
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("Merge(%q) produced invalid JSON %q: %v", in, out, err)
		}
		if doc["live-restore"] != false {
			t.Fatalf("Merge(%q): live-restore = %v", in, doc["live-restore"])
		}
		if !changed && !bytes.Equal(out, in) {
			t.Fatalf("changed=false but output differs from input")
		}
		again, changed2, err := Merge(out, want)
		if err != nil || changed2 || !bytes.Equal(again, out) {
			t.Fatalf("Merge not idempotent on %q: changed=%v err=%v", out, changed2, err)
		}
	})
}

func TestNodeLabels(t *testing.T) {
	engine := map[string]string{
		swarm.LabelInstanceID: "i-1", swarm.LabelAZ: "us-east-1a", swarm.LabelInstanceType: "t3.medium", swarm.LabelRole: "worker",
		swarm.LabelNodeLabels: "workload,tier,swarm-agent.sneaky", "workload": "database", "tier": "gold",
		"swarm-testbed.node": "node4", "swarm-agent.sneaky": "x",
	}
	got := NodeLabels(engine)
	want := map[string]string{"az": "us-east-1a", "instance-type": "t3.medium", swarm.LabelInstanceID: "i-1",
		"workload": "database", "tier": "gold"}
	if !maps.Equal(got, want) {
		t.Fatalf("NodeLabels = %v, want %v", got, want)
	}
	if got := NodeLabels(map[string]string{"other": "x"}); len(got) != 0 {
		t.Fatalf("labels the agent did not write were copied: %v", got)
	}
}
