package testbed

// The instances' root file systems: the base image tools/instance/build.sh makes, and layers
// baked on it.

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// InstanceImage is a root file system made of read-only layers, the top one first (overlayfs lowerdir
// order).
type InstanceImage struct {
	Layers []string
}

// RootFSEnv names a root file system to use instead of bin/instance-rootfs.
const RootFSEnv = "SWARM_AGENT_TEST_INSTANCE_ROOTFS"

// BaseImage is the cached root file system tools/instance/build.sh made: $SWARM_AGENT_TEST_INSTANCE_ROOTFS,
// else moduleRoot/bin/instance-rootfs (a link into ~/.cache/swarm-agent). When it is missing and
// build is true, BaseImage runs the build script (minutes the first time; tools/prepare.sh
// --instance does it for make test and reports its time), writing its progress to log.
func BaseImage(ctx context.Context, moduleRoot string, build bool, log io.Writer) (InstanceImage, error) {
	dir := os.Getenv(RootFSEnv)
	if dir == "" {
		dir = filepath.Join(moduleRoot, "bin", "instance-rootfs")
	}
	check := func() (InstanceImage, error) {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return InstanceImage{}, fmt.Errorf("instance root file system %s: %w", dir, err)
		}
		if _, err := os.Stat(filepath.Join(real, "usr/lib/systemd/systemd")); err != nil {
			return InstanceImage{}, fmt.Errorf("instance root file system %s has no systemd: %w", real, err)
		}
		return InstanceImage{Layers: []string{real}}, nil
	}
	img, err := check()
	if err == nil || !build || os.Getenv(RootFSEnv) != "" {
		return img, err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(moduleRoot, "tools", "instance", "build.sh"))
	if log == nil {
		log = io.Discard
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(log, &out), io.MultiWriter(log, &out)
	if err := cmd.Run(); err != nil {
		return InstanceImage{}, fmt.Errorf("build the instance root file system (tools/instance/build.sh): %w\n%s", err, out.String())
	}
	return check()
}

// Bake boots a throwaway instance of img under dir (in a network namespace of its own that has
// only lo), runs do in it (root is its root file system on the host, run runs a command inside
// it), powers it off as `systemctl poweroff` would and returns img with what changed as a new
// top layer, dir/upper: an image build, as Packer's is. What makes one instance differ from
// another is taken out first: the machine id, the journal, the random seed, the host name.
func Bake(ctx context.Context, img InstanceImage, dir string, do func(ctx context.Context, root string, run func(name string, args ...string) (string, error)) error) (_ InstanceImage, err error) {
	if len(img.Layers) == 0 {
		return InstanceImage{}, errors.New("bake: no image")
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return InstanceImage{}, err
	}
	in := &instance{name: "bake", dir: dir, cgroup: fmt.Sprintf("swtbimg%d", os.Getpid()), layers: img.Layers}
	defer func() {
		in.kill()
		if uerr := unmountUnder(dir + "/"); uerr != nil && err == nil {
			err = fmt.Errorf("bake: %w", uerr)
		}
		removeCgroup(in.cgroup)
		for _, d := range []string{"work", "data", "root"} {
			if p := filepath.Join(dir, d); !isMountPoint(p) && !isMountPoint(filepath.Join(dir, "root/var/lib/docker")) {
				_ = os.RemoveAll(p)
			}
		}
	}()
	if err := in.mount(ctx); err != nil {
		return InstanceImage{}, fmt.Errorf("bake: %w", err)
	}
	if err := firstBoot(in.rootDir(), in.name, InstanceConfig{}); err != nil {
		return InstanceImage{}, fmt.Errorf("bake: %w", err)
	}
	if err := in.start(); err != nil {
		return InstanceImage{}, fmt.Errorf("bake: %w", err)
	}
	if err := in.waitBooted(ctx, 3*time.Minute, true); err != nil {
		return InstanceImage{}, fmt.Errorf("bake: %w\nconsole:\n%s", err, tail(filepath.Join(dir, "console.log"), 30))
	}
	runIn := func(name string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		cmd := in.command(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return out.String(), fmt.Errorf("%s: %w: %s%s", strings.Join(append([]string{name}, args...), " "), err, out.String(), errb.String())
		}
		return out.String(), nil
	}
	if err := do(ctx, in.rootDir(), runIn); err != nil {
		return InstanceImage{}, fmt.Errorf("bake: %w", err)
	}
	if err := in.powerOff(ctx, 2*time.Minute); err != nil {
		return InstanceImage{}, fmt.Errorf("bake: power off: %w", err)
	}
	root := in.rootDir()
	for _, p := range []string{"etc/hostname", "var/lib/systemd/random-seed", "var/lib/cloud"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			return InstanceImage{}, fmt.Errorf("bake: %w", err)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(root, "var/log/journal")); err == nil {
		for _, e := range ents {
			_ = os.RemoveAll(filepath.Join(root, "var/log/journal", e.Name()))
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return InstanceImage{}, fmt.Errorf("bake: %w", err)
	}
	return InstanceImage{Layers: append([]string{filepath.Join(dir, "upper")}, img.Layers...)}, nil
}
