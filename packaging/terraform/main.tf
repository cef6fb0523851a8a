# A Docker Swarm cluster of swarm-agent nodes on AWS: a private hosted zone for discovery, manager
# and worker Auto Scaling groups whose instances boot from the Packer image with one line of
# user_data, termination lifecycle hooks that hold an instance until its agent has drained it,
# least-privilege instance profiles, and (optionally) EventBridge delivering the termination
# events to an SQS queue. See packaging/README.md.
#
# Join tokens live in SSM Parameter Store under /swarm-agent/CLUSTER/ (token_store = "ssm") or
# in Secrets Manager as swarm-agent/CLUSTER/join-token/{manager,worker} ("secretsmanager"),
# written by the first manager and read by the others. Terraform does not create them: it would
# hold stale copies of live tokens, or overwrite them. After `terraform destroy`, delete them with:
# aws ssm delete-parameters --names /swarm-agent/CLUSTER/{join-token/manager,join-token/worker,cluster-id}
# or aws secretsmanager delete-secret --secret-id swarm-agent/CLUSTER/join-token/ROLE (each role).

data "aws_caller_identity" "current" {}

locals {
  manager_group = "${var.cluster_name}-managers"
  worker_group  = "${var.cluster_name}-workers"
  queue_name    = "${var.cluster_name}-swarm-termination"
  hook_name     = "swarm-agent-drain"
  launch_hook   = "swarm-agent-launch"

  # Load balancer and target group names: letters, digits and hyphens, at most 32 characters.
  lb_name       = "${trim(substr(replace(var.cluster_name, "/[^A-Za-z0-9-]/", "-"), 0, 20), "-")}-swarm"
  managers_fqdn = "${var.managers_record}.${var.zone_name}"
  discovery     = "provider=route53 zone_id=${aws_route53_zone.swarm.zone_id} name=${local.managers_fqdn}"

  # The placeholders of packaging/iam/*.json, all of them and no others.
  policy_vars = {
    region        = var.region
    account_id    = data.aws_caller_identity.current.account_id
    cluster       = var.cluster_name
    zone_id       = aws_route53_zone.swarm.zone_id
    kms_key_id    = aws_kms_key.join_tokens.key_id
    manager_group = local.manager_group
    worker_group  = local.worker_group
    queue_name    = local.queue_name
  }

  # What differs between managers and workers. Only managers encrypt tokens, so only they are
  # told the key; workers decrypt with whichever key SSM names.
  roles = {
    manager = {
      instance_type = var.manager_instance_type
      labels        = var.manager_labels
      kms_key_id    = aws_kms_key.join_tokens.arn
      warm_images   = []
    }
    worker = {
      instance_type = var.worker_instance_type
      labels        = var.worker_labels
      kms_key_id    = ""
      warm_images   = var.worker_warm_pull_images
    }
  }
}

# ---- Discovery: the private hosted zone -----------------------------------------------------

resource "aws_route53_zone" "swarm" {
  name    = var.zone_name
  comment = "swarm-agent cluster ${var.cluster_name}: managers' addresses and the bootstrap lock"

  vpc {
    vpc_id = var.vpc_id
  }

  # The agents create the records in it (managers' A sets, the lock's TXT): remove them with it.
  force_destroy = true
}

# Resolvers cache a negative answer ("no such name") for the smaller of the SOA record's TTL and
# its MINIMUM field (RFC 2308). Route 53 writes TTL 900 and MINIMUM 86400, so a worker that asks
# for the managers' name before the first manager registered would be told "no such name" by the
# VPC resolver for up to 15 minutes, although the managers appear seconds later. MINIMUM 10 makes
# that 10 s. The agent never takes a negative answer as final (it also reads the record through
# the API after api_after), but with a low value DNS answers first. The other fields are Route 53's.
resource "aws_route53_record" "soa" {
  zone_id         = aws_route53_zone.swarm.zone_id
  name            = aws_route53_zone.swarm.name
  type            = "SOA"
  ttl             = 900
  allow_overwrite = true
  records         = ["${aws_route53_zone.swarm.primary_name_server}. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 10"]
}

# ---- Join tokens: the KMS key of the SSM SecureString parameters or the secrets -------------

# A key of the cluster's own, so that the IAM policies can name it and limit its use to SSM and
# to this cluster's parameters. The default key policy lets IAM policies of the account grant it.
resource "aws_kms_key" "join_tokens" {
  description             = "swarm-agent ${var.cluster_name}: SSM SecureString join tokens"
  enable_key_rotation     = true
  deletion_window_in_days = 7
}

