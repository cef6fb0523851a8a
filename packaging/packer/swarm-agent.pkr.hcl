# Packer template: an EBS-backed AMI with Docker and swarm-agent installed and enabled, and no
# swarm state. Instances started from it need one line of user_data (see ../user_data/).
#
#   make build                                  # bin/swarm-agent, static
#   packer init packaging/packer/               # fetches the amazon plugin (once)
#   packer build -var region=eu-west-1 -var distribution=al2023 packaging/packer/
#
# Run from the repository root, or set binary_path. The binary must match `architecture`
# (GOARCH=arm64 make build for arm64).

packer {
  required_version = ">= 1.9.0"
  required_plugins {
    # TestPackerValidate checks the template with v1.2.1, the version bundled in Packer v1.9.4.
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.1, < 2.0.0"
    }
  }
}

variable "region" {
  type        = string
  description = "AWS region to build the AMI in."
  default     = "eu-west-1"
}

variable "instance_type" {
  type        = string
  description = "Instance type of the build instance (its architecture must match `architecture`)."
  default     = "t3.small"
}

variable "distribution" {
  type        = string
  description = "Base image: debian-12 (Debian's official AMIs) or al2023 (Amazon Linux 2023)."
  default     = "debian-12"
  validation {
    condition     = contains(["debian-12", "al2023"], var.distribution)
    error_message = "The distribution must be debian-12 or al2023: swarm-agent install knows their Docker packages (apt docker.io, dnf docker)."
  }
}

variable "architecture" {
  type        = string
  description = "CPU architecture of the AMI: x86_64 or arm64."
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "The architecture must be x86_64 or arm64."
  }
}

variable "binary_path" {
  type        = string
  description = "The swarm-agent binary to install (default: bin/swarm-agent of this repository, from make build)."
  default     = ""
}

variable "ami_name_prefix" {
  type        = string
  description = "AMI names are PREFIX-DISTRIBUTION-ARCHITECTURE-TIMESTAMP."
  default     = "swarm-agent"
}

variable "subnet_id" {
  type        = string
  description = "Subnet of the build instance (default: the default VPC's); it needs outbound access to the distribution's package mirrors."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for the AMI and its snapshots."
  default     = {}
}

locals {
  # The official images: Debian's account publishes debian-12-{amd64,arm64}-DATE-BUILD; Amazon's
  # publishes al2023-ami-2023.*-kernel-*-{x86_64,arm64} (the minimal variant is named apart).
  bases = {
    "debian-12" = {
      owner     = "136693071363"
      name      = "debian-12-${var.architecture == "x86_64" ? "amd64" : "arm64"}-*"
      ssh_user  = "admin"
      base_name = "Debian 12"
    }
    "al2023" = {
      owner     = "137112412989"
      name      = "al2023-ami-2023.*-kernel-*-${var.architecture}"
      ssh_user  = "ec2-user"
      base_name = "Amazon Linux 2023"
    }
  }
  base      = local.bases[var.distribution]
  binary    = var.binary_path != "" ? var.binary_path : "${path.root}/../../bin/swarm-agent"
  timestamp = formatdate("YYYYMMDDhhmmss", timestamp())
  ami_name  = "${var.ami_name_prefix}-${var.distribution}-${var.architecture}-${local.timestamp}"
}

source "amazon-ebs" "swarm_agent" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = local.base.ssh_user

  source_ami_filter {
    filters = {
      name                = local.base.name
      architecture        = var.architecture
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = [local.base.owner]
    most_recent = true
  }

  ami_name        = local.ami_name
  ami_description = "Docker Swarm node with swarm-agent, on ${local.base.base_name} (${var.architecture})"
  ena_support     = true

  # The build instance answers IMDSv2 only. Instances launched from the AMI get the same from
  # their launch template (http_tokens = "required"; see ../terraform/main.tf).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tags = merge(var.tags, {
    Name                       = local.ami_name
    "swarm-agent:distribution" = var.distribution
    "swarm-agent:architecture" = var.architecture
  })
  snapshot_tags = merge(var.tags, {
    Name = local.ami_name
  })
}

build {
  name    = "swarm-agent"
  sources = ["source.amazon-ebs.swarm_agent"]

  provisioner "file" {
    source      = local.binary
    destination = "/tmp/swarm-agent"
  }

  # swarm-agent install: Docker from the distribution's packages (not started during the build),
  # the agent's systemd unit written and enabled with docker.service, /var/lib/docker/swarm
  # removed so that no instance inherits a node identity. Idempotent.
  provisioner "shell" {
    inline = [
      "set -eu",
      "sudo install -o root -g root -m 0755 /tmp/swarm-agent /usr/bin/swarm-agent",
      "rm -f /tmp/swarm-agent",
      "/usr/bin/swarm-agent version",
      "sudo /usr/bin/swarm-agent install",
      "sudo test ! -e /var/lib/docker/swarm",
      "sudo test ! -e /etc/default/swarm-agent",
      "systemctl is-enabled docker.service swarm-agent.service",
      "cloud-init --version",
    ]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
  }
}
