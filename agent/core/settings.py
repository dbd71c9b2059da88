"""Every retry and rate knob of the agent and ``maintctl``, with its meaning and default, in one place.

In the spirit of kopf's ``OperatorSettings``: one frozen object, built once
(``Settings()``, or ``dataclasses.replace`` of it where the config file sets
a knob) and passed down to whatever retries or rate-limits; nobody writes an
inline backoff or budget. A policy is a value; ``start()`` gives the mutable
``Backoff``/``TokenBucket`` one loop owns.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from agent.core.backoff import Backoff, TokenBucket


@dataclass(frozen=True)
class BackoffPolicy:
    """Retry after base·2^n seconds, at most ``cap``, jittered to [0.5, 1]·delay;
    the first retry of a run of failures gets up to ``first_spread`` seconds more."""

    base: float
    cap: float
    first_spread: float = 0.0

    def capped(self, cap: float, first_spread: float | None = None) -> BackoffPolicy:
        """The same policy with at most ``cap`` (and ``first_spread``) seconds."""
        spread = self.first_spread if first_spread is None else min(self.first_spread, first_spread)
        return replace(self, cap=min(self.cap, cap), first_spread=spread)

    def start(self, rng: random.Random | None = None) -> Backoff:
        return Backoff(base=self.base, cap=self.cap, rng=rng, first_spread=self.first_spread)


@dataclass(frozen=True)
class BucketPolicy:
    """A burst of ``capacity`` actions, then ``rate`` per second."""

    capacity: float
    rate: float

    def start(self, clock: Callable[[], float] = time.monotonic) -> TokenBucket:
        return TokenBucket(capacity=self.capacity, rate=self.rate, clock=clock)


@dataclass(frozen=True)
class Settings:
    """The knobs; each field's comment says what it bounds."""

    #: A failing step or gate read is retried after this backoff; the cap is
    #: ``[agent] retry_max_seconds`` of the config file.
    step_retry: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(base=1.0, cap=30.0))
    #: A blocking query that lost Consul reconnects with this backoff. The first
    #: retry is spread over 2 s: every agent of a fleet sees Consul go away at
    #: the same instant and must not reconnect in the same half second.
    consul_reconnect: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(base=0.5, cap=30.0, first_spread=2.0))
    #: The status reporter retries a failed write or session renewal with this
    #: backoff, further capped to a third of the session TTL (spread: a fifth)
    #: so the session outlives a short outage.
    report_retry: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(base=0.5, cap=10.0, first_spread=2.0))
    #: Re-reads of the intent key while it churns: a burst of 10, then 1 a
    #: second (only the newest value matters).
    intent_reads: BucketPolicy = field(default_factory=lambda: BucketPolicy(capacity=10, rate=1.0))
    #: Re-reads of any other watched key (the default of a blocking watch).
    key_reads: BucketPolicy = field(default_factory=lambda: BucketPolicy(capacity=10, rate=2.0))
    #: Blocking reads of the status key a shut gate follows (one box at a
    #: time; each change is one round of re-reads): a burst, then 2 a second.
    gate_follow_reads: BucketPolicy = field(default_factory=lambda: BucketPolicy(capacity=20, rate=2.0))
    #: Re-reads of the membership while a gate is shut: its index moves with
    #: every check update of every box, so a burst, then one every 2 s.
    membership_reads: BucketPolicy = field(default_factory=lambda: BucketPolicy(capacity=10, rate=0.5))
    #: Direct reads by a gate not served from its watches' cache (a flapping
    #: intent opens and closes gates as fast as it changes): 10, then 2 a second.
    gate_direct_reads: BucketPolicy = field(default_factory=lambda: BucketPolicy(capacity=10, rate=2.0))
    #: Re-reads of the agent's own status key (how it learns its check-bound
    #: session, and the key with it, is gone): a few, then one every 5 s.
    own_key_reads: BucketPolicy = field(default_factory=lambda: BucketPolicy(capacity=5, rate=0.2))
    #: Status writes that change what other boxes' gates read (state, intent
    #: index, progress): a burst of 20, then 2 a second, newest wins.
    status_writes: BucketPolicy = field(default_factory=lambda: BucketPolicy(capacity=20, rate=2.0))
    #: Status writes that only change text (a chatty ``blocked_on``): their own
    #: smaller budget, so they never delay the writes gates wait for.
    status_chatter: BucketPolicy = field(default_factory=lambda: BucketPolicy(capacity=5, rate=0.5))


#: The defaults (frozen: safe to share).
DEFAULTS = Settings()
