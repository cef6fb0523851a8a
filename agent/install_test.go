package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/bootstrap/install"
	"github.com/swarm-agent/swarm-agent/packaging"
)

// TestInstallCommand runs `swarm-agent install` end to end on a temporary root, with PATH holding
// only a stand-in dpkg: no real command that changes the machine can run.
func TestInstallCommand(t *testing.T) {
	const debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"
	const alpine = "PRETTY_NAME=\"Alpine Linux v3.20\"\nID=alpine\nVERSION_ID=3.20.3\n"
	bin := t.TempDir()
	dpkg := "#!/bin/sh\necho 'Package: docker.io'\necho 'Status: install ok installed'\n"
	if err := os.WriteFile(filepath.Join(bin, "dpkg"), []byte(dpkg), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)

	setup := func(t *testing.T, osRelease string) (root string, args []string) {
		root = t.TempDir()
		osr := filepath.Join(root, "os-release")
		if err := os.WriteFile(osr, []byte(osRelease), 0o644); err != nil {
			t.Fatal(err)
		}
		return root, []string{"install", "--config-file=", "--log-format=json", "--root=" + root,
			"--docker-data-root=" + filepath.Join(root, "docker"), "--docker-pidfile=" + filepath.Join(root, "docker.pid"),
			"--os-release=" + osr}
	}
	runInstall := func(t *testing.T, args ...string) (code int, res install.Result, stderr string) {
		t.Helper()
		var out, errb bytes.Buffer
		code = run(t.Context(), env{stdout: &out, stderr: &errb, readFile: os.ReadFile}, args)
		if code == ExitOK {
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("stdout is not the JSON summary: %v\n%s", err, out.String())
			}
		}
		return code, res, errb.String()
	}
	unitPath := func(root string) string { return filepath.Join(root, "etc/systemd/system", packaging.AgentUnitName) }

	t.Run("writes the embedded units, then changes nothing", func(t *testing.T) {
		root, args := setup(t, debian)
		swarm := filepath.Join(root, "docker", "swarm")
		if err := os.MkdirAll(filepath.Join(swarm, "certificates"), 0o700); err != nil {
			t.Fatal(err)
		}
		code, res, stderr := runInstall(t, args...)
		if code != ExitOK {
			t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
		}
		got, err := os.ReadFile(unitPath(root))
		if err != nil || !bytes.Equal(got, packaging.Units()[packaging.AgentUnitName]) {
			t.Errorf("unit file %s: %v; want the embedded unit", unitPath(root), err)
		}
		if !res.AlreadyPresent || res.Systemd || !res.SwarmStateRemoved || len(res.Installed) != 0 {
			t.Errorf("summary = %+v, want docker present, no systemd, swarm state removed", res)
		}
		if !strings.Contains(stderr, `"component":"install"`) || !strings.Contains(stderr, "systemctl skipped") {
			t.Errorf("logs lack the install component or the systemctl-skipped line:\n%s", stderr)
		}
		code, res, stderr = runInstall(t, args...)
		if code != ExitOK || len(res.Actions) != 0 {
			t.Errorf("second run: exit %d, actions %q; want 0 and none\n%s", code, res.Actions, stderr)
		}
	})
	t.Run("dry run writes nothing", func(t *testing.T) {
		root, args := setup(t, debian)
		code, res, stderr := runInstall(t, append(args, "--dry-run")...)
		if code != ExitOK {
			t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
		}
		if want := "write " + unitPath(root); !res.DryRun || len(res.Actions) != 1 || res.Actions[0] != want {
			t.Errorf("dry run: DryRun=%v actions %q, want [%q]", res.DryRun, res.Actions, want)
		}
		if _, err := os.Stat(unitPath(root)); err == nil {
			t.Errorf("dry run wrote %s", unitPath(root))
		}
	})

	tests := []struct {
		name, osRelease string
		extra           []string
		code            int
		msg             string
	}{
		{"unsupported distribution", alpine, nil, ExitUsage, "unsupported distribution: Alpine Linux v3.20 (ID=alpine"},
		{"start without systemd", debian, []string{"--start"}, ExitUsage, "systemd is not running this machine"},
		{"relative root", debian, []string{"--root=tmp"}, ExitUsage, `--root="tmp": must be an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.osRelease == alpine {
				t.Setenv("PATH", t.TempDir()) // no dockerd, no dpkg
			}
			_, args := setup(t, tt.osRelease)
			code, _, stderr := runInstall(t, append(args, tt.extra...)...)
			last := lastLine(stderr)
			if code != tt.code || !strings.HasPrefix(last, "swarm-agent: ") || !strings.Contains(last, tt.msg) {
				t.Errorf("exit %d, last line %q; want exit %d and a line containing %q", code, last, tt.code, tt.msg)
			}
		})
	}
}
