package engine

import (
	"strings"
	"testing"
)

func TestParseImageRef(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"localhost:1/busybox:test", "localhost:1/busybox:test"},
		{"registry.example.com:5000/team/app:1.2", "registry.example.com:5000/team/app:1.2"},
		{"app@sha256:" + strings.Repeat("a", 64), "docker.io/library/app@sha256:" + strings.Repeat("a", 64)},
	} {
		got, err := ParseImageRef(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseImageRef(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "Busybox", "busybox:", ":tag", "a b", "busybox;rm -rf /", "app@sha256:abc",
		"http://registry/app", strings.Repeat("a", 600), "busybox\n"} {
		if got, err := ParseImageRef(bad); err == nil {
			t.Errorf("ParseImageRef(%q) = %q, want an error", bad, got)
		}
	}
}

// FuzzParseImageRef: any input gives an error or a reference that parses again to itself.
func FuzzParseImageRef(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:1/busybox:test", "a@sha256:" + strings.Repeat("0", 64), "", "::", "A/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseImageRef(s)
		if err != nil {
			return
		}
		again, err := ParseImageRef(got)
		if err != nil || again != got {
			t.Fatalf("ParseImageRef(%q) = %q, which parses to %q, %v", s, got, again, err)
		}
	})
}
