"""What the agent keeps and shows on its own box: the state file, metrics, sd_notify, logs."""
