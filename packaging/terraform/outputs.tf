output "zone_id" {
  description = "The private hosted zone of the managers' record."
  value       = aws_route53_zone.swarm.zone_id
}

output "discovery" {
  description = "The agent's --discovery string, as the user_data passes it."
  value       = local.discovery
}

output "manager_asg_name" {
  description = "Auto Scaling group of the managers."
  value       = aws_autoscaling_group.managers.name
}

output "worker_asg_name" {
  description = "Auto Scaling group of the workers."
  value       = aws_autoscaling_group.workers.name
}

output "termination_queue_url" {
  description = "SQS queue of termination lifecycle events (null when enable_termination_queue is false)."
  value       = one(aws_sqs_queue.termination[*].url)
}

output "join_token_kms_key_arn" {
  description = "KMS key of the SSM SecureString join tokens."
  value       = aws_kms_key.join_tokens.arn
}

output "security_group_id" {
  description = "Security group of the swarm nodes (swarm ports open among its members only)."
  value       = aws_security_group.swarm.id
}

output "manager_role_arn" {
  description = "IAM role of the managers' instance profile."
  value       = aws_iam_role.node["manager"].arn
}

output "worker_role_arn" {
  description = "IAM role of the workers' instance profile."
  value       = aws_iam_role.node["worker"].arn
}

output "load_balancer_dns_name" {
  description = "DNS name of the Network Load Balancer in front of the nodes (null when enable_load_balancer is false)."
  value       = one(aws_lb.ingress[*].dns_name)
}

output "target_group_arn" {
  description = "Target group of the nodes of both groups (null when enable_load_balancer is false)."
  value       = one(aws_lb_target_group.ingress[*].arn)
}
