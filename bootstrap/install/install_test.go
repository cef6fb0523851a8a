package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// os-release files as the distributions ship them.
const (
	osDebian12 = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
`
	osUbuntu2404 = `PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
ID=ubuntu
ID_LIKE=debian
`
	osMint = `NAME="Linux Mint"
ID=linuxmint
ID_LIKE="ubuntu debian"
VERSION_ID="22"
PRETTY_NAME="Linux Mint 22"
`
	osAL2023 = `NAME="Amazon Linux"
VERSION="2023"
ID="amzn"
ID_LIKE="fedora"
VERSION_ID="2023"
PRETTY_NAME="Amazon Linux 2023.6.20241010"
`
	osAL2 = `NAME="Amazon Linux"
VERSION="2"
ID="amzn"
ID_LIKE="centos rhel fedora"
VERSION_ID="2"
PRETTY_NAME="Amazon Linux 2"
`
	osRHEL9 = `NAME="Red Hat Enterprise Linux"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="9.4"
PRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"
`
	osAlpine = `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.20.3
PRETTY_NAME="Alpine Linux v3.20"
`
)

const agentUnit = "swarm-agent.service"

var unitBody = []byte("[Unit]\nDescription=test unit\n[Service]\nExecStart=/usr/bin/swarm-agent run\n[Install]\nWantedBy=multi-user.target\n")

// fakeSystem is a recording Runner with just enough state (packages, unit states) for the
// queries to answer what the changes did.
type fakeSystem struct {
	t        *testing.T
	packages map[string]string // package -> dpkg status line ("install ok installed", ...)
	onPath   bool              // dockerd on PATH whatever the packages say
	enabled  map[string]bool
	active   map[string]bool
	fail     map[string]string // command line -> output of a failing run
	policyRC string            // path the apt install checks
	calls    []string
	// policySeen is policy-rc.d's content while apt-get install ran ("" if absent).
	policySeen string
}

func newFakeSystem(t *testing.T) *fakeSystem {
	return &fakeSystem{t: t, packages: map[string]string{}, enabled: map[string]bool{}, active: map[string]bool{},
		fail: map[string]string{}}
}

var errExit = errors.New("exit status 1")

func (f *fakeSystem) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	line := cmdline(name, args)
	f.calls = append(f.calls, line)
	if out, ok := f.fail[line]; ok {
		return []byte(out), errExit
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch {
	case name == "dpkg" && arg(0) == "-s":
		if st, ok := f.packages[arg(1)]; ok {
			return fmt.Appendf(nil, "Package: %s\nStatus: %s\nVersion: 20.10.24\n", arg(1), st), nil
		}
		return fmt.Appendf(nil, "dpkg-query: package '%s' is not installed and no information is available\n", arg(1)), errExit
	case name == "rpm" && arg(0) == "-q":
		if _, ok := f.packages[arg(1)]; ok {
			return []byte(arg(1) + "-25.0.6-1.amzn2023.0.2.x86_64\n"), nil
		}
		return []byte("package " + arg(1) + " is not installed\n"), errExit
	case line == "apt-get update -qq":
		return nil, nil
	case name == "env" && slices.Equal(args[:4], []string{"DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y"}):
		if b, err := os.ReadFile(f.policyRC); err == nil {
			f.policySeen = string(b)
		}
		f.packages[args[len(args)-1]] = "install ok installed"
		return []byte("Selecting previously unselected package docker.io.\n"), nil
	case line == "dnf install -y docker":
		f.packages["docker"] = "install ok installed"
		return nil, nil
	case line == "systemctl daemon-reload":
		return nil, nil
	case name == "systemctl" && arg(0) == "is-enabled":
		if f.enabled[arg(1)] {
			return []byte("enabled\n"), nil
		}
		return []byte("disabled\n"), errExit
	case name == "systemctl" && arg(0) == "enable":
		f.enabled[arg(1)] = true
		return nil, nil
	case name == "systemctl" && arg(0) == "is-active":
		if f.active[arg(1)] {
			return []byte("active\n"), nil
		}
		return []byte("inactive\n"), errExit
	case name == "systemctl" && (arg(0) == "start" || arg(0) == "stop"):
		for _, u := range args[1:] {
			f.active[u] = arg(0) == "start"
		}
		return nil, nil
	}
	f.t.Errorf("unexpected command %q", line)
	return nil, errExit
}

func (f *fakeSystem) lookPath(name string) (string, error) {
	if name == "dockerd" && (f.onPath || f.packages["docker.io"] == "install ok installed" || f.packages["docker"] != "") {
		return "/usr/sbin/dockerd", nil
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

// changes are the recorded commands that change the machine (queries left out).
func (f *fakeSystem) changes() []string {
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, "dpkg -s ") || strings.HasPrefix(c, "rpm -q ") ||
			strings.HasPrefix(c, "systemctl is-enabled ") || strings.HasPrefix(c, "systemctl is-active ") {
			continue
		}
		out = append(out, c)
	}
	return out
}

// machine is a temporary file system layout for one Install.
type machine struct {
	dir, osRelease, unitDir, systemd, dataRoot, pidFile, policyRC string
}

func newMachine(t *testing.T, osRelease string, systemd bool) machine {
	t.Helper()
	dir := t.TempDir()
	m := machine{
		dir:       dir,
		osRelease: filepath.Join(dir, "etc/os-release"),
		unitDir:   filepath.Join(dir, "etc/systemd/system"),
		systemd:   filepath.Join(dir, "run/systemd/system"),
		dataRoot:  filepath.Join(dir, "var/lib/docker"),
		pidFile:   filepath.Join(dir, "run/docker.pid"),
		policyRC:  filepath.Join(dir, "usr/sbin/policy-rc.d"),
	}
	if osRelease != "" {
		mustWrite(t, m.osRelease, osRelease)
	}
	if systemd {
		if err := os.MkdirAll(m.systemd, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func (m machine) options(f *fakeSystem) Options {
	f.policyRC = m.policyRC
	return Options{
		Units:        map[string][]byte{agentUnit: unitBody},
		Enable:       []string{agentUnit},
		OSRelease:    m.osRelease,
		UnitDir:      m.unitDir,
		SystemdProbe: m.systemd,
		DataRoot:     m.dataRoot,
		PIDFile:      m.pidFile,
		PolicyRC:     m.policyRC,
		Log:          zerolog.New(zerolog.NewTestWriter(f.t)),
		Runner:       f,
		LookPath:     f.lookPath,
		ProcessName:  func(int) (string, error) { return "", os.ErrNotExist },
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var (
	aptInstall = []string{"apt-get update -qq", "env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io"}
	enableAll  = []string{"systemctl daemon-reload", "systemctl enable docker.service", "systemctl enable swarm-agent.service"}
)

func TestInstall(t *testing.T) {
	tests := []struct {
		name      string
		osRelease string
		systemd   bool
		setup     func(f *fakeSystem)
		opts      func(o *Options)
		// want
		changes       []string
		installed     []string
		present       bool
		err           error
		errContains   []string
		noUnitWritten bool
	}{
		{name: "debian without systemd", osRelease: osDebian12,
			changes: aptInstall, installed: []string{"docker.io"}},
		{name: "debian with systemd", osRelease: osDebian12, systemd: true,
			changes: slices.Concat(aptInstall, enableAll), installed: []string{"docker.io"}},
		{name: "ubuntu with systemd", osRelease: osUbuntu2404, systemd: true,
			changes: slices.Concat(aptInstall, enableAll), installed: []string{"docker.io"}},
		{name: "mint", osRelease: osMint,
			changes: aptInstall, installed: []string{"docker.io"}},
		{name: "amazon linux 2023", osRelease: osAL2023, systemd: true,
			changes: slices.Concat([]string{"dnf install -y docker"}, enableAll), installed: []string{"docker"}},
		{name: "amazon linux 2 unsupported", osRelease: osAL2, systemd: true, err: ErrUnsupported,
			errContains: []string{"Amazon Linux 2 (ID=amzn VERSION_ID=2", "Amazon Linux 2023 (dnf install docker)"}, noUnitWritten: true},
		{name: "rhel unsupported", osRelease: osRHEL9, err: ErrUnsupported,
			errContains: []string{"Red Hat Enterprise Linux 9.4 (Plow) (ID=rhel"}, noUnitWritten: true},
		{name: "alpine unsupported", osRelease: osAlpine, systemd: true, err: ErrUnsupported,
			errContains: []string{"unsupported distribution: Alpine Linux v3.20 (ID=alpine VERSION_ID=3.20.3)",
				"Debian, Ubuntu", "Amazon Linux 2023", "install Docker first"}, noUnitWritten: true},
		{name: "no os-release and no dockerd", osRelease: "", err: ErrUnsupported,
			errContains: []string{"dockerd is not on PATH and the distribution is unknown"}, noUnitWritten: true},
		{name: "alpine with dockerd on PATH", osRelease: osAlpine,
			setup: func(f *fakeSystem) { f.onPath = true }, present: true},
		{name: "dockerd on PATH", osRelease: osDebian12, systemd: true,
			setup: func(f *fakeSystem) { f.onPath = true }, present: true, changes: enableAll},
		{name: "package installed, dockerd not on PATH", osRelease: osDebian12,
			setup:   func(f *fakeSystem) { f.packages["docker.io"] = "install ok installed"; f.onPath = false },
			present: true},
		{name: "package removed, config files left", osRelease: osDebian12,
			setup:   func(f *fakeSystem) { f.packages["docker.io"] = "deinstall ok config-files" },
			changes: aptInstall, installed: []string{"docker.io"}},
		{name: "rpm installed", osRelease: osAL2023,
			setup: func(f *fakeSystem) { f.packages["docker"] = "x" }, present: true},
		{name: "docker already enabled", osRelease: osDebian12, systemd: true,
			setup:   func(f *fakeSystem) { f.onPath = true; f.enabled["docker.service"] = true },
			present: true, changes: []string{"systemctl daemon-reload", "systemctl enable swarm-agent.service"}},
		{name: "start with systemd", osRelease: osDebian12, systemd: true, opts: func(o *Options) { o.Start = true },
			changes: slices.Concat(aptInstall, enableAll, []string{"systemctl start docker.service"}), installed: []string{"docker.io"}},
		{name: "start without systemd", osRelease: osDebian12, opts: func(o *Options) { o.Start = true },
			err: ErrNeedsSystemd, errContains: []string{"cannot start docker.service"}, noUnitWritten: true},
		{name: "apt-get install fails", osRelease: osDebian12,
			setup: func(f *fakeSystem) {
				f.fail["env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io"] = "Reading package lists...\nE: Unable to locate package docker.io\n"
			},
			changes: aptInstall, noUnitWritten: true,
			errContains: []string{"install docker: env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io: exit status 1: Reading package lists...; E: Unable to locate package docker.io"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSystem(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			m := newMachine(t, tt.osRelease, tt.systemd)
			o := m.options(f)
			if tt.opts != nil {
				tt.opts(&o)
			}
			res, err := Install(t.Context(), o)
			switch {
			case tt.err != nil && !errors.Is(err, tt.err):
				t.Fatalf("err = %v, want %v", err, tt.err)
			case tt.err == nil && len(tt.errContains) == 0 && err != nil:
				t.Fatalf("err = %v", err)
			}
			for _, s := range tt.errContains {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v, want it to contain %q", err, s)
				}
			}
			if got := f.changes(); !slices.Equal(got, tt.changes) {
				t.Errorf("commands that change the machine:\n got %q\nwant %q", got, tt.changes)
			}
			if err != nil {
				if _, serr := os.Stat(filepath.Join(m.unitDir, agentUnit)); tt.noUnitWritten && serr == nil {
					t.Errorf("unit file written although install failed before that step")
				}
				return
			}
			if !slices.Equal(res.Installed, nonNil(tt.installed)) {
				t.Errorf("Installed = %q, want %q", res.Installed, tt.installed)
			}
			if res.AlreadyPresent != tt.present {
				t.Errorf("AlreadyPresent = %v, want %v", res.AlreadyPresent, tt.present)
			}
			if res.Systemd != tt.systemd {
				t.Errorf("Systemd = %v, want %v", res.Systemd, tt.systemd)
			}
			got, rerr := os.ReadFile(filepath.Join(m.unitDir, agentUnit))
			if rerr != nil || !bytes.Equal(got, unitBody) {
				t.Errorf("unit file: %q, %v; want the embedded bytes", got, rerr)
			}
			if want := slices.Concat(tt.changes, []string{"write " + filepath.Join(m.unitDir, agentUnit)}); !sameSet(res.Actions, want) {
				t.Errorf("Actions = %q, want %q", res.Actions, want)
			}
			if _, err := os.Stat(m.policyRC); err == nil {
				t.Errorf("policy-rc.d left behind")
			}
		})
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestInstallDryRun(t *testing.T) {
	f := newFakeSystem(t)
	m := newMachine(t, osDebian12, true)
	mustWrite(t, filepath.Join(m.dataRoot, "swarm/docker-state.json"), `{"LocalAddr":"10.0.0.5"}`)
	o := m.options(f)
	o.DryRun, o.Start = true, true
	res, err := Install(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.changes(); len(got) != 0 {
		t.Errorf("dry run ran commands that change the machine: %q", got)
	}
	unit := filepath.Join(m.unitDir, agentUnit)
	swarm := filepath.Join(m.dataRoot, "swarm")
	want := slices.Concat(aptInstall, []string{"write " + unit}, enableAll, []string{"remove " + swarm, "systemctl start docker.service"})
	if !slices.Equal(res.Actions, want) {
		t.Errorf("Actions:\n got %q\nwant %q", res.Actions, want)
	}
	if !res.DryRun || !slices.Equal(res.Installed, []string{"docker.io"}) || !res.SwarmStateRemoved {
		t.Errorf("result = %+v, want a dry run that would install docker.io and remove swarm state", res)
	}
	for _, p := range []string{unit, m.policyRC} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("dry run wrote %s", p)
		}
	}
	if _, err := os.Stat(filepath.Join(swarm, "docker-state.json")); err != nil {
		t.Errorf("dry run removed swarm state: %v", err)
	}
}

// TestInstallIdempotent runs install twice on the same machine: the second run changes nothing,
// and the unit file keeps its bytes and its modification time.
func TestInstallIdempotent(t *testing.T) {
	for _, tc := range []struct {
		name, osRelease string
		systemd         bool
	}{{"debian no systemd", osDebian12, false}, {"debian systemd", osDebian12, true}, {"amazon linux 2023 systemd", osAL2023, true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSystem(t)
			m := newMachine(t, tc.osRelease, tc.systemd)
			mustWrite(t, filepath.Join(m.dataRoot, "swarm/docker-state.json"), "{}")
			if _, err := Install(t.Context(), m.options(f)); err != nil {
				t.Fatal(err)
			}
			unit := filepath.Join(m.unitDir, agentUnit)
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(unit, old, old); err != nil {
				t.Fatal(err)
			}
			first := len(f.calls)
			res, err := Install(t.Context(), m.options(f))
			if err != nil {
				t.Fatal(err)
			}
			f.calls = f.calls[first:]
			if got := f.changes(); len(got) != 0 {
				t.Errorf("second run ran %q", got)
			}
			if len(res.Actions) != 0 || len(res.UnitsWritten) != 0 || len(res.Installed) != 0 || res.SwarmStateRemoved {
				t.Errorf("second run changed something: %+v", res)
			}
			if !res.AlreadyPresent || !slices.Equal(res.Units, []string{unit}) {
				t.Errorf("second run: AlreadyPresent=%v Units=%q, want true [%s]", res.AlreadyPresent, res.Units, unit)
			}
			if st, err := os.Stat(unit); err != nil || !st.ModTime().Equal(old) {
				t.Errorf("unit file rewritten on the second run (mtime %v, want %v)", st.ModTime(), old)
			}
		})
	}
}

func TestInstallRewritesChangedUnit(t *testing.T) {
	f := newFakeSystem(t)
	f.onPath = true
	m := newMachine(t, osDebian12, true)
	f.enabled["docker.service"], f.enabled[agentUnit] = true, true
	unit := filepath.Join(m.unitDir, agentUnit)
	mustWrite(t, unit, "[Unit]\nDescription=an older version\n")
	res, err := Install(t.Context(), m.options(f))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(unit); !bytes.Equal(got, unitBody) {
		t.Errorf("unit file = %q, want the embedded bytes", got)
	}
	if want := []string{"write " + unit, "systemctl daemon-reload"}; !slices.Equal(res.Actions, want) {
		t.Errorf("Actions = %q, want %q (reload, nothing to enable)", res.Actions, want)
	}
}

func TestInstallSwarmState(t *testing.T) {
	const pid = 4242
	tests := []struct {
		name      string
		state     bool   // swarm directory holds files
		emptyDir  bool   // swarm directory exists, empty
		process   string // what runs as the pid file's pid ("" = nothing)
		systemd   bool
		force     bool
		err       error
		wantGone  bool // no swarm directory afterwards
		wantState bool // Result.SwarmStateRemoved
		changes   []string
	}{
		{name: "no swarm directory", wantGone: true},
		{name: "state, engine stopped", state: true, wantGone: true, wantState: true},
		{name: "empty directory, engine stopped", emptyDir: true, wantGone: true},
		{name: "state, stale pid file", state: true, process: "bash", wantGone: true, wantState: true},
		{name: "state, engine running", state: true, process: "dockerd", err: ErrEngineRunning},
		{name: "empty directory, engine running", emptyDir: true, process: "dockerd"},
		{name: "state, engine running, forced under systemd", state: true, process: "dockerd", systemd: true, force: true,
			wantGone: true, wantState: true, changes: []string{"systemctl daemon-reload", "systemctl stop docker.socket docker.service"}},
		{name: "state, engine running, forced without systemd", state: true, process: "dockerd", force: true,
			wantGone: true, wantState: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSystem(t)
			m := newMachine(t, osDebian12, tt.systemd)
			// Docker absent: a refusal must come before the install.
			o := m.options(f)
			if tt.systemd {
				f.enabled["docker.service"], f.enabled[agentUnit] = true, true
			}
			f.onPath = true
			if tt.err != nil {
				f.onPath = false
			}
			swarm := filepath.Join(m.dataRoot, "swarm")
			if tt.state {
				mustWrite(t, filepath.Join(swarm, "docker-state.json"), "{}")
				mustWrite(t, filepath.Join(swarm, "certificates/swarm-node.key"), "key")
			}
			if tt.emptyDir {
				if err := os.MkdirAll(swarm, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if tt.process != "" {
				mustWrite(t, m.pidFile, fmt.Sprintf("%d\n", pid))
				o.ProcessName = func(p int) (string, error) {
					if p != pid {
						t.Errorf("ProcessName(%d), want %d", p, pid)
					}
					return tt.process, nil
				}
			}
			o.Force = tt.force
			res, err := Install(t.Context(), o)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				for _, s := range []string{"pid 4242", swarm, "--force"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("err = %v, want it to name %q", err, s)
					}
				}
				if f.changes() != nil {
					t.Errorf("refused, yet ran %q", f.changes())
				}
				if _, err := os.Stat(filepath.Join(m.unitDir, agentUnit)); err == nil {
					t.Errorf("refused, yet wrote the unit file")
				}
			}
			_, serr := os.Stat(swarm)
			if gone := os.IsNotExist(serr); gone != tt.wantGone {
				t.Errorf("swarm directory gone = %v, want %v", gone, tt.wantGone)
			}
			if res.SwarmStateRemoved != tt.wantState {
				t.Errorf("SwarmStateRemoved = %v, want %v", res.SwarmStateRemoved, tt.wantState)
			}
			if got := f.changes(); !slices.Equal(got, tt.changes) {
				t.Errorf("commands:\n got %q\nwant %q", got, tt.changes)
			}
		})
	}
}

// TestInstallPolicyRC: on Debian the package's scripts must not start docker during the install
// (policy-rc.d answers 101 meanwhile), and an operator's own policy-rc.d is left alone.
func TestInstallPolicyRC(t *testing.T) {
	const ours = "#!/bin/sh\n" + policyRCMarker + "\nexit 101\n"
	tests := []struct {
		name, existing, wantSeen, wantAfter string
	}{
		{name: "none", wantSeen: ours},
		{name: "operator's own", existing: "#!/bin/sh\nexit 0\n", wantSeen: "#!/bin/sh\nexit 0\n", wantAfter: "#!/bin/sh\nexit 0\n"},
		{name: "left behind by an interrupted run", existing: ours, wantSeen: ours},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSystem(t)
			m := newMachine(t, osDebian12, false)
			if tt.existing != "" {
				mustWrite(t, m.policyRC, tt.existing)
			}
			if _, err := Install(t.Context(), m.options(f)); err != nil {
				t.Fatal(err)
			}
			if f.policySeen != tt.wantSeen {
				t.Errorf("policy-rc.d during apt-get install = %q, want %q", f.policySeen, tt.wantSeen)
			}
			after, _ := os.ReadFile(m.policyRC)
			if string(after) != tt.wantAfter {
				t.Errorf("policy-rc.d afterwards = %q, want %q", after, tt.wantAfter)
			}
		})
	}
}

func TestCmdline(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"apt-get", "install", "-y", "docker.io"}, "apt-get install -y docker.io"},
		{[]string{"echo", "a b", "", "it's"}, `echo 'a b' '' 'it'\''s'`},
	}
	for _, tt := range tests {
		if got := cmdline(tt.args[0], tt.args[1:]); got != tt.want {
			t.Errorf("cmdline(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}
