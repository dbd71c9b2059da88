"""What the operator's tool needs: reading the fleet, the audit history, the .ics calendar, rendering.

Never imports the daemon: ``maintctl`` sees the fleet only through Consul,
as any operator would.
"""
