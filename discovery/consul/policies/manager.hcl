# Consul ACL policy for swarm-agent managers of cluster "prod" (--cluster=prod) with the
# default discovery keys service=swarm-manager and prefix=swarm-agent/prod. Replace "prod" and
# "swarm-manager" with your cluster and service; the integration tests load this file as is.
#
#   consul acl policy create -name swarm-agent-prod-manager -rules @manager.hcl
#   consul acl token create -policy-name swarm-agent-prod-manager -description "swarm-agent managers"

# The bootstrap lock, the join tokens, the cluster id and the swarm's unlock key (--autolock).
key_prefix "swarm-agent/prod/" {
  policy = "write"
}

# The bootstrap lock's session, created on the node's own agent.
session_prefix "" {
  policy = "write"
}

# Register and deregister this manager in the managers' service.
service "swarm-manager" {
  policy = "write"
}

# Discovery reads the service's passing instances, which Consul filters by node read.
node_prefix "" {
  policy = "read"
}
