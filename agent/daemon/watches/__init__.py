"""Watches: threads that only look and wake the reconciler, never act.

The intent (``watcher``), the local steps' drift (``driftwatch``) and the
window's scheduled start (``windows``).
"""
