"""Health report, alerts, scheduled backups, pruning and approval reminders, end to end:
the real bot (`python -m bot`) and its command line (`python -m bot run-job <name>`, the
scheduler's jobs run once, now) against the fake Slack and the fake Neon.

Ages are made by moving `created_at` / `finished_at` of real records in the bot's store
(the store's own update methods); the fake Neon is driven through its attributes
(`history_retention_seconds`, `branch_limit`), its API (extra branches, protection) and,
for the storage quota it does not model, by adding `settings.quota.logical_size_bytes`
to its project answer."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.domain.audit import AuditEvent
from bot.domain.backups import Backup, BackupStatus, backup_branch_name
from bot.domain.drills import DrillState
from storage import SqlStore
from tests.e2e.conftest import ALICE, BOB, CAROL, OPS_CHANNEL
from tests.support.bot_process import (
    ALERTS_CHANNEL,
    APPROVALS_CHANNEL,
    audit_entries,
    run_bot_command,
)
from tests.support.fake_neon import FakeNeon
from tests.support.fake_slack import FakeSlack
from tests.support.restore_steps import ask, card, write
from tests.support.slack_driver import SlackDriver
from tests.support.waits import first_with_text, wait_for_response

NEVER = "0 0 29 2 *"  # 29 February: the bot's own scheduler stays out of the way
DBA_GROUP = "S0DBAS"
TITLES = ("Restore window", "Branches", "Newest backup", "Last restore drill", "Storage",
          "Requests")
CHECK_LINE = re.compile(r"\*(?P<title>[^*]+)\* · (?P<level>OK|WARN|FAIL)\n(?P<value>.+?) · "
                        r"_threshold: (?P<threshold>[^_]+)_")


@pytest.fixture
def bot_env(bot_env: dict[str, str], slack: FakeSlack) -> dict[str, str]:
    slack.set_usergroup(DBA_GROUP, [CAROL], handle="dbas")
    return {**bot_env, "APPROVERS": f"{BOB},{DBA_GROUP}", "APPROVAL_REMINDER_AFTER": "1s",
            "DRILL_TARGET_AGE": "2s", "RETENTION_DAILY": "2", "RETENTION_WEEKLY": "0",
            "RETENTION_MONTHLY": "0", "BACKUP_SCHEDULE": NEVER, "PRUNE_SCHEDULE": NEVER,
            "HEALTH_SCHEDULE": NEVER}


@pytest.fixture
def store(bot_env: dict[str, str]) -> Iterator[SqlStore]:
    """The bot's own store, opened beside it (as an operator with database access)."""
    opened = SqlStore(bot_env["DATABASE_URL"], migrate=False)
    yield opened
    opened.close()


# --- helpers ---------------------------------------------------------------------------


def run_job(env: dict[str, str], name: str) -> subprocess.CompletedProcess[str]:
    return run_bot_command(["run-job", name], env, timeout=180)


def health_report(driver: SlackDriver, slack: FakeSlack) -> tuple[dict, dict[str, dict]]:
    """`/backup health`: the answer, and each check's level, value and threshold."""
    url = slack.new_response_url()
    ack = driver.command("/backup", "health", user_id=BOB, response_url=url)
    assert ack.status_code == 200
    answer = wait_for_response(slack, url, "Health report", timeout=30)
    assert answer["response_type"] == "ephemeral"
    checks = {}
    for block in answer["blocks"]:
        match = CHECK_LINE.search(block.get("text", {}).get("text", ""))
        if match:
            checks[match["title"]] = match.groupdict()
    assert sorted(checks) == sorted(TITLES), answer
    return answer, checks


def levels(checks: dict[str, dict]) -> dict[str, str]:
    return {title: check["level"] for title, check in checks.items()}


def next_second() -> None:
    """Backup names are per second (backup-YYYYMMDD-HHMMSS), and a second /backup now in the
    same second is refused as a twin: start the next one in a new second."""
    time.sleep(1.01 - time.time() % 1)


