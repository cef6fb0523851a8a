// Package daemonconfig merges the settings the agent owns (engine labels, live-restore, log
// settings given to the agent) into Docker's daemon.json without losing the operator's own keys.
package daemonconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// DefaultPath is where dockerd reads its configuration.
const DefaultPath = "/etc/docker/daemon.json"

// Owned is what the agent wants in daemon.json. Empty fields are not written.
type Owned struct {
	InstanceID   string
	AZ           string
	InstanceType string
	Role         string
	// Labels are the operator's engine labels given to the agent (workload=database). A key
	// already in the file is replaced; labels in the file that are not named here are kept.
	Labels map[string]string
	// LogDriver and LogOpts are written when set; when empty the file's values are kept.
	LogDriver string
	LogOpts   map[string]string
}

// labels returns the engine labels to set, agent keys first, each group sorted by key.
func (o Owned) labels() ([]string, map[string]bool, error) {
	keys := map[string]bool{}
	var out []string
	for _, kv := range [][2]string{
		{swarm.LabelInstanceID, o.InstanceID},
		{swarm.LabelAZ, o.AZ},
		{swarm.LabelInstanceType, o.InstanceType},
		{swarm.LabelRole, o.Role},
	} {
		if kv[1] != "" {
			if !utf8.ValidString(kv[1]) {
				return nil, nil, fmt.Errorf("engine label %s=%q: value is not valid UTF-8", kv[0], kv[1])
			}
			out = append(out, kv[0]+"="+kv[1])
			keys[kv[0]] = true
		}
	}
	names := make([]string, 0, len(o.Labels))
	for k := range o.Labels {
		if err := checkLabelKey(k); err != nil {
			return nil, nil, err
		}
		if !utf8.ValidString(o.Labels[k]) {
			return nil, nil, fmt.Errorf("engine label %s=%q: value is not valid UTF-8", k, o.Labels[k])
		}
		names = append(names, k)
	}
	slices.Sort(names)
	if len(names) > 0 {
		out = append(out, swarm.LabelNodeLabels+"="+strings.Join(names, ","))
		keys[swarm.LabelNodeLabels] = true
	}
	for _, k := range names {
		out = append(out, k+"="+o.Labels[k])
		keys[k] = true
	}
	return out, keys, nil
}

func (o Owned) checkLog() error {
	if !utf8.ValidString(o.LogDriver) {
		return fmt.Errorf("log driver %q: not valid UTF-8", o.LogDriver)
	}
	for k, v := range o.LogOpts {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("log option %q=%q: not valid UTF-8", k, v)
		}
	}
	return nil
}

func checkLabelKey(k string) error {
	switch {
	case k == "":
		return errors.New("engine label: empty key")
	case strings.HasPrefix(k, swarm.LabelPrefix):
		return fmt.Errorf("engine label %q: keys starting with %q are reserved for the agent", k, swarm.LabelPrefix)
	case !utf8.ValidString(k):
		return fmt.Errorf("engine label %q: key is not valid UTF-8", k)
	case strings.ContainsAny(k, "= \t\r\n"):
		return fmt.Errorf("engine label %q: key must not contain '=' or white space", k)
	}
	return nil
}

// member is one top-level key of daemon.json, in file order.
type member struct {
	key string
	raw json.RawMessage
}

