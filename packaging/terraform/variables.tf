variable "region" {
  type        = string
  description = "AWS region of the cluster."
}

variable "cluster_name" {
  type        = string
  description = "Cluster name: the agent's --cluster, the SSM path /swarm-agent/NAME/ and the prefix of every resource name."
  default     = "prod"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$", var.cluster_name))
    error_message = "The cluster_name must be 1-31 letters, digits, '.', '_' or '-', starting with a letter or digit (the agent allows 64; resource names derived from it are shorter)."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the cluster; the private hosted zone is associated with it."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the instances, ideally one per availability zone (managers spread over them)."

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "The subnet_ids list must name at least one subnet."
  }
}

variable "ami_id" {
  type        = string
  description = "The image built with packaging/packer/swarm-agent.pkr.hcl."
}

variable "manager_instance_type" {
  type        = string
  description = "Instance type of the managers."
  default     = "t3.medium"
}

variable "worker_instance_type" {
  type        = string
  description = "Instance type of the workers."
  default     = "t3.large"
}

variable "manager_count" {
  type        = number
  description = "Number of managers: odd, so that the Raft quorum survives floor(n/2) failures."
  default     = 3

  validation {
    condition     = contains([1, 3, 5, 7], var.manager_count)
    error_message = "The manager_count must be 1, 3, 5 or 7."
  }
}

variable "worker_min_size" {
  type        = number
  description = "Smallest number of workers."
  default     = 2
}

variable "worker_max_size" {
  type        = number
  description = "Largest number of workers."
  default     = 10
}

variable "worker_desired_capacity" {
  type        = number
  description = "Workers to start with (later changed by scaling, which this example leaves alone)."
  default     = 2
}

variable "zone_name" {
  type        = string
  description = "Name of the private hosted zone created for the cluster."
  default     = "swarm.internal"
}

variable "managers_record" {
  type        = string
  description = "Record name, inside the zone, under which managers publish their addresses."
  default     = "managers"
}

variable "worker_labels" {
  type        = map(string)
  description = "Node labels of the workers (--labels), e.g. { workload = \"general\" }."
  default     = {}
}

variable "manager_labels" {
  type        = map(string)
  description = "Node labels of the managers (--labels)."
  default     = {}
}

variable "enable_termination_queue" {
  type        = bool
  description = "Create the EventBridge rule and SQS queue that deliver 'EC2 Instance-terminate Lifecycle Action' events to the managers."
  default     = true
}

variable "enable_health_events" {
  type        = bool
  description = "With the termination queue: also send AWS Health's scheduled changes of EC2 instances (retirement, reboot, maintenance) to it, and keep its messages 14 days (AWS Health announces them up to two weeks ahead)."
  default     = true
}

