"""The help and usage texts read in Slack exactly as Lifeguard means them: their
placeholders (`<branch>`, `<when>`, `<id>`, …) and `<=` are written as Slack's entities
(`&lt;branch&gt;`), so that Slack shows them instead of reading them as markup, and once
Slack decodes the entities the reader sees the same words as always, `<branch>` included."""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path

import pytest

from bot.domain.backups import BACKUP_USAGE
from bot.domain.drills import DRILL_USAGE
from bot.domain.export_commands import EXPORT_USAGE
from bot.domain.incidents import INCIDENT_USAGE
from bot.domain.restores import RESTORE_USAGE
from bot.domain.table_restores import TABLE_USAGE
from bot.domain.text import escape
from bot.domain.when import WHEN_FORMATS
from handlers import blocks, drill_blocks, incident_blocks, restore_blocks
from tests.support.mrkdwn import assert_markup_is_lifeguards, mrkdwn_texts

# What a reader sees, word for word. The export lines and the <when> formats are other
# texts' own (tested with them); they are part of these helps as they read.
BACKUP_SHOWN = "\n".join([
    "`/backup now [reason]` take a backup branch of the default branch now",
    "`/backup list` backups with age, size, expiry and reason",
    "`/backup delete <branch>` delete a backup branch Lifeguard took (asks to confirm)",
    "`/backup verify <branch>` connect to a backup, count its tables' rows and compare them "
    "with production",
    "`/backup health` the health report: restore window, branches, backups, drills, storage",
    "`/backup prune` what the retention policy would delete (asks to confirm)",
    "`/backup schedule` when scheduled backups, pruning and reports run",
    html.unescape(EXPORT_USAGE),
    "`/backup help` this help",
])
TABLE_SHOWN = (
    "`/restore table <table> from <branch>|at <when> [--merge|--replace] [--rows <condition>] "
    "[reason]` one table back into the live branch: by default into a new table "
    "`<table>_restored_YYYYMMDD_HHMMSS` beside the live one; `--merge` adds only the rows "
    "whose primary key the live table lacks; `--replace` replaces the live table's rows "
    "(both take a backup of the live branch first); `--rows \"id <= 5\"` copies only the "
    "rows matching an SQL condition (in double quotes or backticks). Quote names as in SQL: "
    "`\"my schema\".\"Orders\"`"
)
RESTORE_SHOWN = "\n".join([
    "`/restore <when> [reason]` a point-in-time restore branch of the default branch at "
    "that moment, such as `/restore 14:25 bad deploy` or `/restore 30 minutes ago`",
    "`/restore from <branch> [reason]` a restore branch from a backup branch "
    "(`/backup list` shows them)",
    TABLE_SHOWN,
    "`/restore promote <branch> [reason]` make a verified restore branch the live one, "
    "keeping the old state as a pre-restore-… branch",
    "`/restore export <id> [reason]` a restore branch holding exactly what that export off "
    "Neon holds (`/backup exports` lists their ids; needs EXPORT_IDENTITY)",
    "`/restore status [id]` where a request is (without an id: the open ones)",
    "`/restore cancel <id>` withdraw a request you made that is still waiting for approval",
    "`/restore log [id]` the audit trail of a request (without an id: the latest requests)",
    "`/restore help` this help",
    "`/restore` alone opens a form.",
    f"`<when>` is {html.unescape(WHEN_FORMATS)}.",
])
INCIDENT_SHOWN = "\n".join([
    "`/incident open <title>` opens a channel `inc-YYYYMMDD-<title>` for a data incident, "
    "invites the responders, pins a status card and bookmarks the runbook and the Neon "
    "project",
    "`/incident note <text>` adds a line to the timeline (in the incident's channel)",
    "`/incident status investigating|identified|monitoring|resolved` updates the status "
    "card and the topic",
    "`/incident timeline` posts the whole timeline as Markdown",
    "`/incident close [summary]` posts the summary and the timeline, then archives the "
    "channel (a bot cannot unarchive: a later incident gets a new channel)",
    "`/incident help` this help",
    "A `/restore`, `/backup` or `/drill` typed in an incident's channel is linked to it, "
    "and each of its steps appears in the channel as it happens; so do the steps of the "
    "request whose *Open incident* button was clicked.",
])
DRILL_SHOWN = "\n".join([
    "`/drill start` rehearse a restore now: a branch of the default branch as it was a "
    "while ago (DRILL_TARGET_AGE), verified against production, timed (RTO), its data-loss "
    "window measured (RPO), then deleted; the report goes to the alerts channel",
    "`/drill status` the drill running now, or the last one",
    "`/drill history` the latest drills with their RTO and RPO",
    "`/drill help` this help",
])

