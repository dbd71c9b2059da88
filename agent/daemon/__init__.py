"""The box's agent: watch the intent, decide, act through steps, report.

The watcher, the reconciler, the status reporter, the steps and their
service-manager backends, the scheduled start, metrics and sd_notify.
Never imported by ``maintctl``'s side (``agent.ops``).
"""
