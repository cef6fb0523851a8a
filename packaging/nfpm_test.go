package packaging_test

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/agent"
	"github.com/swarm-agent/swarm-agent/packaging"
)

// TestDefaultFile: the example of /etc/default/swarm-agent the packages ship is an environment
// file the agent reads, and its examples, uncommented, name real settings.
func TestDefaultFile(t *testing.T) {
	b, err := os.ReadFile("swarm-agent.default")
	if err != nil {
		t.Fatal(err)
	}
	m, err := agent.ParseEnvFile(b)
	if err != nil || len(m) != 0 {
		t.Fatalf("as shipped: ParseEnvFile = %v, %v; want no settings (all commented)", m, err)
	}
	uncommented := strings.ReplaceAll(string(b), "\n#SWARM_AGENT_", "\nSWARM_AGENT_")
	m, err = agent.ParseEnvFile([]byte(uncommented))
	if err != nil || len(m) == 0 {
		t.Fatalf("examples uncommented: ParseEnvFile = %v, %v", m, err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		if !bytes.Contains(readme, []byte("`"+k+"`")) {
			t.Errorf("example %s=%q: README.md's flags table has no %s", k, v, k)
		}
	}
}

// TestPackageScripts: the deb/rpm scripts are valid sh and succeed where systemd does not run
// the machine (a container, a chroot during an image build).
func TestPackageScripts(t *testing.T) {
	script := "scripts/daemon-reload.sh"
	if out, err := exec.Command("sh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("sh -n %s: %v\n%s", script, err, out)
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs this machine: the script would reload it for real")
	}
	if out, err := exec.Command("sh", script).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("sh %s: err=%v output=%q, want silent success", script, err, out)
	}
}

