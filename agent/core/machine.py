"""The box's state machine: the legal moves between the four states. No I/O.

    active ──enter──▶ entering ──entered──▶ maintenance
      ▲                 │  ▲                    │
      │               exit enter               exit
      │                 ▼  │                    ▼
      └──exited──── exiting ◀────────────────────┘

``entering ⇄ exiting`` is the operator changing their mind midway. The
reconciler fires the triggers; an illegal trigger raises ``MachineError``
(a bug, never an operator mistake). ``on_change(source, dest)`` runs after
every change so the caller can publish status and metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from transitions import EventData, Machine, MachineError

from agent.core.model import Mode, State

__all__ = ["BoxMachine", "MachineError", "trigger_towards"]

TRANSITIONS: list[dict[str, str | list[str]]] = [
    {"trigger": "enter", "source": [State.ACTIVE.value, State.EXITING.value], "dest": State.ENTERING.value},
    {"trigger": "entered", "source": State.ENTERING.value, "dest": State.MAINTENANCE.value},
    {"trigger": "exit", "source": [State.MAINTENANCE.value, State.ENTERING.value], "dest": State.EXITING.value},
    {"trigger": "exited", "source": State.EXITING.value, "dest": State.ACTIVE.value},
]


class BoxMachine:
    """A ``transitions`` machine over the four states, with a typed accessor."""

    def __init__(self, initial: State = State.ACTIVE, on_change: Callable[[State, State], None] | None = None):
        self._on_change = on_change
        self._machine = Machine(
            model=self,
            states=[s.value for s in State],
            transitions=TRANSITIONS,
            initial=initial.value,
            auto_transitions=False,
            after_state_change="_after_change",
            send_event=True,
        )

    state: str  # set by transitions

    @property
    def current(self) -> State:
        return State(self.state)

    def fire(self, trigger: str) -> None:
        getattr(self, trigger)()

    def _after_change(self, event: EventData) -> None:
        if self._on_change is not None and event.transition is not None:
            self._on_change(State(event.transition.source), State(event.transition.dest))


def trigger_towards(current: State, target: Mode) -> str | None:
    """The trigger that starts moving ``current`` towards ``target``, or None if already moving or there."""
    if target is Mode.MAINTENANCE and current in (State.ACTIVE, State.EXITING):
        return "enter"
    if target is Mode.ACTIVE and current in (State.MAINTENANCE, State.ENTERING):
        return "exit"
    return None
