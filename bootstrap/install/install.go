// Package install prepares a machine to become a swarm node, as an image build does: Docker from
// the distribution's packages, the agent's systemd units written and enabled, and no swarm state
// left behind, so that no image carries a node identity. Running it again changes nothing.
package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Sentinel errors for the decisions callers map to exit codes.
var (
	// ErrUnsupported: Docker is missing and this distribution has no install path here.
	ErrUnsupported = errors.New("unsupported distribution")
	// ErrNeedsSystemd: an option asks for something only systemd can do, and it does not run.
	ErrNeedsSystemd = errors.New("systemd is not running this machine")
	// ErrEngineRunning: swarm state is on disk and the engine that owns it is running.
	ErrEngineRunning = errors.New("docker engine is running")
)

// DockerUnit is the engine's systemd unit, enabled (and with Options.Start started) by Install.
const DockerUnit = "docker.service"

// packageTimeout bounds one package-manager command. Those commands are not killed when ctx is
// cancelled: an interrupted dpkg leaves a half-configured system behind.
const packageTimeout = 30 * time.Minute

// Runner runs one command and returns its combined output. ExecRunner runs real processes; tests
// hand in a recording fake.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs commands as child processes of this one.
type ExecRunner struct{}

// Run runs name with args and returns its combined stdout and stderr.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// Options says what Install does and where. Empty paths take the defaults given.
type Options struct {
	DryRun bool // run only read-only queries; report what would change, write and remove nothing
	Start  bool // also start docker.service now (needs systemd); an image build leaves it stopped
	Force  bool // remove swarm state even while the engine runs, stopping it first under systemd

	Units  map[string][]byte // unit files to write into UnitDir, by file name
	Enable []string          // names in Units to enable; docker.service is always enabled

	OSRelease    string // default /etc/os-release
	UnitDir      string // default /etc/systemd/system
	SystemdProbe string // default /run/systemd/system: systemctl runs only if this directory exists
	DataRoot     string // Docker's data root, default /var/lib/docker
	PIDFile      string // dockerd's pid file, default /var/run/docker.pid
	PolicyRC     string // default /usr/sbin/policy-rc.d, held at "exit 101" while apt installs

	Log         zerolog.Logger
	Runner      Runner                        // default ExecRunner
	LookPath    func(string) (string, error)  // default exec.LookPath
	ProcessName func(pid int) (string, error) // default reads /proc/PID/comm
}

func (o *Options) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.OSRelease, "/etc/os-release")
	def(&o.UnitDir, "/etc/systemd/system")
	def(&o.SystemdProbe, "/run/systemd/system")
	def(&o.DataRoot, "/var/lib/docker")
	def(&o.PIDFile, "/var/run/docker.pid")
	def(&o.PolicyRC, "/usr/sbin/policy-rc.d")
	if o.Runner == nil {
		o.Runner = ExecRunner{}
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.ProcessName == nil {
		o.ProcessName = procName
	}
}

// Result is Install's summary. In a dry run it says what would have been done.
type Result struct {
	Distribution      string   `json:"distribution,omitempty"`
	Installed         []string `json:"installed"`       // packages installed
	AlreadyPresent    bool     `json:"already_present"` // Docker was installed before
	Units             []string `json:"units"`           // unit file paths, written or already identical
	UnitsWritten      []string `json:"units_written"`   // of Units, those (re)written
	Systemd           bool     `json:"systemd"`         // systemd runs the machine: systemctl was used
	Enabled           []string `json:"enabled"`         // units enabled by this run
	Started           []string `json:"started"`         // units started by this run
	SwarmStateRemoved bool     `json:"swarm_state_removed"`
	Removed           []string `json:"removed"` // paths removed
	DryRun            bool     `json:"dry_run"`
	Actions           []string `json:"actions"` // every change, in order: commands run, files written, paths removed
}

// Install makes the machine ready: Docker installed from the distribution's packages if missing,
// docker.service enabled, the units written and enabled, swarm state removed. Everything that can
// refuse (unsupported distribution, running engine with swarm state, --start without systemd) is
// checked before anything changes.
func Install(ctx context.Context, o Options) (Result, error) {
	start := time.Now()
	o.setDefaults()
	in := &installer{o: o, log: o.Log, res: Result{
		Installed: []string{}, Units: []string{}, UnitsWritten: []string{}, Enabled: []string{},
		Started: []string{}, Removed: []string{}, Actions: []string{}, DryRun: o.DryRun,
	}}
	res, err := in.run(ctx)
	if err != nil {
		return res, err
	}
	in.log.Info().Bool("dry_run", o.DryRun).Int("changes", len(res.Actions)).Dur("elapsed", time.Since(start)).
		Msg("install finished")
	return res, nil
}