def take_backup(driver: SlackDriver, store: SqlStore, count_before: int) -> Backup:
    next_second()
    driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL)
    def ready() -> list[Backup]:
        found = store.backups.list((BackupStatus.READY,))
        return found if len(found) > count_before else []
    slack_wait(ready)
    return store.backups.list((BackupStatus.READY,))[0]


def slack_wait(predicate: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def set_age(store: SqlStore, backup: Backup, age: timedelta) -> None:
    stored = store.backups.get(backup.id)
    assert stored is not None
    assert store.backups.save(replace(stored, created_at=datetime.now(UTC) - age),
                              stored.version) is not None


def api(neon: FakeNeon, method: str, path: str, body: dict | None = None) -> dict:
    """A call to the (fake) Neon API as another tool would make it; 423 is waited out."""
    for _ in range(100):
        response = httpx.request(method, f"{neon.url}/projects/{neon.project_id}{path}",
                                 json=body, headers={"Authorization": f"Bearer {neon.api_key}"})
        if response.status_code != 423:
            break
        time.sleep(0.1)
    response.raise_for_status()
    return response.json() if response.content else {}


def with_storage_quota(neon: FakeNeon, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The fake Neon does not model quotas: add `settings.quota.logical_size_bytes` (Neon's
    per-branch logical size quota) to its project answer; the test sets the value."""
    quota = {"bytes": 0}
    original = neon._get_project

    def get_project(call: Any) -> tuple[int, dict]:
        status, body = original(call)
        if quota["bytes"]:
            body["project"]["settings"]["quota"]["logical_size_bytes"] = quota["bytes"]
        return status, body

    monkeypatch.setattr(neon, "_get_project", get_project)
    return quota


def percent(value: str) -> float:
    match = re.search(r"\(([0-9.]+) %\)", value)
    assert match, value
    return float(match.group(1))


def largest_branch(neon: FakeNeon) -> int:
    return max(b["logical_size"] for b in neon.branches())


def alerts_posted(slack: FakeSlack, words: str = "") -> list[dict]:
    return [m for m in slack.messages(ALERTS_CHANNEL)
            if (m["text"].startswith(("Health alert:", "Health:", ":rotating_light:")))
            and words in m["text"]]


def digests(slack: FakeSlack) -> list[dict]:
    return [m for m in slack.messages(ALERTS_CHANNEL)
            if m["text"].startswith("Daily health report:")]


def run_drill(driver: SlackDriver, slack: FakeSlack, neon: FakeNeon) -> None:
    write(neon, "main", "one", "two")
    neon.checkpoint()
    time.sleep(2.5)
    ack = driver.command("/drill", "start", user_id=ALICE, channel_id=OPS_CHANNEL)
    drill_id = re.search(r"Drill `([0-9a-f]{8})` started", ack.json()["text"]).group(1)
    first_with_text(slack, lambda: [m for m in slack.messages(ALERTS_CHANNEL)
                                    if drill_id in m["text"]], "succeeded", timeout=60)


def stuck_backup(store: SqlStore) -> None:
    """A backup that stopped moving two hours ago, held by a worker that went away."""
    created = datetime.now(UTC) - timedelta(hours=2)
    backup = Backup(id=uuid.uuid4().hex, branch_name=backup_branch_name(created),
                    status=BackupStatus.CREATING, requested_by=ALICE, reason="stuck",
                    created_at=created, expires_at=created + timedelta(days=7),
                    updated_at=created, branch_id="br-gone-12345678")
    store.backups.add(backup, AuditEvent(ALICE, "backup.requested", backup.branch_name))
    assert store.backups.claim(backup.id, "a-worker-that-died", 3600)


# --- the tests ---------------------------------------------------------------------------


def test_each_health_check_at_ok_warn_and_fail(driver, neon, slack, store, monkeypatch):
    quota = with_storage_quota(neon, monkeypatch)
    run_drill(driver, slack, neon)
    backup = take_backup(driver, store, 0)

    answer, checks = health_report(driver, slack)
    assert levels(checks) == dict.fromkeys(TITLES, "OK"), answer
    assert checks["Restore window"]["value"] == "7 d"
    assert checks["Restore window"]["threshold"] == "warn under 48 h, fail at 6 h or less"
    assert checks["Branches"]["value"] == "2 of 10 branches (20 %)"
    assert checks["Branches"]["threshold"].startswith("warn over 80 %")
    assert checks["Newest backup"]["value"] in ("0 min old", "1 min old")
    assert checks["Newest backup"]["threshold"] == "warn over 26 h, fail at 3 d or more"
    assert checks["Last restore drill"]["value"] in ("0 min ago", "1 min ago")
    assert checks["Last restore drill"]["threshold"] == "warn over 90 d, fail at 180 d or more"
    # no quota set: the plan's per-branch size limit (10 GiB in the fake) is the quota
    assert "of 10 GiB (0.0 %), largest branch" in checks["Storage"]["value"]
    assert checks["Requests"]["value"] == "none failed or stuck"
    assert answer["text"].startswith("Health report: OK")

    # --- every check at WARN
    neon.history_retention_seconds = 24 * 3600
    for name in ("feature-a", "feature-b", "feature-c"):
        api(neon, "POST", "/branches", {"branch": {"name": name}})
    neon.branch_limit = 6
    set_age(store, backup, timedelta(hours=30))
    [drill] = store.drills.list((DrillState.SUCCEEDED,))
    assert store.drills.save(replace(drill, finished_at=datetime.now(UTC) - timedelta(days=100)),
                             drill.version)
    quota["bytes"] = int(largest_branch(neon) / 0.88)
    stuck_backup(store)

    answer, checks = health_report(driver, slack)
    assert levels(checks) == dict.fromkeys(TITLES, "WARN"), answer
    assert checks["Restore window"]["value"] == "24 h"
    assert checks["Branches"]["value"] == "5 of 6 branches (83.3 %)"
    assert checks["Newest backup"]["value"] == "30 h old"
    assert checks["Last restore drill"]["value"] == "100 d ago"
    assert 87 <= percent(checks["Storage"]["value"]) <= 89
    assert checks["Requests"]["value"] == "1 stuck"
    assert all(c["threshold"] for c in checks.values())

    # --- every check at FAIL
    neon.history_retention_seconds = 3600
    neon.branch_limit = 5
    set_age(store, backup, timedelta(hours=80))
    [drill] = store.drills.list((DrillState.SUCCEEDED,))
    assert store.drills.save(replace(drill, finished_at=datetime.now(UTC) - timedelta(days=200)),
                             drill.version)
    quota["bytes"] = largest_branch(neon) // 2
    next_second()
    neon.fail_next(403, method="POST", path_contains="/branches")
    driver.command("/backup", "now", user_id=ALICE, channel_id=OPS_CHANNEL)
    first_with_text(slack, lambda: alerts_posted(slack), "failed", timeout=30)

    answer, checks = health_report(driver, slack)
    assert levels(checks) == dict.fromkeys(TITLES, "FAIL"), answer
    assert checks["Restore window"]["value"] == "1 h"
    assert checks["Branches"]["value"] == "5 of 5 branches (100 %)"
    assert checks["Newest backup"]["value"] == "3 d 8 h old"
    assert checks["Last restore drill"]["value"] == "200 d ago"
    assert 199 <= percent(checks["Storage"]["value"]) <= 201
    assert checks["Requests"]["value"] == "1 failed in the last 24 h, 1 stuck"
    assert answer["text"].startswith("Health report: FAIL")
    # what to do, under every failing check; and nothing posted for anyone else
    shown = [b["text"]["text"] for b in answer["blocks"]
             if CHECK_LINE.search(b.get("text", {}).get("text", ""))]
    assert len(shown) == 6 and all(len(text.splitlines()) == 3 for text in shown)
    assert "`/backup now`" in str(shown) and "`/drill start`" in str(shown)
    assert digests(slack) == [] and alerts_posted(slack, "Health") == []


def test_alerts_go_out_once_per_change_of_state_and_the_digest_daily(
        driver, neon, slack, store, bot_env):
    take_backup(driver, store, 0)

    def run() -> str:
        result = run_job(bot_env, "health_report")
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    first = run()  # the first report: only the check that is not OK (no drill yet) alerts
    assert "1 alert(s): last_drill new→fail" in first
    [alert] = alerts_posted(slack)
    assert alert["text"].startswith("Health alert: Last restore drill is FAIL (first report)")
    assert "Threshold: warn over 90 d" in str(alert["blocks"]) and "/drill start" in str(
        alert["blocks"])
    assert "no check changed" in run()  # the same state again: nothing new
    assert len(alerts_posted(slack)) == 1

    neon.history_retention_seconds = 24 * 3600
    health_report(driver, slack)  # the report on demand neither alerts nor records
    assert len(alerts_posted(slack)) == 1
    run()
    run()
    window = alerts_posted(slack, "Restore window")
    assert [m["text"] for m in window] == [
        "Health alert: Restore window is WARN (first report): 24 h"]

    neon.history_retention_seconds = 7 * 86400
    run()
    window = alerts_posted(slack, "Restore window")
    assert window[-1]["text"] == "Health: Restore window is OK again (was WARN): 7 d"
    assert len(window) == 2 and len(alerts_posted(slack)) == 3

    # the digest: every run posts the whole report, with every check's value and threshold
    daily = digests(slack)
    assert len(daily) == 5
    assert daily[-1]["text"].startswith("Daily health report: FAIL")
    for title in TITLES:
        assert f"*{title}*" in str(daily[-1]["blocks"])
    assert str(daily[-1]["blocks"]).count("_threshold: ") == 6

    changed = [(e["subject"], e["details"]["level"], e["details"]["previous"])
               for e in audit_entries(bot_env) if e["action"] == "health.changed"]
    assert changed == [("health:last_drill", "fail", None),
                       ("health:restore_window", "warn", None),
                       ("health:restore_window", "ok", "warn")]

    # `/backup schedule` shows the scheduler's jobs and when they run next
    schedule = driver.command("/backup", "schedule", user_id=BOB).json()
    text = str(schedule["blocks"])
    assert schedule["response_type"] == "ephemeral"
    for job in ("scheduled_backup", "prune", "health_report", "approval_reminders"):
        assert f"*{job}*" in text
    assert NEVER in text and "next" in text


def test_prune_shows_the_plan_and_deletes_only_after_a_second_person_approves(
        driver, neon, slack, store, bot_env):
    taken: list[Backup] = []
    for _ in range(5):
        taken.append(take_backup(driver, store, len(taken)))
        time.sleep(1.05)  # one backup per second: names are stamped to the second
    newest_first = sorted(taken, key=lambda b: b.branch_name, reverse=True)
    for backup, days in zip(newest_first, (0, 1, 3, 4, 5), strict=True):
        set_age(store, backup, timedelta(days=days, minutes=1))
    today, yesterday, old3, old4, old5 = newest_first
    api(neon, "PATCH", f"/branches/{old5.branch_id}", {"branch": {"protected": True}})
    api(neon, "POST", "/branches", {"branch": {"name": "backup-20200101-000000"}})

    def show() -> tuple[dict, str]:
        url = slack.new_response_url()
        driver.command("/backup", "prune", user_id=BOB, channel_id=OPS_CHANNEL,
                       response_url=url)
        plan = slack.wait_for(lambda: slack.responses(url), timeout=30)[0]
        assert plan["response_type"] == "ephemeral"
        [confirm] = [e for b in plan["blocks"] if b["type"] == "actions"
                     for e in b["elements"] if e["action_id"] == "backup.prune.confirm"]
        return plan, confirm["value"]

    def click(action: str, plan_hash: str, plan: dict, words: str) -> dict:
        url = slack.new_response_url()
        assert driver.click(action, plan_hash, user_id=BOB, channel_id=OPS_CHANNEL,
                            response_url=url, message=plan).status_code == 200
        return wait_for_response(slack, url, words, timeout=60)

    def deletes() -> list[str]:
        return [r.path for r in neon.mutations() if r.method == "DELETE"]

    plan, plan_hash = show()
    text = plan["text"] + str(plan["blocks"])
    assert plan["text"] == "Pruning would delete 2 backup(s) and keep 4."
    assert "7 daily" not in text and "2 daily, 0 weekly, 0 monthly" in text
    would_delete = text.split("Would delete")[1].split("Keeps")[0]
    assert old3.branch_name in would_delete and old4.branch_name in would_delete
    assert today.branch_name not in would_delete and old5.branch_name not in would_delete
    assert re.search(rf"{today.branch_name}` · .*?_daily \d{{4}}-\d\d-\d\d_", text)
    assert re.search(rf"{old5.branch_name}` · .*?_protected_", text)
    assert re.search(r"backup-20200101-000000` · .*?_not a Lifeguard backup_", text)
    assert "Ask a second person to delete 2 backups" in str(plan["blocks"])
    assert deletes() == []  # nothing before a confirmation

    assert "Nothing was deleted" in click("backup.prune.cancel", plan_hash, plan,
                                          "Nothing")["text"]
    assert deletes() == []

    # a plan that changed since it was shown is refused
    plan, plan_hash = show()
    newer = take_backup(driver, store, 5)  # today's newest now; `today` becomes deletable
    refused = click("backup.prune.confirm", plan_hash, plan, "changed since")
    assert "nothing was asked for" in refused["text"]
    assert deletes() == []

    plan, plan_hash = show()
    assert plan["text"] == "Pruning would delete 3 backup(s) and keep 4."
    asked = click("backup.prune.confirm", plan_hash, plan, "waiting for approval")
    request_id = re.search(r"Request `([0-9a-f]{8})`", asked["text"]).group(1)
    assert "3 backup(s) the retention policy no longer keeps" in card(slack, request_id)["text"]
    assert deletes() == []  # nothing before a second person approves
    own = slack.new_response_url()
    driver.click("request.approve", request_id, user_id=BOB, channel_id=APPROVALS_CHANNEL,
                 response_url=own)
    assert "two-person rule" in wait_for_response(slack, own, "cannot approve")["text"]
    assert deletes() == []
    driver.click("request.approve", request_id, user_id=CAROL, channel_id=APPROVALS_CHANNEL)
    assert "3 backup(s) were deleted" in card(slack, request_id, "done (approved by",
                                              timeout=60)["text"]
    remaining = {b["name"] for b in neon.branches()}
    assert remaining == {"main", newer.branch_name, yesterday.branch_name, old5.branch_name,
                         "backup-20200101-000000"}
    assert [b.branch_name for b in store.backups.list((BackupStatus.DELETED,))] == [
        today.branch_name, old3.branch_name, old4.branch_name]
    entries = audit_entries(bot_env)
    assert sorted(e["subject"] for e in entries if e["action"] == "backup.deleted") == sorted(
        [today.branch_name, old3.branch_name, old4.branch_name])
    assert {e["actor"] for e in entries if e["action"] == "backup.deleted"} == {BOB}
    assert [e["action"] for e in entries if e["subject"] == "prune"] == [
        "prune.planned", "prune.cancelled", "prune.planned", "prune.refused", "prune.planned"]
    assert ("request.approved", CAROL) in [(e["action"], e["actor"]) for e in entries
                                           if e["subject"] == request_id]


def test_the_scheduled_prune_keeps_what_the_policy_keeps(driver, neon, slack, store, bot_env):
    taken = []
    for _ in range(3):
        taken.append(take_backup(driver, store, len(taken)))
        time.sleep(1.05)
    for backup, days in zip(sorted(taken, key=lambda b: b.branch_name, reverse=True),
                            (0, 1, 2), strict=True):
        set_age(store, backup, timedelta(days=days, minutes=1))
    result = run_job(bot_env, "prune")
    assert result.returncode == 0 and "deleted 1, kept 2" in result.stdout, result.stdout
    oldest = min(taken, key=lambda b: b.branch_name)
    assert neon.branch_by_name(oldest.branch_name) is None
    assert len([b for b in neon.branches() if b["name"].startswith("backup-")]) == 2
    entries = audit_entries(bot_env)
    assert [(e["action"], e["actor"]) for e in entries if e["subject"] == "prune"] == [
        ("prune.started", "scheduler"), ("prune.finished", "scheduler")]
    assert alerts_posted(slack) == []


def test_a_failed_scheduled_backup_and_a_failing_job_post_to_the_alerts_channel(
        neon, slack, bot_env):
    neon.fail_next(403, method="POST", path_contains="/branches")
    result = run_job(bot_env, "scheduled_backup")
    assert result.returncode == 1 and "FAILED" in result.stdout
    [alert] = alerts_posted(slack)
    text = alert["text"] + str(alert["blocks"])
    assert re.search(r"Backup `backup-\d{8}-\d{6}` failed", alert["text"])
    assert "What failed:* The Neon API key may not do this" in text
    assert "What was tried:* Creating the backup branch" in text and "the schedule" in text
    assert "What to do next:* Take a backup by hand with `/backup now`" in text
    assert [b for b in neon.branches() if b["name"].startswith("backup-")] == []

    neon.fail_next(403, method="GET", path_contains="/branches")
    result = run_job(bot_env, "prune")
    assert result.returncode == 1
    failed_job = alerts_posted(slack, "The scheduled prune job failed")
    assert len(failed_job) == 1 and "/backup prune" in str(failed_job[0]["blocks"])

    result = run_job(bot_env, "scheduled_backup")  # and a good one: quiet
    assert result.returncode == 0 and "is ready" in result.stdout, result.stdout
    assert len(alerts_posted(slack)) == 2
    [branch] = [b for b in neon.branches() if b["name"].startswith("backup-")]
    requested = [e for e in audit_entries(bot_env) if e["action"] == "backup.requested"]
    assert [(e["actor"], e["details"]["reason"]) for e in requested] == [
        ("scheduler", "scheduled daily backup")] * 2
    assert requested[-1]["subject"] == branch["name"]


def test_an_approval_reminder_mentions_the_approvers_once(driver, neon, slack, bot_env):
    request_id = ask(driver, slack, "5 minutes ago oops", ALICE)
    pending = card(slack, request_id, "waiting for approval")
    time.sleep(1.2)
    for _ in range(2):
        result = run_job(bot_env, "approval_reminders")
        assert result.returncode == 0, result.stdout + result.stderr

    reminders = [m for m in slack.messages(APPROVALS_CHANNEL) if "has waited" in m["text"]]
    assert len(reminders) == 1
    [reminder] = reminders
    assert reminder["thread_ts"] == pending["ts"]  # in the card's thread
    assert f"<@{BOB}>" in reminder["text"] and f"<!subteam^{DBA_GROUP}>" in reminder["text"]
    assert request_id in reminder["text"] and f"<@{ALICE}>" in reminder["text"]
    reminded = [e for e in audit_entries(bot_env) if e["action"] == "request.reminded"]
    assert [e["subject"] for e in reminded] == [request_id]
    assert neon.mutations() == []  # a reminder changes nothing else