variable "lifecycle_heartbeat_timeout" {
  type        = number
  description = "Seconds an instance waits in Pending:Wait (launching) or Terminating:Wait (terminating) between the agent's heartbeats."
  default     = 300

  validation {
    condition     = var.lifecycle_heartbeat_timeout >= 30 && var.lifecycle_heartbeat_timeout <= 7200
    error_message = "The lifecycle_heartbeat_timeout must be 30-7200 seconds (Auto Scaling's range)."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}

variable "token_store" {
  description = "Where the join tokens live: ssm (SSM Parameter Store, 40 reads/s per account at standard throughput) or secretsmanager (10,000 reads/s: for clusters where hundreds of nodes boot at once)."
  type        = string
  default     = "ssm"

  validation {
    condition     = contains(["ssm", "secretsmanager"], var.token_store)
    error_message = "token_store must be ssm or secretsmanager."
  }
}

variable "enable_load_balancer" {
  type        = bool
  description = "Put a Network Load Balancer in front of the nodes of both groups, forwarding load_balancer_port to service_port (a port a swarm service publishes)."
  default     = true
}

variable "load_balancer_internal" {
  type        = bool
  description = "An internal load balancer (in subnet_ids); false makes it internet-facing, which needs public subnets in load_balancer_subnet_ids."
  default     = true
}

variable "load_balancer_subnet_ids" {
  type        = list(string)
  description = "Subnets of the load balancer; empty: subnet_ids."
  default     = []
}

variable "load_balancer_port" {
  type        = number
  description = "Port the load balancer listens on (TCP)."
  default     = 80
}

variable "service_port" {
  type        = number
  description = "Port a swarm service publishes through the routing mesh (docker service create -p SERVICE_PORT:...), which the load balancer forwards to on every node."
  default     = 80

  validation {
    condition     = var.service_port >= 1 && var.service_port <= 65535 && !contains([2377, 2380, 4789, 7946], var.service_port)
    error_message = "The service_port must be 1-65535 and not a swarm port (2377, 2380, 4789, 7946)."
  }
}

variable "deregistration_delay" {
  type        = number
  description = "Seconds a scaled-in node keeps the connections the load balancer sent it before the termination hook and the drain start: at least the longest request or connection through the load balancer."
  default     = 120

  validation {
    condition     = var.deregistration_delay >= 0 && var.deregistration_delay <= 3600
    error_message = "The deregistration_delay must be 0-3600 seconds (the target group's range)."
  }
}

variable "worker_cpu_target" {
  type        = number
  description = "Target tracking: the workers' average CPU utilisation (percent) Auto Scaling keeps them at, adding and removing workers within worker_min_size..worker_max_size; 0: no scaling policy."
  default     = 60

  validation {
    condition     = var.worker_cpu_target >= 0 && var.worker_cpu_target < 100
    error_message = "The worker_cpu_target must be 0 (off) to 99 percent."
  }
}

variable "worker_instance_warmup" {
  type        = number
  description = "Seconds a new worker's CPU is left out of the average: its boot, join, and the leader's cooldown and rebalance onto it."
  default     = 300
}

variable "manager_refresh_warmup" {
  type        = number
  description = "Seconds an instance refresh of the managers waits after a replacement is in service (its launch hook completed: a reachable Raft member) before it replaces the next manager."
  default     = 60

  validation {
    condition     = var.manager_refresh_warmup >= 0
    error_message = "The manager_refresh_warmup must be 0 or more seconds."
  }
}

variable "manager_refresh_checkpoints" {
  type        = list(number)
  description = "Percentages of the managers replaced at which an instance refresh pauses for manager_refresh_checkpoint_delay (e.g. [34, 67, 100]); empty: no pause."
  default     = []

  validation {
    condition     = alltrue([for p in var.manager_refresh_checkpoints : p >= 1 && p <= 100])
    error_message = "Each of manager_refresh_checkpoints must be 1-100."
  }
}

variable "manager_refresh_checkpoint_delay" {
  type        = number
  description = "Seconds an instance refresh of the managers waits at each checkpoint."
  default     = 600

  validation {
    condition     = var.manager_refresh_checkpoint_delay >= 0 && var.manager_refresh_checkpoint_delay <= 172800
    error_message = "The manager_refresh_checkpoint_delay must be 0-172800 seconds (Auto Scaling's range)."
  }
}

variable "max_instance_lifetime" {
  type        = number
  description = "Seconds an instance of either group may be in service before Auto Scaling replaces it (MaxInstanceLifetime); 0: no maximum."
  default     = 0

  validation {
    condition     = var.max_instance_lifetime == 0 || var.max_instance_lifetime >= 86400 && var.max_instance_lifetime <= 31536000
    error_message = "The max_instance_lifetime must be 0 or 86400-31536000 seconds (Auto Scaling's range)."
  }
}

variable "worker_warm_pool" {
  type = object({
    min_size                    = optional(number, 0)
    max_group_prepared_capacity = optional(number, -1)
    pool_state                  = optional(string, "Stopped")
    reuse_on_scale_in           = optional(bool, true)
  })
  description = "A warm pool for the workers' group (null: none). Pool instances prepare without joining the swarm and join when a scale-out takes them; max_group_prepared_capacity -1 means the group's max size; pool_state Stopped, Running or Hibernated."
  default     = null

  validation {
    condition     = var.worker_warm_pool == null ? true : contains(["Stopped", "Running", "Hibernated"], var.worker_warm_pool.pool_state) && var.worker_warm_pool.min_size >= 0 && var.worker_warm_pool.max_group_prepared_capacity >= -1
    error_message = "The worker_warm_pool needs pool_state Stopped, Running or Hibernated, min_size >= 0 and max_group_prepared_capacity >= -1."
  }
}

variable "worker_warm_pull_images" {
  type        = list(string)
  description = "Images a worker launched into the warm pool pulls while it prepares (--warm-pull-images), e.g. [\"registry.example.com/app:1.4\"]."
  default     = []
}
