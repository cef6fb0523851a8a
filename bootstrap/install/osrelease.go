package install

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Distro is what /etc/os-release says about the machine (os-release(5)).
type Distro struct {
	ID         string   // ID, e.g. debian, ubuntu, amzn
	IDLike     []string // ID_LIKE, e.g. [debian] on Ubuntu, [fedora] on Amazon Linux 2023
	VersionID  string   // VERSION_ID, e.g. 12, 24.04, 2023
	PrettyName string   // PRETTY_NAME, falling back to NAME
}

// String names the distribution for messages: its pretty name and its ID fields.
func (d Distro) String() string {
	name := d.PrettyName
	if name == "" {
		name = d.ID
	}
	if name == "" {
		name = "unknown distribution"
	}
	s := fmt.Sprintf("%s (ID=%s", name, d.ID)
	if d.VersionID != "" {
		s += " VERSION_ID=" + d.VersionID
	}
	if len(d.IDLike) > 0 {
		s += " ID_LIKE=" + strings.Join(d.IDLike, ",")
	}
	return s + ")"
}

// like reports whether the distribution is, or says it is like, one of ids.
func (d Distro) like(ids ...string) bool {
	for _, id := range ids {
		if d.ID == id || slices.Contains(d.IDLike, id) {
			return true
		}
	}
	return false
}

// ReadOSRelease reads and parses an os-release file.
func ReadOSRelease(path string) (Distro, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Distro{}, fmt.Errorf("read distribution from %s: %w", path, err)
	}
	return ParseOSRelease(data), nil
}

// ParseOSRelease parses os-release(5) text: KEY=value lines, values optionally quoted, # comments.
// Lines it cannot read are ignored, as the format asks.
func ParseOSRelease(data []byte) Distro {
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		kv[strings.TrimSpace(k)] = unquote(strings.TrimSpace(v))
	}
	d := Distro{
		ID:         strings.ToLower(kv["ID"]),
		IDLike:     strings.Fields(strings.ToLower(kv["ID_LIKE"])),
		VersionID:  kv["VERSION_ID"],
		PrettyName: kv["PRETTY_NAME"],
	}
	if d.PrettyName == "" {
		d.PrettyName = kv["NAME"]
	}
	return d
}

// unquote removes shell-style quotes; inside double quotes, \" \\ \$ and \` are escapes.
func unquote(v string) string {
	if len(v) < 2 || (v[0] != '"' && v[0] != '\'') || v[len(v)-1] != v[0] {
		return v
	}
	q, v := v[0], v[1:len(v)-1]
	if q == '\'' {
		return v
	}
	return strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`").Replace(v)
}
