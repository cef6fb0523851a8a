package packaging

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const packerTemplate = "packer/swarm-agent.pkr.hcl"

// packerBinary is bin/packer, built by tools/packer/build.sh; the test skips without it.
func packerBinary(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../bin/packer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		t.Skip("bin/packer not built: run `bash tools/packer/build.sh` (about 2-5 minutes) to validate the Packer template")
	}
	return p
}

// runPacker runs packer offline: no update check, its configuration and plugin directories
// empty, so the amazon plugin bundled in the binary is the one used.
func runPacker(t *testing.T, packer, dir string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.CommandContext(t.Context(), packer, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "PACKER_CONFIG_DIR="+home,
		"PACKER_PLUGIN_PATH="+filepath.Join(home, "plugins"), "PACKER_NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// withoutRequiredPlugins removes the top-level `packer { ... }` block: with it, packer demands
// `packer init`, which downloads the plugin.
func withoutRequiredPlugins(t *testing.T, tmpl []byte) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(tmpl), "\n")
	var out strings.Builder
	in, found := false, false
	for _, l := range lines {
		switch {
		case !in && strings.HasPrefix(l, "packer {"):
			in, found = true, true
		case in && strings.HasPrefix(l, "}"):
			in = false
		case !in:
			out.WriteString(l)
		}
	}
	if !found || in || !strings.Contains(string(tmpl), "required_plugins") {
		t.Fatalf("%s: no top-level `packer { required_plugins ... }` block to remove", packerTemplate)
	}
	return []byte(out.String())
}

// TestPackerValidate runs the real `packer validate` (its amazon-ebs builder and provisioners
// check every argument) on the template, for each distribution and architecture.
func TestPackerValidate(t *testing.T) {
	packer := packerBinary(t)
	tmpl, err := os.ReadFile(packerTemplate)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "swarm-agent.pkr.hcl")
	if err := os.WriteFile(copyPath, withoutRequiredPlugins(t, tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	// The file provisioner checks that its source exists.
	bin := filepath.Join(dir, "swarm-agent")
	if err := os.WriteFile(bin, []byte("stand-in"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dist := range []string{"debian-12", "al2023"} {
		for _, arch := range []string{"x86_64", "arm64"} {
			t.Run(dist+"/"+arch, func(t *testing.T) {
				out, err := runPacker(t, packer, dir, "validate", "-var", "binary_path="+bin,
					"-var", "distribution="+dist, "-var", "architecture="+arch, copyPath)
				if err != nil || !strings.Contains(out, "The configuration is valid.") {
					t.Errorf("packer validate: %v\n%s", err, out)
				}
			})
		}
	}
	// The tool is not a rubber stamp: it refuses what is wrong.
	refuse := map[string]struct {
		args []string
		edit func([]byte) []byte
		want string
	}{
		"unknown distribution": {args: []string{"-var", "distribution=centos"}, want: "must be debian-12 or al2023"},
		"missing binary":       {args: []string{"-var", "binary_path=" + filepath.Join(dir, "nope")}, want: "no such file"},
		"misspelt argument": {edit: func(b []byte) []byte {
			return bytes.Replace(b, []byte("instance_type = var.instance_type"), []byte("instance_typ = var.instance_type"), 1)
		}, want: "instance_typ"},
	}
	for name, tc := range refuse {
		t.Run("refuses "+name, func(t *testing.T) {
			path := copyPath
			if tc.edit != nil {
				b, err := os.ReadFile(copyPath)
				if err != nil {
					t.Fatal(err)
				}
				edited := tc.edit(b)
				if bytes.Equal(edited, b) {
					t.Fatal("edit changed nothing: update the test to the template")
				}
				path = filepath.Join(t.TempDir(), "edited.pkr.hcl")
				if err := os.WriteFile(path, edited, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			args := append([]string{"validate", "-var", "binary_path=" + bin}, tc.args...)
			out, err := runPacker(t, packer, dir, append(args, path)...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("packer validate: err=%v, want a failure mentioning %q; output:\n%s", err, tc.want, out)
			}
		})
	}
}

// TestPackerFormat: the template is in `packer fmt` form (which also parses it as HCL2).
func TestPackerFormat(t *testing.T) {
	packer := packerBinary(t)
	abs, err := filepath.Abs(packerTemplate)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runPacker(t, packer, t.TempDir(), "fmt", "-check", "-diff", abs)
	if err != nil {
		t.Errorf("packer fmt -check %s: %v (run `bin/packer fmt %s`)\n%s", packerTemplate, err, packerTemplate, out)
	}
}
