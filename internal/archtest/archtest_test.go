package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/swarm-agent/swarm-agent"

// pkg is what `go list -deps -json` tells of a package.
type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string // direct imports of its non-test files
	Deps       []string // everything its non-test files depend on, transitively
}

// rel names a package of this module by its folder ("" for the root, main); ok is false for
// packages of other modules and the standard library.
func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// under reports whether package p (a folder of this module) is dir or below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// A rule forbids packages that from selects to depend, directly or not, on packages that to
// selects (both see folders of this module; to also sees other modules' paths, with ours false).
type rule struct {
	name string
	from func(p string) bool
	to   func(dep string, ours, std bool) bool
	why  string
}

var rules = []rule{
	{
		name: "swarm is a leaf",
		from: func(p string) bool { return under(p, "swarm") },
		to:   func(_ string, _, std bool) bool { return !std },
		why:  "swarm holds the shared value types: standard library only, so that every package may import it",
	},
	{
		name: "retry is a leaf",
		from: func(p string) bool { return under(p, "retry") },
		to:   func(_ string, _, std bool) bool { return !std },
		why:  "retry holds the one backoff policy: standard library only, so that every package may import it",
	},
	{
		name: "discovery does not depend on the boot",
		from: func(p string) bool { return under(p, "discovery") },
		to:   func(d string, ours, _ bool) bool { return ours && under(d, "bootstrap") },
		why:  "discovery and its providers implement the interfaces in discovery and use the types in swarm; the boot algorithm depends on them, not the other way",
	},
	{
		name: "lifecycle does not depend on bootstrap",
		from: func(p string) bool { return under(p, "lifecycle") },
		to:   func(d string, ours, _ bool) bool { return ours && under(d, "bootstrap") },
		why:  "lifecycle and bootstrap are siblings: what they share lives in swarm (types) or discovery (interfaces), and agent wires them",
	},
	{
		name: "bootstrap does not depend on lifecycle",
		from: func(p string) bool { return under(p, "bootstrap") },
		to:   func(d string, ours, _ bool) bool { return ours && under(d, "lifecycle") },
		why:  "lifecycle and bootstrap are siblings: what they share lives in swarm (types) or discovery (interfaces), and agent wires them",
	},
	{
		name: "the boot and the drain see discovery only through its interfaces",
		from: func(p string) bool { return under(p, "bootstrap") || under(p, "lifecycle") },
		to: func(d string, ours, _ bool) bool {
			return ours && under(d, "discovery") && d != "discovery"
		},
		why: "a provider (discovery/route53, consul, static, ...) is chosen and built in agent; bootstrap and lifecycle use the interfaces in discovery",
	},
	{
		name: "only main depends on agent",
		from: func(p string) bool { return p != "" && !under(p, "agent") },
		to:   func(d string, ours, _ bool) bool { return ours && under(d, "agent") },
		why:  "agent is the top: flags, config and the wiring of everything below it",
	},
	{
		name: "product code does not depend on internal",
		from: func(p string) bool { return !under(p, "internal") },
		to:   func(d string, ours, _ bool) bool { return ours && under(d, "internal") },
		why:  "internal holds what only tests and tools need (AWS fakes, test beds, local clusters); product code must not ship them",
	},
}

// TestImportDirection fails when an import points the wrong way (rules above). It reads the
// non-test imports of every package in the module, as `go list -deps -json` reports them;
// tests may import what they need (a provider's test may run a whole boot against it). Each
// wrong import is reported once, at the package that makes it, with the path that leads there.
func TestImportDirection(t *testing.T) {
	pkgs := list(t)
	ours := 0
	for path := range pkgs {
		if _, ok := rel(path); ok {
			ours++
		}
	}
	// A pattern or module path that matched nothing would make every rule pass.
	if ours < 20 {
		t.Fatalf("go list found %d packages of %s; want the whole module", ours, module)
	}
	for _, r := range rules {
		bad := forbidden(pkgs, r)
		for _, path := range slices.Sorted(maps.Keys(bad)) {
			// Blame the package that imports the forbidden one, not every package above it.
			if slices.ContainsFunc(pkgs[path].Imports, func(q string) bool { return len(bad[q]) > 0 }) {
				continue
			}
			from, _ := rel(path)
			deps := bad[path]
			t.Errorf("%s: %s depends on %s (%s; %d forbidden in all): %s", r.name, show(from),
				show(name(deps[0])), strings.Join(chain(pkgs, path, deps[0]), " -> "), len(deps), r.why)
		}
	}
}

// forbidden lists, for each package of the module that rule r applies to, the packages it
// depends on that r forbids, nearest first.
func forbidden(pkgs map[string]*pkg, r rule) map[string][]string {
	bad := map[string][]string{}
	for path, p := range pkgs {
		from, ours := rel(path)
		if !ours || !r.from(from) {
			continue
		}
		for _, d := range p.Deps {
			dr, dOurs := rel(d)
			if !dOurs {
				dr = d
			}
			if r.to(dr, dOurs, pkgs[d] != nil && pkgs[d].Standard) {
				bad[path] = append(bad[path], d)
			}
		}
		slices.SortStableFunc(bad[path], func(a, b string) int {
			return len(chain(pkgs, path, a)) - len(chain(pkgs, path, b))
		})
	}
	return bad
}

// name is a package's folder in this module, or its import path when it is another module's.
func name(path string) string {
	if r, ok := rel(path); ok {
		return r
	}
	return path
}

// show names a package of this module by its folder, the root as main.
func show(p string) string {
	if p == "" {
		return "main"
	}
	return p
}

// list runs `go list -deps -json` over the module and returns every package it names (the
// module's and all they depend on) by import path.
func list(t *testing.T) map[string]*pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = &p
	}
	return pkgs
}

// chain is a shortest import path from one package to a package it depends on, in folders of
// this module (other modules' paths as they are).
func chain(pkgs map[string]*pkg, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			break
		}
		p := pkgs[cur]
		if p == nil {
			continue
		}
		for _, next := range p.Imports {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	var path []string
	for cur := to; cur != ""; cur = prev[cur] {
		path = append(path, show(name(cur)))
		if cur == from {
			break
		}
	}
	slices.Reverse(path)
	return path
}