resource "aws_kms_alias" "join_tokens" {
  name          = "alias/swarm-agent-${var.cluster_name}"
  target_key_id = aws_kms_key.join_tokens.key_id
}

# ---- Instance profiles ---------------------------------------------------------------------

data "aws_iam_policy_document" "ec2_assume_role" {
  statement {
    sid     = "EC2InstancesAssumeTheRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  for_each           = local.roles
  name               = "${var.cluster_name}-swarm-${each.key}"
  description        = "swarm-agent ${each.key}s of cluster ${var.cluster_name}"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume_role.json
}

resource "aws_iam_role_policy" "node" {
  for_each = local.roles
  name     = "swarm-agent-${each.key}"
  role     = aws_iam_role.node[each.key].id
  policy   = templatefile("${path.module}/../iam/${each.key}-policy.json", local.policy_vars)
}

resource "aws_iam_instance_profile" "node" {
  for_each = local.roles
  name     = "${var.cluster_name}-swarm-${each.key}"
  role     = aws_iam_role.node[each.key].name
}

# ---- Network: swarm ports among the cluster's nodes only ------------------------------------

resource "aws_security_group" "swarm" {
  name        = "${var.cluster_name}-swarm"
  description = "Docker Swarm nodes of ${var.cluster_name}: swarm ports open among members only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "swarm" {
  for_each = {
    manager-api   = { protocol = "tcp", port = 2377, what = "swarm manager API (join, Raft)" }
    gossip-tcp    = { protocol = "tcp", port = 7946, what = "node gossip" }
    gossip-udp    = { protocol = "udp", port = 7946, what = "node gossip" }
    overlay-vxlan = { protocol = "udp", port = 4789, what = "overlay network data (VXLAN)" }
    overlay-esp   = { protocol = "50", port = null, what = "encrypted overlay networks (IPsec ESP)" }
    control-api   = { protocol = "tcp", port = 2380, what = "swarm-agent control API on managers (mTLS, swarm PKI; --control-port)" }
  }
  security_group_id            = aws_security_group.swarm.id
  referenced_security_group_id = aws_security_group.swarm.id
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = each.value.what
}

# AWS APIs (Route 53, SSM, Auto Scaling, SQS) through a NAT gateway or VPC endpoints.
resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.swarm.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "outbound: AWS APIs and whatever the services need"
}

# ---- Launch templates: the image and one line of user_data ----------------------------------

resource "aws_launch_template" "node" {
  for_each               = local.roles
  name                   = "${var.cluster_name}-swarm-${each.key}"
  image_id               = var.ami_id
  instance_type          = each.value.instance_type
  vpc_security_group_ids = [aws_security_group.swarm.id]
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.node[each.key].arn
  }

  # IMDSv2 only, which the agent uses. Hop limit 1: containers behind Docker's bridge cannot
  # reach the metadata service, and so not the instance role's credentials.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  # The same bytes as packaging.RenderUserData gives (TestUserDataTerraformTwin).
  user_data = base64encode(templatefile("${path.module}/../user_data/cloud-config.yaml.tftpl", {
    role             = each.key
    cluster          = var.cluster_name
    discovery        = local.discovery
    labels           = each.value.labels
    kms_key_id       = each.value.kms_key_id
    token_store      = var.token_store
    warm_pull_images = each.value.warm_images
    launch_hook      = local.launch_hook
  }))

  tag_specifications {
    resource_type = "instance"
    tags = {
      Name               = "${var.cluster_name}-swarm-${each.key}"
      "swarm-agent:role" = each.key
    }
  }
}

# ---- Auto Scaling groups ------------------------------------------------------------------

