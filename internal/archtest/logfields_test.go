package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fieldMethods are zerolog's methods that add a named field to an event or a context.
var fieldMethods = []string{
	"Str", "Strs", "Int", "Ints", "Int32", "Int64", "Uint", "Uint64", "Float64", "Floats64",
	"Dur", "Bool", "Time", "Interface", "Any", "RawJSON", "Stringer", "Dict", "AnErr",
}

var fieldName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// TestLogFieldsDocumented: every log field name the product writes (the first argument of
// zerolog's field methods, in non-test files outside internal/) is listed
// in README's "Log fields" section, the public list of names that are never renamed. A field
// that is added or renamed without the README fails here.
func TestLogFieldsDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Log fields\n")
	if !ok {
		t.Fatal(`README.md has no "## Log fields" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")

	used := map[string]string{} // field -> where first seen
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "internal" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !slices.Contains(fieldMethods, sel.Sel.Name) {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			name, err := strconv.Unquote(lit.Value)
			if err != nil || !fieldName.MatchString(name) {
				return true
			}
			if _, seen := used[name]; !seen {
				used[name] = fset.Position(lit.Pos()).String()
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 || len(used) < 40 {
		t.Fatalf("read %d files that log, %d field names: the walk missed the code", files, len(used))
	}
	var missing []string
	for name, at := range used {
		if !strings.Contains(section, "`"+name+"`") {
			missing = append(missing, name+" ("+at+")")
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("log field %s is not in README's Log fields section", m)
	}
}
