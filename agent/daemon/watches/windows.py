"""Scheduled windows: wake the reconciler at the moments an intent names.

An intent may say ``starts_at`` (enter then, not before) and ``ends_at`` (the
announced end: overrun starts there, ``auto_end`` leaves there). The
reconciler already *decides* from the intent and the clock
(``effective_mode``); this module only makes sure it is awake at those
moments, with an APScheduler 3.x ``BackgroundScheduler`` per agent whose date
jobs do nothing but call ``wake()``. Because the jobs hold no decision, a
restart loses nothing: the watcher hands the accepted intent to the reconciler
again, which re-arms the jobs through ``arm()``; withdrawing or replacing the
intent re-arms or cancels them the same way.

The same scheduler runs the agent's periodic background jobs (``every``),
e.g. the Alertmanager silence lease, so an agent owns one scheduler thread.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from agent.core.model import Intent, Mode

START_JOB = "window-start"
END_JOB = "window-end"


def moments_to_wake(intent: Intent, now: datetime) -> dict[str, datetime]:
    """Which wake-up jobs an intent needs: its future start and end, for a maintenance intent only."""
    if intent.mode is not Mode.MAINTENANCE:
        return {}
    out: dict[str, datetime] = {}
    if intent.starts_at is not None and intent.starts_at > now:
        out[START_JOB] = intent.starts_at
    if intent.ends_at is not None and intent.ends_at > now:
        out[END_JOB] = intent.ends_at
    return out


class EntryScheduler:
    """One agent's scheduler: date jobs that wake the reconciler, and periodic helper jobs."""

    def __init__(self, wake: Callable[[], None], log: Any, clock: Callable[[], datetime] | None = None,
                 start_gauge: Any = None):
        self._wake = wake
        self._start_gauge = start_gauge
        self.log = log
        self._clock = clock or (lambda: datetime.now(UTC))
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._armed_for: int | None = None

    def start(self) -> None:
        if not self._scheduler.running:
            self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def arm(self, intent: Intent) -> None:
        """(Re-)arm the wake-ups for ``intent``, cancelling those of any earlier intent.

        Called by the reconciler whenever it accepts an intent; idempotent.
        """
        wanted = moments_to_wake(intent, self._clock())
        if self._start_gauge is not None:
            # Alerting tells "diverged" from "scheduled" with this (see deploy/prometheus/rules).
            scheduled = intent.starts_at if intent.mode is Mode.MAINTENANCE and intent.starts_at else None
            self._start_gauge.set(scheduled.timestamp() if scheduled else 0)
        for job_id in (START_JOB, END_JOB):
            moment = wanted.get(job_id)
            if moment is None:
                self._cancel(job_id)
                continue
            self._scheduler.add_job(self._fire, "date", run_date=moment, id=job_id, args=[job_id, intent.index],
                                    replace_existing=True)
        if wanted and self._armed_for != intent.index:
            self.log.info("window scheduled", intent_index=intent.index,
                          **{k.replace("window-", "") + "s_at": v.isoformat() for k, v in wanted.items()})
        elif not wanted and self._armed_for is not None:
            self.log.info("scheduled window cancelled", intent_index=intent.index, mode=intent.mode.value)
        self._armed_for = intent.index if wanted else None

    def scheduled(self) -> dict[str, datetime]:
        """The pending wake-ups by job id (for status, tests and debugging)."""
        out = {}
        for job_id in (START_JOB, END_JOB):
            job = self._scheduler.get_job(job_id)
            if job is not None and job.next_run_time is not None:
                out[job_id] = job.next_run_time
            elif job is not None and not self._scheduler.running:
                out[job_id] = job.trigger.run_date
        return out

    def every(self, job_id: str, seconds: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` every ``seconds`` (first run right away) on the scheduler's workers."""
        self._scheduler.add_job(fn, "interval", seconds=seconds, id=job_id, replace_existing=True,
                                next_run_time=self._clock())

    def _cancel(self, job_id: str) -> None:
        try:
            self._scheduler.remove_job(job_id)
        except JobLookupError:
            pass

    def _fire(self, job_id: str, intent_index: int) -> None:
        if job_id == END_JOB:
            self.log.warning("announced end of the window reached: a box still in maintenance now overruns "
                             "(maintenance_window_overrun_seconds)", intent_index=intent_index)
        else:
            self.log.info("window moment reached; waking the reconciler", job=job_id, intent_index=intent_index)
        self._wake()
