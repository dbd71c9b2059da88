"""Telling the outside world: partner notices (signed webhooks) and Alertmanager silences.

Used by the edge box's agent (which sees a window start and end first) and
by ``maintctl announce``.
"""
