package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/swarm-agent/swarm-agent/internal/testbed"
	"github.com/swarm-agent/swarm-agent/packaging"
)

// Instance nodes of the local cluster boot like EC2 instances of the AMI the Packer template
// builds: systemd, Debian's docker.io and cloud-init, swarm-agent installed from its .deb and
// prepared with `swarm-agent install`, then started from the rendered user_data by cloud-init.

// Package builds the .deb of the agent binary bin with packaging/package.sh (what `make package`
// runs after `make build`) into dir and returns its path. root is the module root.
func Package(ctx context.Context, root, bin, dir string) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "packaging", "package.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "BIN="+bin, "DIST="+dir, "VERSION=0.0.0+e2e")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("packaging/package.sh: %w\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "swarm-agent_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("packaging/package.sh made %v in %s, want one .deb", debs, dir)
	}
	return debs[0], nil
}

// AgentImage bakes the agent's machine image over base in dir, as the Packer build does on an
// instance of the distribution's image: the .deb installed with dpkg, then `swarm-agent
// install` (Docker is there already; it writes and enables the units). It checks what the
// Packer build checks.
func AgentImage(ctx context.Context, base testbed.InstanceImage, deb, dir string) (testbed.InstanceImage, error) {
	return testbed.Bake(ctx, base, dir, func(ctx context.Context, root string, run func(string, ...string) (string, error)) error {
		data, err := os.ReadFile(deb)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "tmp", "swarm-agent.deb"), data, 0o644); err != nil {
			return err
		}
		steps := [][]string{
			{"dpkg", "-i", "/tmp/swarm-agent.deb"},
			{"rm", "-f", "/tmp/swarm-agent.deb"},
			{packaging.AgentPath, "version"},
			{packaging.AgentPath, "install"},
			// What the Packer build checks, but for /var/lib/docker/swarm: the image's engine
			// data is not part of it (each instance's /var/lib/docker starts empty).
			{"test", "!", "-e", "/etc/default/swarm-agent"},
			{"systemctl", "is-enabled", "docker.service", "swarm-agent.service"},
			{"cloud-init", "--version"},
		}
		for _, s := range steps {
			if _, err := run(s[0], s[1:]...); err != nil {
				return err
			}
		}
		return nil
	})
}

// InstanceUserData renders the user_data of an instance of role, as the Terraform example's
// launch templates do (packaging.RenderUserData), with this cluster's discovery.
func (c *Cluster) InstanceUserData(role string, labels map[string]string) ([]byte, error) {
	return packaging.RenderUserData(packaging.UserData{Role: role, Cluster: ClusterName, Discovery: c.Discovery(), Labels: labels})
}

// InstanceEnv is what the local cloud gives every process of an instance: where instance
// metadata and the AWS API are (the front; on EC2, 169.254.169.254 and the regional
// endpoints) and credentials (on EC2, the instance profile's, from instance metadata).
func (c *Cluster) InstanceEnv() []string {
	return []string{
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + c.Front.IMDSURL(),
		"AWS_ENDPOINT_URL=" + c.Front.APIURL(),
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
	}
}

// BootInstance boots instance node n of image img for the first time with userData (from
// InstanceUserData), its instance id in the NoCloud seed's meta-data and the cluster's
// environment; cloud-init then runs the user_data as on EC2. It returns once the instance is up
// (systemd and its engine answer); cloud-init's final stage, the user_data's runcmd, may still
// run: WaitCloudInit waits for it.
func (c *Cluster) BootInstance(ctx context.Context, n *testbed.Node, img testbed.InstanceImage, userData []byte) error {
	return c.Bed.BootInstance(ctx, n, testbed.InstanceConfig{Image: img, UserData: userData,
		InstanceID: c.InstanceID(n), Env: c.InstanceEnv()})
}

// WaitCloudInit waits until cloud-init finished on instance node n and returns its status
// (cloud-init status --long); the error says when it did not finish or reported an error.
func (c *Cluster) WaitCloudInit(ctx context.Context, n *testbed.Node) (string, error) {
	out, err := c.Bed.InstanceOutput(ctx, n, "cloud-init", "status", "--wait", "--long")
	if err != nil || !strings.Contains(out, "status: done") {
		log, _ := c.Bed.InstanceOutput(ctx, n, "tail", "-n", "40", "/var/log/cloud-init-output.log")
		return out, fmt.Errorf("cloud-init on %s: %v\n%s\n/var/log/cloud-init-output.log:\n%s", n.Name, err, out, log)
	}
	return out, nil
}
