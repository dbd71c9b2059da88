"""The edge step against a real HAProxy running the shipped configuration.

Each test starts its own HAProxy (foreground, admin socket in a temp dir, free
loopback port) in front of an in-process backend, drives EdgeTrafficStep with
an Intent and looks at what an HTTP client gets.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.clients.haproxy import HAProxyRuntime
from agent.core.errors import StepError
from agent.core.model import Intent, Mode
from agent.daemon.local.statefile import StateFile
from agent.daemon.steps.base import StepContext
from agent.daemon.steps.haproxy import EdgeTrafficStep
from demo.harness.haproxy import (
    BACKEND_MARKER,
    PAGE_MARKER,
    HAProxyUnderTest,
    LoopbackBackend,
    edge_section,
    http_get,
)
from tests.fixtures.edge import backend, hap  # noqa: F401 - pytest fixtures

MESSAGE = 'Database upgrade <SQL-A> & "SQL-B", 100% %[src] \\o/ \u00e9t\u00e9'  # must come out verbatim


def context(tmp_path: Path, intent: Intent) -> StepContext:
    return StepContext(intent=intent, node="edge-1", memory=StateFile(tmp_path / "state.json"))


def maintenance(minutes: float | None = 30, message: str = MESSAGE) -> Intent:
    ends = datetime.now(UTC) + timedelta(minutes=minutes) if minutes is not None else None
    return Intent(mode=Mode.MAINTENANCE, index=42, reason="db upgrade", message=message, ends_at=ends)


def test_flip_changes_what_clients_get_and_back(tmp_path: Path, hap: HAProxyUnderTest) -> None:
    step = EdgeTrafficStep(edge_section(hap))
    intent = maintenance(minutes=30)
    ctx = context(tmp_path, intent)
    assert step.check(ctx, Mode.ACTIVE) is True  # the shipped map (state off) is the normal side
    assert step.check(ctx, Mode.MAINTENANCE) is False

    step.apply(ctx)
    assert step.check(ctx, Mode.MAINTENANCE) is True
    assert step.check(ctx, Mode.ACTIVE) is False

    api = http_get(hap.url("/api/payments"))
    assert api.status == 503 and api.headers["content-type"] == "application/json"
    doc = json.loads(api.body)
    assert doc["status"] == "maintenance" and doc["message"] == MESSAGE and doc["reason"] == "db upgrade"
    assert doc["ends_at"] == intent.ends_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert 1790 <= int(api.headers["retry-after"]) <= 1800 and doc["retry_after"] == int(api.headers["retry-after"])

    ui = http_get(hap.url("/dashboard"))
    assert ui.status == 503 and ui.headers["content-type"].startswith("text/html")
    assert PAGE_MARKER in ui.body and html.escape(MESSAGE, quote=False) in ui.body
    assert intent.ends_at.strftime("%Y-%m-%d %H:%M UTC") in ui.body
    assert 1790 <= int(ui.headers["retry-after"]) <= 1800

    wants_json = http_get(hap.url("/admin/users"), headers={"Accept": "application/json"})
    assert wants_json.status == 503 and json.loads(wants_json.body)["message"] == MESSAGE

    assert http_get(hap.url("/api/payments"), source="127.0.0.5").body.startswith(BACKEND_MARKER)
    bypassed = http_get(hap.url("/api/payments"), headers={"X-Maintenance-Bypass": "staff-bypass-secret"})
    assert bypassed.status == 200 and "bypass_header_seen=False" in bypassed.body  # the secret stops at the edge
    assert http_get(hap.url("/"), headers={"Cookie": "maint_bypass=staff-bypass-secret"}).status == 200
    assert http_get(hap.url("/"), headers={"Cookie": "maint_bypass=wrong"}).status == 503
    assert http_get(hap.url("/haproxy-health")).status == 200

    step.revert(ctx)
    assert step.check(ctx, Mode.ACTIVE) is True
    for path in ("/api/payments", "/dashboard", "/admin/users"):
        answer = http_get(hap.url(path))
        assert answer.status == 200 and answer.body.startswith(BACKEND_MARKER), path
    assert ctx.notes(step)["mode"] == "active"


@pytest.mark.parametrize(
    "message",
    ["Back soon \U0001f527", "\U0001f527\U0001f680 \U00010348 mixed \u00e9 \u4e2d \"q\" \\ </script>", "\U0001f600" * 3],
    ids=["wrench", "mixed-astral", "only-emoji"],
)
def test_characters_above_u_ffff_reach_both_answers(tmp_path: Path, hap: HAProxyUnderTest, message: str) -> None:
    step = EdgeTrafficStep(edge_section(hap))
    step.apply(context(tmp_path, Intent(mode=Mode.MAINTENANCE, index=5, reason=f"fix \U0001f527 {message}", message=message)))
    doc = json.loads(http_get(hap.url("/api/x")).body)
    assert doc["message"] == message and doc["reason"] == f"fix \U0001f527 {message}"
    assert html.escape(message, quote=False) in http_get(hap.url("/")).body


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ("maint_bypass=staff-bypass-secret", ""),
        ("session=abc; maint_bypass=staff-bypass-secret", "session=abc"),
        ("maint_bypass=staff-bypass-secret; session=abc", "session=abc"),
        ("a=1; maint_bypass=staff-bypass-secret; b=2", "a=1; b=2"),
        ("a=1;maint_bypass=staff-bypass-secret;b=2", "a=1;b=2"),
        ("maint_bypass=staff-bypass-secret; a=1; maint_bypass=wrong", "a=1"),
        ("xmaint_bypass=keep; maint_bypass_hint=keep2", "xmaint_bypass=keep; maint_bypass_hint=keep2"),
        ("session=abc", "session=abc"),
    ],
    ids=["alone", "last", "first", "middle", "no-spaces", "twice", "look-alikes", "none"],
)
@pytest.mark.parametrize("window", [True, False], ids=["in-window", "outside"])
def test_bypass_cookie_never_reaches_the_backend(tmp_path: Path, hap: HAProxyUnderTest, sent: str, forwarded: str, window: bool) -> None:
    if window:
        EdgeTrafficStep(edge_section(hap)).apply(context(tmp_path, maintenance()))
    answer = http_get(hap.url("/dashboard"), source="127.0.0.5", headers={"Cookie": sent})
    assert answer.status == 200 and answer.body.startswith(BACKEND_MARKER)
    assert f"cookie={forwarded}\n" in answer.body and "staff-bypass-secret" not in answer.body


def test_bypass_by_cookie_works_and_the_secret_stays_at_the_edge(tmp_path: Path, hap: HAProxyUnderTest) -> None:
    EdgeTrafficStep(edge_section(hap)).apply(context(tmp_path, maintenance()))
    answer = http_get(hap.url("/api/x"), headers={"Cookie": "lang=de; maint_bypass=staff-bypass-secret"})
    assert answer.status == 200 and "cookie=lang=de\n" in answer.body and "staff-bypass-secret" not in answer.body
    many = "; ".join(["maint_bypass=staff-bypass-secret"] * 4)
    assert http_get(hap.url("/x"), source="127.0.0.5", headers={"Cookie": many}).status == 400  # refused, not forwarded


@pytest.mark.parametrize("char", ['"', "&", "\U0001f527", "<", "\\"], ids=["quote", "amp", "emoji", "lt", "backslash"])
def test_longest_worst_escaping_message_switches(tmp_path: Path, hap: HAProxyUnderTest, char: str) -> None:
    """message_max_chars at its maximum (2000) of the character that escapes worst: the switch works, both answers intact."""
    step = EdgeTrafficStep(edge_section(hap, message_max_chars=2000))
    message = char * 2000
    ctx = context(tmp_path, Intent(mode=Mode.MAINTENANCE, index=8, reason=char * 500, message=message))
    converge(step, ctx, Mode.MAINTENANCE)
    doc = json.loads(http_get(hap.url("/api/x")).body)
    assert doc["message"] == message and len(doc["reason"]) == 200
    assert html.escape(message, quote=False) in http_get(hap.url("/")).body
    hap.restart()  # the same values read back from the map file
    assert json.loads(http_get(hap.url("/api/x")).body)["message"] == message
    assert step.check(ctx, Mode.MAINTENANCE) is True
    converge(step, ctx, Mode.ACTIVE)
    assert http_get(hap.url("/api/x")).status == 200


@pytest.mark.parametrize(
    ("minutes", "retry_after"),
    [(None, 900), (-5, 60), (300, 3600)],
    ids=["no-end-default", "end-passed-min", "far-end-max"],
)
def test_retry_after_default_and_bounds(tmp_path: Path, hap: HAProxyUnderTest, minutes: float | None, retry_after: int) -> None:
    step = EdgeTrafficStep(edge_section(hap))
    step.apply(context(tmp_path, maintenance(minutes=minutes)))
    answer = http_get(hap.url("/api/x"))
    assert answer.status == 503 and int(answer.headers["retry-after"]) == retry_after
    doc = json.loads(answer.body)
    assert doc["retry_after"] == retry_after
    assert (doc["ends_at"] is None) == (minutes is None)


def test_restart_with_the_on_disk_map_keeps_maintenance(tmp_path: Path, hap: HAProxyUnderTest) -> None:
    step = EdgeTrafficStep(edge_section(hap))
    ctx = context(tmp_path, maintenance())
    step.apply(ctx)
    hap.restart()
    answer = http_get(hap.url("/api/x"))
    assert answer.status == 503 and json.loads(answer.body)["message"] == MESSAGE
    assert step.check(ctx, Mode.MAINTENANCE) is True


def test_reload_keeps_the_state_both_ways(tmp_path: Path, backend: LoopbackBackend) -> None:
    """A reload (new worker, config and map file re-read) keeps whatever the agent switched to."""
    with HAProxyUnderTest(tmp_path / "h", backend.port, master_worker=True) as hap:
        step = EdgeTrafficStep(edge_section(hap))
        ctx = context(tmp_path, maintenance())
        step.apply(ctx)
        first_worker = hap.worker_pid()
        hap.reload()
        assert hap.worker_pid() != first_worker
        assert http_get(hap.url("/api/x")).status == 503
        assert step.check(ctx, Mode.MAINTENANCE) is True
        step.revert(ctx)
        hap.reload()
        assert http_get(hap.url("/api/x")).status == 200
        assert step.check(ctx, Mode.ACTIVE) is True


def test_restart_with_an_old_map_is_drift_and_repaired(tmp_path: Path, hap: HAProxyUnderTest) -> None:
    step = EdgeTrafficStep(edge_section(hap))
    ctx = context(tmp_path, maintenance())
    step.apply(ctx)
    hap.map_file.write_text("state off\n")  # a restore from backup, a config-management run...
    hap.restart()
    assert http_get(hap.url("/api/x")).status == 200
    assert step.check(ctx, Mode.MAINTENANCE) is False
    step.apply(ctx)
    assert step.check(ctx, Mode.MAINTENANCE) is True
    assert http_get(hap.url("/api/x")).status == 503


def test_live_map_changed_behind_our_back_is_drift(tmp_path: Path, hap: HAProxyUnderTest) -> None:
    step = EdgeTrafficStep(edge_section(hap))
    ctx = context(tmp_path, maintenance())
    step.apply(ctx)
    HAProxyRuntime(hap.admin_socket).command(f"set map {hap.map_file} state off")
    assert step.check(ctx, Mode.MAINTENANCE) is False


def test_failed_verification_is_a_step_error(tmp_path: Path, hap: HAProxyUnderTest, backend: LoopbackBackend) -> None:
    """Verification pointed at a frontend that never serves the page: the step must not hold."""
    step = EdgeTrafficStep(edge_section(hap, base_url=f"http://127.0.0.1:{backend.port}"))
    ctx = context(tmp_path, maintenance())
    with pytest.raises(StepError) as err:
        step.apply(ctx)
    assert "answered 200, expected 503" in err.value.detail and "backend-ok" in err.value.detail
    assert step.check(ctx, Mode.MAINTENANCE) is False
    assert http_get(hap.url("/api/x")).status == 503  # the switch happened; only the proof is missing


def test_verification_from_an_allowlisted_frontend_view_fails(tmp_path: Path, backend: LoopbackBackend) -> None:
    """If the box's own address is allowlisted, verification sees the backend: refuse to report maintenance."""
    with HAProxyUnderTest(tmp_path / "h", backend.port, internal_cidrs=("127.0.0.0/8",)) as hap:
        step = EdgeTrafficStep(edge_section(hap))
        with pytest.raises(StepError, match="answered 200, expected 503"):
            step.apply(context(tmp_path, maintenance()))