USAGES = [
    pytest.param(BACKUP_USAGE, BACKUP_SHOWN, id="backup"),
    pytest.param(RESTORE_USAGE, RESTORE_SHOWN, id="restore"),
    pytest.param(TABLE_USAGE, TABLE_SHOWN, id="restore-table"),
    pytest.param(INCIDENT_USAGE, INCIDENT_SHOWN, id="incident"),
    pytest.param(DRILL_USAGE, DRILL_SHOWN, id="drill"),
]


@pytest.mark.parametrize(("usage", "shown"), USAGES)
def test_a_usage_reads_word_for_word_as_before_once_slack_decodes_its_entities(usage, shown):
    assert html.unescape(usage) == shown


@pytest.mark.parametrize(("usage", "shown"), USAGES)
def test_a_usage_is_written_by_slacks_rule_escaped_once(usage, shown):
    """Every `<`, `>` and `&` the reader sees is an entity, none is markup, and no entity is
    escaped again (`&amp;lt;` would show as "&lt;")."""
    assert usage == escape(shown)
    assert_markup_is_lifeguards({"text": usage})


def test_the_placeholders_are_entities_in_what_slack_is_sent():
    assert "`/backup delete &lt;branch&gt;`" in BACKUP_USAGE
    assert "`/restore cancel &lt;id&gt;`" in RESTORE_USAGE
    assert "`&lt;when&gt;` is " in RESTORE_USAGE
    assert '`--rows "id &lt;= 5"`' in TABLE_USAGE
    assert "`/incident open &lt;title&gt;`" in INCIDENT_USAGE
    for usage in (BACKUP_USAGE, RESTORE_USAGE, TABLE_USAGE, INCIDENT_USAGE):
        assert "<" not in usage and ">" not in usage


@pytest.mark.parametrize(("message", "title", "shown"), [
    pytest.param(blocks.backup_help(), "Backups", BACKUP_SHOWN, id="backup"),
    pytest.param(restore_blocks.restore_help(), "Restores", RESTORE_SHOWN, id="restore"),
    pytest.param(incident_blocks.incident_help(), "Incidents", INCIDENT_SHOWN, id="incident"),
    pytest.param(drill_blocks.drill_help(), "Restore drills", DRILL_SHOWN, id="drill"),
])
def test_each_help_answer_reads_as_its_usage(message, title, shown):
    texts = mrkdwn_texts(message)  # the notification's text and the section's
    assert texts and all(html.unescape(text) == f"*{title}*\n{shown}" for text in texts)
    assert_markup_is_lifeguards(message)


# --- no raw placeholder left in the code -----------------------------------------------------

_PLACEHOLDER = re.compile(r"<[a-z][a-z0-9 _-]*>|<=|>=")
# Texts that are not mrkdwn where they are written: an export error's message is plain
# text, escaped where it meets mrkdwn (bot/services/export_steps.py's StepFailed).
_PLAIN_TEXTS = {("bot/domain/export_manifest.py", " is not '<sha256>  <file name>'")}


def _raw_placeholders(path: Path) -> list[tuple[int, str]]:
    """String constants in `path` with a placeholder or `<=` not passed through `escape`:
    docstrings, regular expressions and format specs are not texts."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
        calls_escape = (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "escape")
        regex = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and isinstance(node.func.value, ast.Name) and node.func.value.id == "re")
        spec = isinstance(node, ast.FormattedValue) and node.format_spec is not None
        if calls_escape or regex or spec:
            inside = node.format_spec if spec else node
            skipped.update(id(n) for n in ast.walk(inside) if isinstance(n, ast.Constant))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skipped and _PLACEHOLDER.search(node.value)
            and "SELECT" not in node.value and "(?P<" not in node.value]


def test_no_text_for_slack_writes_a_placeholder_raw():
    """Texts Lifeguard writes into mrkdwn escape their literal `<branch>` where they are
    written; the command line's texts (bot/__main__.py) are not mrkdwn and are not read."""
    root = Path(__file__).resolve().parents[1]
    found = [(str(path.relative_to(root)), line, text)
             for folder in ("bot/domain", "bot/services", "handlers")
             for path in sorted((root / folder).rglob("*.py"))
             for line, text in _raw_placeholders(path)
             if (str(path.relative_to(root)), text) not in _PLAIN_TEXTS]
    assert found == []


def test_the_raw_placeholder_finder_finds_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('USAGE = "`/backup delete <branch>`"\n'
                      'SAFE = escape("`/backup delete <branch>`")\n'
                      'ZONE = re.compile(r"(?P<sign>[+-])")\n'
                      'ROW = f"{name:<12}"\n')
    assert _raw_placeholders(sample) == [(1, "`/backup delete <branch>`")]