resource "aws_autoscaling_group" "managers" {
  name                = local.manager_group
  min_size            = var.manager_count
  max_size            = var.manager_count
  desired_capacity    = var.manager_count
  vpc_zone_identifier = var.subnet_ids
  health_check_type   = "EC2"

  launch_template {
    id      = aws_launch_template.node["manager"].id
    version = aws_launch_template.node["manager"].latest_version
  }

  # Which cluster the group's instances and termination notices belong to: leaders of several
  # clusters sharing one termination queue act only on their own.
  tag {
    key                 = "swarm-agent:cluster"
    value               = var.cluster_name
    propagate_at_launch = true
  }

  # Auto Scaling registers the instances with the load balancer's target group when they
  # launch and deregisters them first when they are scaled in (see the load balancer below).
  target_group_arns = aws_lb_target_group.ingress[*].arn

  # A new launch template version starts an instance refresh of the managers. Auto Scaling
  # terminates one manager and launches its replacement at the same time (minimum healthy 90 %
  # of 3, 5, 7 or 9 managers is one at a time; maximum 100 %: no instance beyond
  # manager_count); the old manager's agent keeps its terminate hook (heartbeats) until the
  # replacement, which joins through discovery, is a reachable Raft member, so the managers
  # never drop below manager_count. The replacement counts as healthy once its launch hook
  # completed (it is then a reachable member) and the warmup passed. Checkpoints, when set,
  # pause the refresh for a look at the swarm (README, "Instance refresh").
  # Optional maximum instance lifetime (0: none): Auto Scaling replaces each manager that
  # reaches it as an instance refresh does, one at a time, terminate and launch, the old
  # manager's agent holding its terminate hook until the replacement is a reachable member
  # (README, "Maximum instance lifetime").
  max_instance_lifetime = var.max_instance_lifetime

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 90
      instance_warmup        = var.manager_refresh_warmup
      checkpoint_percentages = length(var.manager_refresh_checkpoints) > 0 ? var.manager_refresh_checkpoints : null
      checkpoint_delay       = length(var.manager_refresh_checkpoints) > 0 ? var.manager_refresh_checkpoint_delay : null
    }
  }

  # New instances wait in Pending:Wait until their agent has the node in the swarm (see below).
  initial_lifecycle_hook {
    name                 = local.launch_hook
    lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
    heartbeat_timeout    = var.lifecycle_heartbeat_timeout
    default_result       = "ABANDON"
  }

  # Instances boot with their permissions in place.
  depends_on = [aws_iam_role_policy.node]
}

resource "aws_autoscaling_group" "workers" {
  name                = local.worker_group
  min_size            = var.worker_min_size
  max_size            = var.worker_max_size
  desired_capacity    = var.worker_desired_capacity
  vpc_zone_identifier = var.subnet_ids
  health_check_type   = "EC2"

  # Optional maximum instance lifetime (0: none): a worker that reaches it drains and is
  # replaced, the group's capacity kept.
  max_instance_lifetime = var.max_instance_lifetime

  launch_template {
    id      = aws_launch_template.node["worker"].id
    version = aws_launch_template.node["worker"].latest_version
  }

  # Which cluster the group's instances and termination notices belong to: leaders of several
  # clusters sharing one termination queue act only on their own.
  tag {
    key                 = "swarm-agent:cluster"
    value               = var.cluster_name
    propagate_at_launch = true
  }

  # New instances wait in Pending:Wait until their agent has the node in the swarm (see below).
  initial_lifecycle_hook {
    name                 = local.launch_hook
    lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
    heartbeat_timeout    = var.lifecycle_heartbeat_timeout
    default_result       = "ABANDON"
  }

  target_group_arns = aws_lb_target_group.ingress[*].arn

  # Optional warm pool (see "Warm pools" in the README): instances launched into it only
  # prepare (Docker checked, --warm-pull-images pulled; the launch hook above holds them in
  # Warmed:Pending:Wait meanwhile) and join the swarm when a scale-out takes them; with
  # reuse_on_scale_in a scale-in drains the node and returns the instance to the pool.
  dynamic "warm_pool" {
    for_each = var.worker_warm_pool == null ? [] : [var.worker_warm_pool]
    content {
      pool_state                  = warm_pool.value.pool_state
      min_size                    = warm_pool.value.min_size
      max_group_prepared_capacity = warm_pool.value.max_group_prepared_capacity
      instance_reuse_policy {
        reuse_on_scale_in = warm_pool.value.reuse_on_scale_in
      }
    }
  }

  depends_on = [aws_iam_role_policy.node]

  lifecycle {
    # Scaling policies and people change the size; a plan should not undo it.
    ignore_changes = [desired_capacity]
  }
}

# ---- Launch lifecycle hooks: no instance is in service before its node is in the swarm -----

