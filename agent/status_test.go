package agent

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The "boot finished" line says how long each stage took: a stage entered twice adds up, the
// last one runs until the end, and a nil status file (dry run) gives an empty set.
func TestStageTimes(t *testing.T) {
	f := newStatusFile("", "boot")
	t0 := time.Now()
	f.marks = []stageMark{{"checking docker", t0}, {"discovering managers", t0.Add(100 * time.Millisecond)},
		{"waiting for a manager", t0.Add(150 * time.Millisecond)}, {"discovering managers", t0.Add(1150 * time.Millisecond)}}
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Dict("stages_ms", f.stageTimes(t0.Add(1200*time.Millisecond))).Msg("boot finished")
	var line struct {
		Stages map[string]float64 `json:"stages_ms"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"checking docker": 100, "discovering managers": 100, "waiting for a manager": 1000}
	if len(line.Stages) != len(want) {
		t.Fatalf("stages %v, want %v", line.Stages, want)
	}
	for k, v := range want {
		if line.Stages[k] != v {
			t.Errorf("stage %q took %v ms, want %v", k, line.Stages[k], v)
		}
	}
	buf.Reset()
	var nilFile *statusFile
	nilFile.stage("ignored")
	log.Info().Dict("stages_ms", nilFile.stageTimes(time.Now())).Msg("x")
	if !bytes.Contains(buf.Bytes(), []byte(`"stages_ms":{}`)) {
		t.Errorf("nil status file: %s", buf.Bytes())
	}
}