def converge(step: EdgeTrafficStep, ctx: StepContext, target: Mode) -> None:
    """What the reconciler does with a step: check, act if it does not hold, check again."""
    if not step.check(ctx, target):
        (step.apply if target is Mode.MAINTENANCE else step.revert)(ctx)
        if not step.check(ctx, target):
            raise StepError(step.name, "did not hold after acting")


def test_haproxy_down_names_the_socket_and_the_fix(tmp_path: Path, hap: HAProxyUnderTest) -> None:
    step = EdgeTrafficStep(edge_section(hap))
    ctx = context(tmp_path, maintenance())
    hap.stop()  # HAProxy 2.6 leaves its socket file behind when it stops
    with pytest.raises(StepError) as err:
        converge(step, ctx, Mode.MAINTENANCE)
    assert f"HAProxy admin socket {hap.agent_socket} exists but nothing listens" in err.value.detail
    assert "systemctl start haproxy" in err.value.detail


@pytest.mark.parametrize("target", [Mode.MAINTENANCE, Mode.ACTIVE])
def test_map_file_is_written_while_haproxy_is_down(tmp_path: Path, hap: HAProxyUnderTest, target: Mode) -> None:
    """HAProxy down during a switch: the reconciler's attempt fails, but a HAProxy started now serves the new mode."""
    step = EdgeTrafficStep(edge_section(hap))
    ctx = context(tmp_path, maintenance())
    if target is Mode.ACTIVE:
        step.apply(ctx)
    hap.stop()
    with pytest.raises(StepError, match="nothing listens"):
        converge(step, ctx, target)
    hap.start()
    assert http_get(hap.url("/api/x")).status == (503 if target is Mode.MAINTENANCE else 200)
    assert step.check(ctx, target) is True


def test_missing_admin_socket_says_how_to_configure_it(tmp_path: Path, hap: HAProxyUnderTest) -> None:
    missing = tmp_path / "run" / "admin.sock"
    step = EdgeTrafficStep(edge_section(hap, admin_socket=str(missing)))
    with pytest.raises(StepError) as err:
        converge(step, context(tmp_path, maintenance()), Mode.MAINTENANCE)
    assert f"HAProxy admin socket {missing} is missing" in err.value.detail
    assert f"stats socket {missing} mode 660 level operator group maintenance-agent" in err.value.detail


def test_map_not_loaded_in_running_config(tmp_path: Path, hap: HAProxyUnderTest) -> None:
    step = EdgeTrafficStep(edge_section(hap, map_file=str(tmp_path / "other.map")))
    with pytest.raises(StepError) as err:
        step.apply(context(tmp_path, maintenance()))
    assert f"has no map {tmp_path / 'other.map'} loaded" in err.value.detail and "reload HAProxy" in err.value.detail
