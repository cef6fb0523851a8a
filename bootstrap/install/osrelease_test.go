package install

import (
	"slices"
	"testing"
)

func TestParseOSRelease(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Distro
	}{
		{"debian", osDebian12, Distro{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)"}},
		{"ubuntu", osUbuntu2404, Distro{ID: "ubuntu", IDLike: []string{"debian"}, VersionID: "24.04", PrettyName: "Ubuntu 24.04.1 LTS"}},
		{"amazon linux 2023", osAL2023, Distro{ID: "amzn", IDLike: []string{"fedora"}, VersionID: "2023", PrettyName: "Amazon Linux 2023.6.20241010"}},
		{"name when no pretty name", "ID=foo\nNAME='Foo OS'\n", Distro{ID: "foo", PrettyName: "Foo OS"}},
		{"comments, blanks, junk and escapes", "# c\n\nnot a pair\nID=\"Bar\"\nPRETTY_NAME=\"say \\\"hi\\\" \\$x\"\n",
			Distro{ID: "bar", PrettyName: `say "hi" $x`}},
		{"empty", "", Distro{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseOSRelease([]byte(tt.in))
			if got.ID != tt.want.ID || got.VersionID != tt.want.VersionID || got.PrettyName != tt.want.PrettyName ||
				!slices.Equal(got.IDLike, tt.want.IDLike) {
				t.Errorf("ParseOSRelease = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestChoosePackageManager(t *testing.T) {
	tests := []struct {
		name, osRelease, want string // want "" means unsupported
	}{
		{"debian", osDebian12, "apt"},
		{"ubuntu", osUbuntu2404, "apt"},
		{"mint (ID_LIKE ubuntu debian)", osMint, "apt"},
		{"amazon linux 2023", osAL2023, "dnf"},
		{"amazon linux 2", osAL2, ""},
		{"rhel", osRHEL9, ""},
		{"alpine", osAlpine, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pm, err := choosePackageManager(ParseOSRelease([]byte(tt.osRelease)))
			if pm.name != tt.want {
				t.Errorf("package manager = %q (err %v), want %q", pm.name, err, tt.want)
			}
			if (err != nil) != (tt.want == "") {
				t.Errorf("err = %v, want error: %v", err, tt.want == "")
			}
		})
	}
}
