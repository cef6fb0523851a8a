package agent

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files and the README's flags table")

const (
	tableStart = "<!-- flags table: generated from agent/config.go by TestREADMEListsEveryFlag -->"
	tableEnd   = "<!-- end of flags table -->"
)

// flagsTable renders every option as the README shows it.
func flagsTable() string {
	names := make([]string, 0, len(options))
	for n := range options {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(tableStart + "\n\n| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n")
	for _, n := range names {
		o := options[n]
		var c Config
		fs := newFlags(&c, n)
		def := fs.Lookup(n).DefValue
		if def == "" || def == "[]" {
			def = " "
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", n, envName(n), def, strings.ReplaceAll(o.usage, "|", "\\|"))
	}
	b.WriteString("\n" + tableEnd)
	return b.String()
}

// TestREADMEListsEveryFlag keeps the operator's guide true: every flag and its variable is in
// the README's table, exactly as the code defines them. `go test ./agent -update` rewrites it.
func TestREADMEListsEveryFlag(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, tableStart)
	if i < 0 {
		t.Fatalf("README.md has no %q marker", tableStart)
	}
	j := strings.Index(s, tableEnd)
	if j < 0 {
		j = i + len(tableStart)
	} else {
		j += len(tableEnd)
	}
	want := flagsTable()
	if s[i:j] == want {
		return
	}
	if *update {
		if err := os.WriteFile("../README.md", []byte(s[:i]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md flags table is out of date; run: go test ./agent -run TestREADMEListsEveryFlag -update")
}
