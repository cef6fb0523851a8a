# Consul ACL policy for swarm-agent workers of cluster "prod" (--cluster=prod) with the default
# discovery keys service=swarm-manager and prefix=swarm-agent/prod. A worker reads only the
# worker join token and the cluster id: never the manager token nor the unlock key (--autolock).
# Replace "prod" and "swarm-manager" with your cluster and service; the integration tests load
# this file as is.
#
#   consul acl policy create -name swarm-agent-prod-worker -rules @worker.hcl
#   consul acl token create -policy-name swarm-agent-prod-worker -description "swarm-agent workers"

key "swarm-agent/prod/join-token/worker" {
  policy = "read"
}

key "swarm-agent/prod/cluster-id" {
  policy = "read"
}

# Discovery reads the managers' passing instances, which Consul filters by node read.
service "swarm-manager" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
