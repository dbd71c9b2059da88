# ACL policy of operators running `maintctl` for ONE environment. Render with
# @PREFIX@ and @ENV@ (see deploy/consul/README.md); one policy per environment.

# Flip the intent and write the audit trail.
key "@PREFIX@/@ENV@/desired" {
  policy = "write"
}
key_prefix "@PREFIX@/@ENV@/history/" {
  policy = "write"
}
# Read every box's status.
key_prefix "@PREFIX@/@ENV@/" {
  policy = "read"
}
service "maintenance-agent" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
