"""Capped exponential backoff with jitter, and a token bucket.

Used wherever the agent retries (Consul reads, failing steps) so a fleet of
agents neither hammers a sick Consul nor retries in lockstep.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


class Backoff:
    """``next()`` returns base·2^n seconds, capped, scaled by a random factor in [0.5, 1].

    ``first_spread`` adds a uniformly random [0, first_spread) seconds to the
    first delay of a run of failures: when Consul goes away, every agent of the
    fleet sees it at the same instant, and without this spread hundreds of
    them would retry (and reconnect) in the same half second.
    """

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None, first_spread: float = 0.0):
        self.base = base
        self.cap = cap
        self.first_spread = first_spread
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = min(self.cap, self.base * (2 ** min(self.failures, 30)))
        spread = self._rng.uniform(0.0, self.first_spread) if self.failures == 0 and self.first_spread > 0 else 0.0
        self.failures += 1
        jittered: float = delay * self._rng.uniform(0.5, 1.0) + spread
        return jittered

    def reset(self) -> None:
        self.failures = 0


class TokenBucket:
    """Allows a burst of ``capacity`` actions, then ``rate`` per second.

    ``delay()`` says how long to wait before the next action is allowed and
    takes the token; the watcher sleeps that long before re-querying a key
    that keeps changing, so a flapping key cannot hammer Consul.
    """

    def __init__(self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic):
        self.capacity = capacity
        self.rate = rate
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()
        self._lock = threading.Lock()  # one bucket may be shared by several watchers

    def delay(self) -> float:
        with self._lock:
            return self._take()

    def try_take(self) -> float:
        """Take a token if one is there (returns 0); else how long until one is, taking nothing.

        For the decision thread, which must never sleep on a budget (it would
        starve the watchdog) and must not run up a debt either.
        """
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate

    def _take(self) -> float:
        self._refill()
        wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
        self._tokens -= 1
        return wait

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