// TestPackages runs packaging/package.sh (nfpm from the Go module proxy) on the real binary, then
// looks into the .deb with dpkg-deb, installs, upgrades and purges it with dpkg into a scratch
// root, and reads the .rpm with rpm when installed.
func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary and runs nfpm (about 20 s the first time)")
	}
	for _, tool := range []string{"dpkg-deb", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: the .deb cannot be inspected here", tool)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "swarm-agent")
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", bin, ".")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dist := filepath.Join(dir, "dist")
	pkg := exec.CommandContext(t.Context(), "bash", "package.sh")
	pkg.Env = append(os.Environ(), "BIN="+bin, "DIST="+dist, "VERSION=1.2.3")
	if out, err := pkg.CombinedOutput(); err != nil {
		t.Fatalf("package.sh: %v\n%s", err, out)
	}
	debArch, rpmArch := runtime.GOARCH, map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	deb := filepath.Join(dist, "swarm-agent_1.2.3-1_"+debArch+".deb")
	rpm := filepath.Join(dist, "swarm-agent-1.2.3-1."+rpmArch+".rpm")
	entries, _ := os.ReadDir(dist)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{filepath.Base(rpm), filepath.Base(deb)}; !slices.Equal(names, want) {
		t.Fatalf("dist has %q, want %q", names, want)
	}
	run := func(t *testing.T, name string, args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	wantFiles := map[string]string{ // path -> mode as ls shows it
		"/usr/bin/swarm-agent":                        "-rwxr-xr-x",
		"/usr/lib/systemd/system/swarm-agent.service": "-rw-r--r--",
		"/usr/share/swarm-agent/swarm-agent.default":  "-rw-r--r--",
	}

	t.Run("deb", func(t *testing.T) {
		fields := run(t, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Recommends")
		for _, want := range []string{"Package: swarm-agent", "Version: 1.2.3-1", "Architecture: " + debArch, "Recommends: docker.io | docker-ce"} {
			if !strings.Contains(fields, want) {
				t.Errorf("control fields lack %q:\n%s", want, fields)
			}
		}
		got := map[string]string{}
		for l := range strings.Lines(run(t, "dpkg-deb", "-c", deb)) {
			f := strings.Fields(l)
			if len(f) == 6 && strings.HasPrefix(f[0], "-") {
				got[strings.TrimPrefix(f[5], ".")] = f[0]
			}
		}
		if !maps.Equal(got, wantFiles) {
			t.Errorf("files in the .deb: %v, want %v", got, wantFiles)
		}
		ctl := filepath.Join(t.TempDir(), "control")
		run(t, "dpkg-deb", "-e", deb, ctl)
		// The package owns no file under /etc: /etc/default/swarm-agent is boot's, and its
		// existence is what lets the unit start (ConditionPathExists).
		if b, err := os.ReadFile(filepath.Join(ctl, "conffiles")); err == nil && len(bytes.TrimSpace(b)) > 0 {
			t.Errorf("conffiles = %q, want none", b)
		}
		x := filepath.Join(t.TempDir(), "x")
		run(t, "dpkg-deb", "-x", deb, x)
		unit, _ := os.ReadFile(filepath.Join(x, "usr/lib/systemd/system/swarm-agent.service"))
		if !bytes.Equal(unit, packaging.Units()[packaging.AgentUnitName]) {
			t.Error("the packaged unit differs from packaging/systemd/swarm-agent.service")
		}
		if out := run(t, filepath.Join(x, "usr/bin/swarm-agent"), "version"); out == "" {
			t.Error("packaged swarm-agent version printed nothing")
		}
	})

	// dpkg into a scratch root; the scripts run on the host (chrootless) with DPKG_ROOT set.
	t.Run("dpkg install, upgrade, purge", func(t *testing.T) {
		root := t.TempDir()
		for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		dpkg := func(args ...string) string {
			return run(t, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-not-root"}, args...)...)
		}
		dpkg("-i", deb)
		for p := range wantFiles {
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				t.Errorf("after install: %v", err)
			}
		}
		conf := filepath.Join(root, "etc/default/swarm-agent")
		if _, err := os.Stat(conf); err == nil {
			t.Errorf("install created /etc/default/swarm-agent: the unit would start without settings")
		}
		// What boot writes survives an upgrade and goes with a purge.
		written := "SWARM_AGENT_ROLE=worker\n"
		if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(conf, []byte(written), 0o644); err != nil {
			t.Fatal(err)
		}
		dpkg("-i", deb) // upgrade in place
		if b, _ := os.ReadFile(conf); string(b) != written {
			t.Errorf("upgrade changed boot's /etc/default/swarm-agent to %q", b)
		}
		dpkg("--purge", "swarm-agent")
		for _, p := range append(slices.Collect(maps.Keys(wantFiles)), "/etc/default/swarm-agent") {
			if _, err := os.Stat(filepath.Join(root, p)); err == nil {
				t.Errorf("after purge %s is still there", p)
			}
		}
	})

	t.Run("rpm", func(t *testing.T) {
		if _, err := exec.LookPath("rpm"); err != nil {
			t.Skip("rpm not installed (Debian package rpm): the .rpm is not inspected")
		}
		info := run(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}\n", rpm)
		if want := "swarm-agent 1.2.3 1 " + rpmArch + "\n"; info != want {
			t.Errorf("rpm header %q, want %q", info, want)
		}
		got := map[string]string{}
		for l := range strings.Lines(run(t, "rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]", rpm)) {
			f := strings.Fields(l)
			flags := ""
			if len(f) == 3 {
				flags = f[1]
			}
			got[f[len(f)-1]] = f[0]
			if strings.Contains(flags, "c") {
				t.Errorf("%s is %%config (flags %q): the package owns no configuration file", f[len(f)-1], flags)
			}
		}
		if !maps.Equal(got, wantFiles) {
			t.Errorf("files in the .rpm: %v, want %v", got, wantFiles)
		}
		scripts := run(t, "rpm", "-qp", "--scripts", rpm)
		for _, want := range []string{"postinstall scriptlet", "postuninstall scriptlet", "systemctl daemon-reload"} {
			if !strings.Contains(scripts, want) {
				t.Errorf("rpm scripts lack %q:\n%s", want, scripts)
			}
		}
		if rec := run(t, "rpm", "-qp", "--recommends", rpm); strings.TrimSpace(rec) != "docker" {
			t.Errorf("rpm recommends %q, want docker", rec)
		}
	})
}
