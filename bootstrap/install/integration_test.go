package install

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestIntegrationInstallDebian checks the machine after tools/prepare.sh ran `swarm-agent
// install` for real (the apt path): dockerd is installed and runs, nothing started the system
// engine where systemd does not run the machine, and a second install, as a dry run against the
// real machine, finds nothing to install.
func TestIntegrationInstallDebian(t *testing.T) {
	d, err := ReadOSRelease("/etc/os-release")
	switch {
	case err != nil:
		t.Skipf("cannot tell the distribution: %v", err)
	case d.ID != "debian":
		t.Skipf("checks the apt path that tools/prepare.sh runs on Debian; this is %s", d)
	case os.Geteuid() != 0:
		t.Skip("checks the machine tools/prepare.sh prepared as root; not running as root")
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Fatalf("dockerd not on PATH (%v): tools/prepare.sh (make prepare) installs it with `swarm-agent install`; run it first", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, dockerd, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "Docker version ") {
		t.Fatalf("%s --version: %v: %s", dockerd, err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))

	systemd := isDir("/run/systemd/system")
	if !systemd {
		// Nothing should have started the system engine: the package's scripts were held.
		if data, err := os.ReadFile("/var/run/docker.pid"); err == nil {
			if name, _ := procName(atoiOr0(strings.TrimSpace(string(data)))); name == "dockerd" {
				t.Errorf("a system dockerd runs (pid %s from /var/run/docker.pid): install started it", strings.TrimSpace(string(data)))
			}
		}
	}
	if _, err := os.Stat("/usr/sbin/policy-rc.d"); err == nil {
		if b, _ := os.ReadFile("/usr/sbin/policy-rc.d"); strings.Contains(string(b), policyRCMarker) {
			t.Errorf("install left its temporary /usr/sbin/policy-rc.d behind")
		}
	}

	// Install again as a dry run on the real machine; swarm state and units in temporary places,
	// as the test bed's engines have nothing to do with the system's data root.
	dir := t.TempDir()
	res, err := Install(ctx, Options{
		DryRun:   true,
		Units:    map[string][]byte{"swarm-agent.service": []byte("[Unit]\n")},
		UnitDir:  filepath.Join(dir, "units"),
		DataRoot: filepath.Join(dir, "docker"),
		PIDFile:  filepath.Join(dir, "docker.pid"),
		Log:      zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatalf("install --dry-run: %v", err)
	}
	if !res.AlreadyPresent || len(res.Installed) != 0 {
		t.Errorf("install --dry-run: AlreadyPresent=%v Installed=%q, want true and nothing to install", res.AlreadyPresent, res.Installed)
	}
	if i := slices.IndexFunc(res.Actions, func(a string) bool { return strings.Contains(a, "apt-get") }); i >= 0 {
		t.Errorf("install --dry-run would run %q", res.Actions[i])
	}
}

func atoiOr0(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}
