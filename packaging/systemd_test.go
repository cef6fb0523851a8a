package packaging

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unitKeys parses a unit file into "Section.Key" -> values.
func unitKeys(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("unit line %q: not key=value", line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

func TestAgentUnitSettings(t *testing.T) {
	unit, ok := Units()[AgentUnitName]
	if !ok {
		t.Fatalf("Units() lacks %s; have %v", AgentUnitName, UnitNames())
	}
	keys := unitKeys(t, unit)
	want := map[string]string{
		"Unit.After":                       "docker.service network-online.target",
		"Unit.Wants":                       "docker.service network-online.target",
		"Service.Type":                     "notify",
		"Service.NotifyAccess":             "main",
		"Service.ExecStart":                "/usr/bin/swarm-agent run",
		"Service.EnvironmentFile":          "-/etc/default/swarm-agent",
		"Service.Restart":                  "on-failure",
		"Service.RestartSec":               "5s",
		"Service.RestartPreventExitStatus": "2",
		"Service.WatchdogSec":              "60s",
		"Service.TimeoutAbortSec":          "10s",
		"Service.Environment":              "GOTRACEBACK=crash",
		"Service.TimeoutStopSec":           "15min",
		"Service.KillMode":                 "mixed",
		"Install.WantedBy":                 "multi-user.target",
	}
	if r := keys["Unit.Requires"]; len(r) > 0 {
		t.Errorf("Unit.Requires = %q: the agent restarts docker.service itself, which would stop the agent", r)
	}
	for k, v := range want {
		t.Run(k, func(t *testing.T) {
			got := keys[k]
			if len(got) != 1 || got[0] != v {
				t.Errorf("%s = %q, want exactly [%q]", k, got, v)
			}
		})
	}
}

// TestUnitsVerify runs `systemd-analyze verify` on every embedded unit. It exits 0 even on parse
// errors, so any output at all is a failure.
func TestUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd); cannot verify units")
	}
	dir := t.TempDir()
	// verify checks that ExecStart exists and is executable: point it at a stand-in.
	bin := filepath.Join(dir, "swarm-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Units this one depends on must be loadable; stand in for docker.service when Docker is not
	// installed on this machine. The trailing colon keeps systemd's own search path.
	stubs := filepath.Join(dir, "stubs")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	if !unitInstalled("docker.service") {
		stub := "[Unit]\nDescription=stand-in\n[Service]\nExecStart=" + bin + "\n"
		if err := os.WriteFile(filepath.Join(stubs, "docker.service"), []byte(stub), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range Units() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			body := strings.ReplaceAll(string(content), "/usr/bin/swarm-agent", bin)
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), analyze, "verify", path)
			cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+stubs+":", "SYSTEMD_LOG_COLOR=0")
			out, err := cmd.CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: err=%v, output:\n%s", name, err, out)
			}
		})
	}
}

func unitInstalled(name string) bool {
	for _, d := range []string{"/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return true
		}
	}
	return false
}
