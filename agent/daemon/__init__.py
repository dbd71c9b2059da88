"""The box's agent: watch the intent, decide, act through steps, report.

Its layers, each a package (``.importlinter`` holds a contract per layer):

- ``app``: the wiring, one ``Agent`` object per box;
- ``decision/``: the reconciler's thread and what it owns (intent inbox, gate keeper, step runner, box record, health);
- ``reporting/``: the status key, the session and the service registration;
- ``gates/``: what a gate reads of the other boxes;
- ``watches/``: threads that only look (the intent, drift, the scheduled start);
- ``steps/``: the idempotent actions of each role; ``backends/``: the service managers they drive;
- ``local/``: the state file, metrics, sd_notify, logs.

Never imported by ``maintctl``'s side (``agent.ops``).
"""
