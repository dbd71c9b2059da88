# Read-only ACL policy for dashboards and on-call: see the intent, the status
# of every box and the history of every environment; change nothing.
# Render with @PREFIX@ (see deploy/consul/README.md).

key_prefix "@PREFIX@/" {
  policy = "read"
}
service "maintenance-agent" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
