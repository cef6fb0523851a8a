package packaging_test

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeBuildIsStaticAndStamped runs `make build` as an operator would and checks what it
// promises: a statically linked (no interpreter, no shared libraries), stripped binary that
// reports the version and commit it was built from.
func TestMakeBuildIsStaticAndStamped(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skipf("make not installed: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-s", "build", "VERSION=v9.8.7-test", "COMMIT=abc1234")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, b)
	}
	bin := filepath.Join(root, "bin", "swarm-agent")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("open %s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: dynamically linked", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s is not stripped (has .symtab)", bin)
	}
	v, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if s := string(v); !strings.Contains(s, "v9.8.7-test") || !strings.Contains(s, "abc1234") {
		t.Errorf("version prints %q, want the stamped version and commit", s)
	}
}
