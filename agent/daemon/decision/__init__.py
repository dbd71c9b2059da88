"""Deciding: the reconciler's thread and what it owns.

``reconcile.Reconciler`` asks the pure ``agent.core.decide`` for the next move
and carries it out through the intent inbox (the newest intent, parsed), the
gate keeper (may this role act now), the step runner (check, apply or revert,
check) and the box record (state and per-role progress in the state file);
``health`` says whether the box can make progress, ``loop`` is the thread.
"""