// Merge returns existing with the owned keys set: "labels" (agent labels replaced, operator
// labels kept), "live-restore": false (swarm mode refuses live-restore), and the log settings
// when want names them. Other keys keep their values and order. When nothing changes, out is
// existing itself, byte for byte, and changed is false. An empty input counts as {}.
func Merge(existing []byte, want Owned) (out []byte, changed bool, err error) {
	members, err := parse(existing)
	if err != nil {
		return nil, false, err
	}
	if err := want.checkLog(); err != nil {
		return nil, false, err
	}
	wantLabels, wantKeys, err := want.labels()
	if err != nil {
		return nil, false, err
	}

	var labels []string
	if i := index(members, "labels"); i >= 0 {
		var cur []string
		if err := json.Unmarshal(members[i].raw, &cur); err != nil {
			return nil, false, fmt.Errorf(`key "labels": want a list of "key=value" strings: %w`, err)
		}
		for _, l := range cur {
			k, _, _ := strings.Cut(l, "=")
			if strings.HasPrefix(k, swarm.LabelPrefix) || wantKeys[k] {
				continue
			}
			labels = append(labels, l)
		}
	}
	labels = append(labels, wantLabels...)

	set := func(key string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
		if i := index(members, key); i >= 0 {
			if !jsonEqual(members[i].raw, raw) {
				members[i].raw = raw
				changed = true
			}
			return nil
		}
		members = append(members, member{key: key, raw: raw})
		changed = true
		return nil
	}
	if len(labels) > 0 || index(members, "labels") >= 0 {
		if labels == nil {
			labels = []string{}
		}
		if err := set("labels", labels); err != nil {
			return nil, false, err
		}
	}
	if err := set("live-restore", false); err != nil {
		return nil, false, err
	}
	if want.LogDriver != "" {
		if err := set("log-driver", want.LogDriver); err != nil {
			return nil, false, err
		}
	}
	if want.LogOpts != nil {
		if err := set("log-opts", want.LogOpts); err != nil {
			return nil, false, err
		}
	}
	if !changed {
		return existing, false, nil
	}
	out, err = format(members)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// parse reads the top-level object keeping its key order.
func parse(b []byte) ([]member, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("invalid daemon config: top level must be a JSON object, found %v", tok)
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON at offset %d: %w", dec.InputOffset(), err)
		}
		key, _ := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("invalid JSON in key %q: %w", key, err)
		}
		if index(members, key) >= 0 {
			return nil, fmt.Errorf("invalid daemon config: key %q appears twice", key)
		}
		members = append(members, member{key: key, raw: raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON at offset %d: %w", dec.InputOffset(), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("invalid JSON at offset %d: data after the top-level object", dec.InputOffset())
	}
	return members, nil
}

func index(ms []member, key string) int {
	return slices.IndexFunc(ms, func(m member) bool { return m.key == key })
}

func jsonEqual(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// format writes the object with two-space indentation and a final newline.
func format(ms []member) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.raw)
	}
	b.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("format daemon config: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// Apply merges want into the file at path and writes it, atomically and with mode 0644, only
// when something changed. A missing file counts as empty; its directory is created.
func Apply(path string, want Owned) (changed bool, err error) {
	existing, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("read docker daemon config %s: %w", path, err)
	}
	out, changed, err := Merge(existing, want)
	if err != nil {
		return false, fmt.Errorf("docker daemon config %s: %w", path, err)
	}
	if !changed {
		return false, nil
	}
	if err := writeAtomic(path, out); err != nil {
		return false, fmt.Errorf("write docker daemon config %s: %w", path, err)
	}
	return true, nil
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; best effort
		d.Close()
	}
	return nil
}

// NodeLabels derives, from a node's engine labels as the agent wrote them, the node labels that
// placement constraints use: az, instance-type, the instance id (swarm-agent.instance-id) and
// the operator's labels (workload=database). Engine labels the agent did not write are ignored.
func NodeLabels(engine map[string]string) map[string]string {
	out := map[string]string{}
	for from, to := range map[string]string{swarm.LabelAZ: "az", swarm.LabelInstanceType: "instance-type", swarm.LabelInstanceID: swarm.LabelInstanceID} {
		if v := engine[from]; v != "" {
			out[to] = v
		}
	}
	for k := range strings.SplitSeq(engine[swarm.LabelNodeLabels], ",") {
		if k = strings.TrimSpace(k); k != "" && !strings.HasPrefix(k, swarm.LabelPrefix) {
			if v, ok := engine[k]; ok {
				out[k] = v
			}
		}
	}
	return out
}
