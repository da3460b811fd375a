"""DESIGN.md's import rules, checked on the source: bot/domain is pure, bot/neon speaks
only HTTP, services reach the outside through protocols, handlers never touch storage or
the Neon client, and only bot/app.py knows every piece."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


def violations(folder: str, allowed: callable) -> list[str]:  # type: ignore[valid-type]
    return [f"{path.relative_to(ROOT)} imports {name}" for path in files(folder)
            for name in sorted(imports_of(path)) if not allowed(name)]


def test_domain_uses_the_standard_library_only():
    assert violations("bot/domain", lambda n: top(n) in STDLIB or
                      n.startswith("bot.domain")) == []


def test_neon_client_uses_httpx_tenacity_and_the_standard_library():
    assert violations("bot/neon", lambda n: top(n) in STDLIB | {"httpx", "tenacity", "pydantic"} or
                      n.startswith("bot.neon")) == []


def test_services_reach_the_outside_only_through_protocols():
    # Types and errors of bot.neon are the protocols' vocabulary; the client itself is not.
    # psycopg: verifying a restored branch means querying it, which is that service's work.
    allowed_neon = {"bot.neon.models", "bot.neon.errors"}
    assert violations("bot/services", lambda n: top(n) in STDLIB | {"psycopg"} or
                      n.startswith(("bot.domain", "bot.services")) or n in allowed_neon) == []


def test_handlers_never_touch_storage_or_the_neon_client():
    assert violations("handlers", lambda n: not n.startswith(("storage", "bot.neon"))) == []


@pytest.mark.parametrize("piece", ["storage", "handlers", "bot.neon.client"])
def test_only_the_composition_root_wires_the_pieces(piece):
    def uses(name: str) -> bool:
        if piece == "bot.neon.client":  # the client itself; its types are shared vocabulary
            return name in ("bot.neon", "bot.neon.client")
        return name == piece or name.startswith(piece + ".")

    outside = [f for f in files("bot") if f.name != "app.py"
               and not f.is_relative_to(ROOT / "bot" / "neon")]
    users = [str(f.relative_to(ROOT)) for f in outside if any(map(uses, imports_of(f)))]
    assert users == []
