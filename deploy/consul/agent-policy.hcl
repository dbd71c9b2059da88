# ACL policy of ONE box's maintenance-agent (least privilege). A template:
# render it per box (see deploy/consul/README.md), replacing
#   @PREFIX@       consul.prefix        (default "maintenance")
#   @ENV@          agent.environment    (e.g. "prod")
#   @BOX@          agent.node           (the box name in the status key)
#   @CONSUL_NODE@  the box's Consul node name (`consul members`)

# Read the intent, and the other boxes' status for the gates.
key "@PREFIX@/@ENV@/desired" {
  policy = "read"
}
key_prefix "@PREFIX@/@ENV@/status/" {
  policy = "read"
}
# Write only its own status key (under its own session).
key "@PREFIX@/@ENV@/status/@BOX@" {
  policy = "write"
}
session "@CONSUL_NODE@" {
  policy = "write"
}
# Node maintenance (`consul maint`) of its own node only; read the local agent.
node "@CONSUL_NODE@" {
  policy = "write"
}
agent "@CONSUL_NODE@" {
  policy = "read"
}
# Register its own service (roles as tags) and pass its TTL check; see the fleet.
service "maintenance-agent" {
  policy = "write"
}
node_prefix "" {
  policy = "read"
}