# Each group's initial_lifecycle_hook above (an initial hook, not a separate
# aws_autoscaling_lifecycle_hook, so that it holds the groups' first instances too): a new
# instance waits in Pending:Wait while `swarm-agent boot` (user_data, which names the hook with
# --launch-hook-name: a boot without it makes no Auto Scaling call) works, which heartbeats
# the action meanwhile and completes it with CONTINUE only once the node is really in the swarm
# (joined, labelled, ready; a manager a reachable Raft member), or with ABANDON when the boot
# gives up for good (a bad setting, access denied, --wait elapsed): Auto Scaling then
# terminates the instance and launches another instead of keeping a node that never joined.
# default_result ABANDON: an agent that died while booting does the same, at the timeout. With
# the termination queue, the leader also completes the action of a node that is in the swarm
# but whose agent did not complete it (--queue-grace after it showed ready).

# ---- Termination lifecycle hooks: no instance leaves before its node was drained ------------

# On scale-in, Auto Scaling holds the instance in Terminating:Wait; the agent drains the node
# (demoting a manager first), leaves the swarm, then completes the action with CONTINUE. While it
# works it sends heartbeats, each granting heartbeat_timeout more seconds (up to Auto Scaling's
# global limit of 100 x heartbeat_timeout or 48 h).
#
# default_result is what happens when neither a completion nor a heartbeat came in time: the
# agent died or the instance hung. For a terminating instance CONTINUE and ABANDON both end in
# termination; ABANDON also cancels the group's other termination hooks, CONTINUE lets them run.
# An instance that is going away anyway should not cut short another team's hook (log shipping,
# deregistration), so CONTINUE. The swarm meanwhile sees the node go down, and the managers'
# dead-node reaper removes it.
resource "aws_autoscaling_lifecycle_hook" "drain" {
  for_each = {
    manager = aws_autoscaling_group.managers.name
    worker  = aws_autoscaling_group.workers.name
  }
  name                   = local.hook_name
  autoscaling_group_name = each.value
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.lifecycle_heartbeat_timeout
  default_result         = "CONTINUE"
}

# ---- Optional: lifecycle events to an SQS queue the managers read --------------------------

# Every lifecycle hook emits an "EC2 Instance-terminate Lifecycle Action" or "EC2
# Instance-launch Lifecycle Action" event on EventBridge's default bus; this rule sends the
# cluster's groups' events to a queue. A manager can then drain a node that cannot do it itself
# (its agent hung) and complete the action for it, and complete the launch action of a node
# that joined but whose agent did not.
resource "aws_sqs_queue" "termination" {
  count = var.enable_termination_queue ? 1 : 0
  name  = local.queue_name
  # A termination notice older than the hook's limit is moot (the leader deletes it), but AWS
  # Health announces scheduled changes up to two weeks ahead, and the leader keeps such an
  # event in the queue until its window nears: SQS's most, 14 days.
  message_retention_seconds  = var.enable_health_events ? 1209600 : 7200
  visibility_timeout_seconds = 120
  receive_wait_time_seconds  = 20
  # SQS-managed encryption: EventBridge can send to it without a KMS grant.
  sqs_managed_sse_enabled = true
}

resource "aws_cloudwatch_event_rule" "termination" {
  count       = var.enable_termination_queue ? 1 : 0
  name        = "${var.cluster_name}-swarm-termination"
  description = "Termination lifecycle actions of swarm-agent cluster ${var.cluster_name}"
  event_pattern = jsonencode({
    source        = ["aws.autoscaling"]
    "detail-type" = ["EC2 Instance-terminate Lifecycle Action", "EC2 Instance-launch Lifecycle Action"]
    detail = {
      AutoScalingGroupName = [local.manager_group, local.worker_group]
    }
  })
}

resource "aws_cloudwatch_event_target" "termination" {
  count = var.enable_termination_queue ? 1 : 0
  rule  = aws_cloudwatch_event_rule.termination[0].name
  arn   = aws_sqs_queue.termination[0].arn
}

# AWS Health's scheduled changes of EC2 instances (retirement, stop, reboot and host
# maintenance) for the whole account: EventBridge cannot filter them by group, so the leader
# acts only for its own swarm's nodes and leaves the others' events to their clusters' leaders.
resource "aws_cloudwatch_event_rule" "health" {
  count       = var.enable_termination_queue && var.enable_health_events ? 1 : 0
  name        = "${var.cluster_name}-swarm-health"
  description = "AWS Health scheduled changes of EC2 instances, for swarm-agent cluster ${var.cluster_name}"
  event_pattern = jsonencode({
    source        = ["aws.health"]
    "detail-type" = ["AWS Health Event"]
    detail = {
      service           = ["EC2"]
      eventTypeCategory = ["scheduledChange"]
    }
  })
}

