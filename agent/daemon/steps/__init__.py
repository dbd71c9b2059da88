"""Steps: the smallest idempotent actions a role takes. See ``base.Step``."""