type installer struct {
	o   Options
	log zerolog.Logger
	res Result
}

func (in *installer) run(ctx context.Context) (Result, error) {
	o := in.o
	systemd := isDir(o.SystemdProbe)
	in.res.Systemd = systemd
	if o.Start && !systemd {
		return in.res, fmt.Errorf("%w (no %s): cannot start %s; start dockerd yourself", ErrNeedsSystemd, o.SystemdProbe, DockerUnit)
	}

	pm, missing, err := in.checkDocker(ctx)
	if err != nil {
		return in.res, err
	}
	swarm, err := in.checkSwarmState()
	if err != nil {
		return in.res, err
	}

	if missing {
		if err := in.installDocker(ctx, pm); err != nil {
			return in.res, fmt.Errorf("install docker: %w", err)
		}
	}
	if err := in.writeUnits(); err != nil {
		return in.res, err
	}
	if systemd {
		if err := in.enableUnits(ctx); err != nil {
			return in.res, err
		}
	} else {
		in.log.Info().Str("reason", "no "+o.SystemdProbe).
			Msg("systemd is not running this machine: systemctl skipped, unit files written only")
	}
	if err := in.removeSwarmState(ctx, swarm, systemd); err != nil {
		return in.res, err
	}
	if o.Start {
		if err := in.startDocker(ctx); err != nil {
			return in.res, err
		}
	}
	return in.res, nil
}

// checkDocker decides whether Docker must be installed, and with which package manager.
func (in *installer) checkDocker(ctx context.Context) (pkgManager, bool, error) {
	d, derr := ReadOSRelease(in.o.OSRelease)
	if derr == nil {
		in.res.Distribution = d.String()
		in.log.Info().Str("distribution", d.String()).Msg("distribution detected")
	}
	if p, err := in.o.LookPath("dockerd"); err == nil {
		in.res.AlreadyPresent = true
		in.log.Info().Str("path", p).Msg("docker already present (dockerd on PATH): not installing")
		return pkgManager{}, false, nil
	}
	if derr != nil {
		return pkgManager{}, false, fmt.Errorf("%w: dockerd is not on PATH and the distribution is unknown: %w", ErrUnsupported, derr)
	}
	pm, err := choosePackageManager(d)
	if err != nil {
		return pkgManager{}, false, err
	}
	out, err := in.query(ctx, pm.query[0], pm.query[1:]...)
	if pm.installed(out, err) {
		in.res.AlreadyPresent = true
		in.log.Info().Str("package", pm.pkg).Str("command", cmdline(pm.query[0], pm.query[1:])).
			Msg("docker already present (package installed): not installing")
		return pm, false, nil
	}
	return pm, true, nil
}

// pkgManager is how one family of distributions installs Docker.
type pkgManager struct {
	name      string
	pkg       string                           // the package that brings dockerd
	query     []string                         // read-only: is pkg installed?
	installed func(out []byte, err error) bool // reads query's answer
	install   [][]string                       // run in order when pkg is missing
	guard     bool                             // hold service starts with policy-rc.d meanwhile
}

var (
	aptDocker = pkgManager{
		name:  "apt",
		pkg:   "docker.io",
		query: []string{"dpkg", "-s", "docker.io"},
		// dpkg -s also answers for removed packages whose configuration files remain.
		installed: func(out []byte, err error) bool {
			return err == nil && bytes.Contains(out, []byte("Status: install ok installed"))
		},
		install: [][]string{
			{"apt-get", "update", "-qq"},
			{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "docker.io"},
		},
		guard: true,
	}
	dnfDocker = pkgManager{
		name:      "dnf",
		pkg:       "docker",
		query:     []string{"rpm", "-q", "docker"},
		installed: func(_ []byte, err error) bool { return err == nil },
		install:   [][]string{{"dnf", "install", "-y", "docker"}},
	}
)

// supported is what the unsupported-distribution error offers instead.
const supported = "Docker is installed on Debian, Ubuntu and their derivatives (apt-get install docker.io) " +
	"and on Amazon Linux 2023 (dnf install docker); elsewhere install Docker first (dockerd on PATH) " +
	"and run install again, which then skips this step"

