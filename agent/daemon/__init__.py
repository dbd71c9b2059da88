"""The box's agent: watch the intent, decide, act through steps, report.

The watcher, the reconciler (a thread loop carrying out ``agent.core.decide``
with its intent inbox, gate keeper, step runner and box record), the status
reporter, the steps and their service-manager backends, the scheduled start,
metrics and sd_notify.
Never imported by ``maintctl``'s side (``agent.ops``).
"""