resource "aws_cloudwatch_event_target" "health" {
  count = var.enable_termination_queue && var.enable_health_events ? 1 : 0
  rule  = aws_cloudwatch_event_rule.health[0].name
  arn   = aws_sqs_queue.termination[0].arn
}

data "aws_iam_policy_document" "termination_queue" {
  count = var.enable_termination_queue ? 1 : 0
  statement {
    sid       = "EventBridgeSendsTheRulesEvents"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.termination[0].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = concat([aws_cloudwatch_event_rule.termination[0].arn], aws_cloudwatch_event_rule.health[*].arn)
    }
  }
}

resource "aws_sqs_queue_policy" "termination" {
  count     = var.enable_termination_queue ? 1 : 0
  queue_url = aws_sqs_queue.termination[0].id
  policy    = data.aws_iam_policy_document.termination_queue[0].json
}

# ---- Optional: a load balancer in front of the nodes, and workers that scale on load ---------

# A Network Load Balancer forwards load_balancer_port to service_port on every node of both
# groups: a service that publishes service_port (docker service create -p 80:8080 ...) is
# reachable on every node through the swarm's routing mesh, whichever nodes run its tasks.
# Auto Scaling registers each instance in the target group when it launches and, when it
# scales an instance in, first deregisters it: the load balancer sends it no new connection
# and lets the open ones run for deregistration_delay seconds. Only then does the instance
# wait in Terminating:Wait, where its agent drains the node (its tasks stop with their stop
# grace period and start elsewhere) and completes the hook. README.md ("Connections survive
# scale-in") has the whole order of events and what to set.
resource "aws_lb" "ingress" {
  count                            = var.enable_load_balancer ? 1 : 0
  name                             = local.lb_name
  load_balancer_type               = "network"
  internal                         = var.load_balancer_internal
  subnets                          = length(var.load_balancer_subnet_ids) > 0 ? var.load_balancer_subnet_ids : var.subnet_ids
  enable_cross_zone_load_balancing = true
}

resource "aws_lb_target_group" "ingress" {
  count       = var.enable_load_balancer ? 1 : 0
  name        = "${local.lb_name}-${var.service_port}"
  port        = var.service_port
  protocol    = "TCP"
  target_type = "instance"
  vpc_id      = var.vpc_id

  # How long a scaled-in node keeps the connections the load balancer sent it before Auto
  # Scaling goes on with the termination hook (and the agent's drain).
  deregistration_delay = var.deregistration_delay

  # Every node answers on the published port (the routing mesh), so a TCP check says whether
  # the node's engine forwards it, not whether a task runs there.
  health_check {
    protocol            = "TCP"
    port                = "traffic-port"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "ingress" {
  count             = var.enable_load_balancer ? 1 : 0
  load_balancer_arn = aws_lb.ingress[0].arn
  port              = var.load_balancer_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.ingress[0].arn
  }
}

data "aws_vpc" "swarm" {
  id = var.vpc_id
}

# The load balancer keeps the clients' addresses (instance targets): the nodes accept the
# service port from the VPC (an internal load balancer and its health checks) or from anywhere
# (an internet-facing one; the nodes themselves stay in private subnets).
resource "aws_vpc_security_group_ingress_rule" "service" {
  count             = var.enable_load_balancer ? 1 : 0
  security_group_id = aws_security_group.swarm.id
  cidr_ipv4         = var.load_balancer_internal ? data.aws_vpc.swarm.cidr_block : "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = var.service_port
  to_port           = var.service_port
  description       = "the published service port, through the load balancer"
}

# Target tracking keeps the workers' average CPU near worker_cpu_target: Auto Scaling adds
# workers when it is above and, some 15 minutes below it, removes some, each through the
# termination hook and the agent's drain. New workers get work from the leader: services
# labelled swarm-agent.rebalance=true spread onto them after --rebalance-cooldown, and
# swarm-agent.replicas-per-node services grow with them (README.md, "Scale-out").
resource "aws_autoscaling_policy" "workers_cpu" {
  count                     = var.worker_cpu_target > 0 ? 1 : 0
  name                      = "${var.cluster_name}-workers-cpu"
  autoscaling_group_name    = aws_autoscaling_group.workers.name
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = var.worker_instance_warmup

  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = var.worker_cpu_target
  }
}