func choosePackageManager(d Distro) (pkgManager, error) {
	switch {
	case d.like("debian", "ubuntu"):
		return aptDocker, nil
	case d.ID == "amzn" && d.VersionID == "2023":
		return dnfDocker, nil
	}
	return pkgManager{}, fmt.Errorf("%w: %s: %s", ErrUnsupported, d, supported)
}

func (in *installer) installDocker(ctx context.Context, pm pkgManager) error {
	if pm.guard {
		release, err := in.holdServiceStarts()
		if err != nil {
			return err
		}
		defer release()
	}
	// Package managers finish what they started even when ctx is cancelled.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), packageTimeout)
	defer cancel()
	for _, c := range pm.install {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := in.change(pctx, c[0], c[1:]...); err != nil {
			return err
		}
	}
	in.res.Installed = append(in.res.Installed, pm.pkg)
	return nil
}

// policyRCMarker marks the policy-rc.d file Install writes, so a file left behind by an
// interrupted run is recognised as its own and removed.
const policyRCMarker = "# swarm-agent install: hold service starts while Docker is installed"

// holdServiceStarts makes Debian's maintainer scripts leave docker stopped during an image
// build: policy-rc.d answering 101 ("action forbidden") stops invoke-rc.d and deb-systemd-invoke
// from starting services. An operator's own policy-rc.d is left as it is.
func (in *installer) holdServiceStarts() (release func(), err error) {
	path := in.o.PolicyRC
	if in.o.DryRun {
		return func() {}, nil
	}
	old, err := os.ReadFile(path)
	switch {
	case err == nil && !bytes.Contains(old, []byte(policyRCMarker)):
		in.log.Info().Str("path", path).Msg("policy-rc.d present: left as it is; it decides whether the package starts docker")
		return func() {}, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("hold service starts: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("hold service starts: %w", err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+policyRCMarker+"\nexit 101\n"), 0o755); err != nil {
		return nil, fmt.Errorf("hold service starts: %w", err)
	}
	in.log.Info().Str("path", path).Msg("service starts held while the package installs")
	return func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			in.log.Warn().Err(err).Str("path", path).Msg("could not remove the temporary policy-rc.d: remove it by hand")
		}
	}, nil
}

// writeUnits writes each unit whose bytes differ from the file on disk.
func (in *installer) writeUnits() error {
	names := make([]string, 0, len(in.o.Units))
	for n := range in.o.Units {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		path := filepath.Join(in.o.UnitDir, n)
		in.res.Units = append(in.res.Units, path)
		old, err := os.ReadFile(path)
		if err == nil && bytes.Equal(old, in.o.Units[n]) {
			in.log.Info().Str("path", path).Msg("unit file up to date")
			continue
		}
		in.res.UnitsWritten = append(in.res.UnitsWritten, path)
		in.res.Actions = append(in.res.Actions, "write "+path)
		if in.o.DryRun {
			in.log.Info().Bool("dry_run", true).Str("path", path).Msg("would write unit file")
			continue
		}
		if err := writeFileAtomic(path, in.o.Units[n], 0o644); err != nil {
			return fmt.Errorf("write unit %s: %w", n, err)
		}
		in.log.Info().Str("path", path).Msg("unit file written")
	}
	return nil
}

// enableUnits reloads systemd after new unit files and enables docker and the agent's units.
func (in *installer) enableUnits(ctx context.Context) error {
	if len(in.res.UnitsWritten) > 0 {
		if err := in.change(ctx, "systemctl", "daemon-reload"); err != nil {
			return err
		}
	}
	units := append([]string{DockerUnit}, in.o.Enable...)
	for _, u := range units {
		out, _ := in.query(ctx, "systemctl", "is-enabled", u)
		if strings.TrimSpace(string(out)) == "enabled" {
			in.log.Info().Str("unit", u).Msg("unit already enabled")
			continue
		}
		// systemctl enable does not start the unit: an image build leaves it stopped.
		if err := in.change(ctx, "systemctl", "enable", u); err != nil {
			return err
		}
		in.res.Enabled = append(in.res.Enabled, u)
	}
	return nil
}

func (in *installer) startDocker(ctx context.Context) error {
	out, _ := in.query(ctx, "systemctl", "is-active", DockerUnit)
	if strings.TrimSpace(string(out)) == "active" {
		in.log.Info().Str("unit", DockerUnit).Msg("unit already active")
		return nil
	}
	if err := in.change(ctx, "systemctl", "start", DockerUnit); err != nil {
		return err
	}
	in.res.Started = append(in.res.Started, DockerUnit)
	return nil
}
