"""The house rule on size holds: no module of agent/ over 400 lines, no class over 250."""

from __future__ import annotations

import ast

from demo.harness.processes import PROJECT


def test_no_module_over_400_lines_and_no_class_over_250() -> None:
    too_long = []
    modules = sorted((PROJECT / "agent").rglob("*.py"))
    assert len(modules) > 30
    for path in modules:
        text = path.read_text()
        name = path.relative_to(PROJECT)
        if len(text.splitlines()) > 400:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > 250:
                too_long.append(f"{name}: class {node.name} has {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []
