package archtest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// maxLines is the most lines a non-test Go file may have: a file that says one thing.
const maxLines = 400

// oversized are the files still over maxLines, each to be split by concern (issue 13). The list
// may only shrink: a file not on it that grows past maxLines fails, and so does a listed file
// that no longer needs to be here (take it off). Empty now: every file is within maxLines.
var oversized = []string{}

// TestFileSize fails when a non-test Go file has more than maxLines lines, unless it is on the
// oversized list, and when a listed file no longer does.
func TestFileSize(t *testing.T) {
	root := filepath.Join("..", "..")
	var over []string
	read := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		read++
		if bytes.Count(b, []byte("\n")) > maxLines {
			rel, _ := filepath.Rel(root, path)
			over = append(over, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if read < 100 {
		t.Fatalf("%d Go files read: the walk did not see the module", read)
	}
	for _, f := range over {
		if !slices.Contains(oversized, f) {
			t.Errorf("%s has more than %d lines: split it by concern (what each part says in one sentence)", f, maxLines)
		}
	}
	for _, f := range oversized {
		if !slices.Contains(over, f) {
			t.Errorf("%s is at most %d lines now: take it off the oversized list", f, maxLines)
		}
	}
}
