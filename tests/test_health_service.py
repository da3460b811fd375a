"""The health, alerts, reminders and pruning services in-process: a real SQLite store,
stand-ins for Neon and Slack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.domain.audit import AuditEvent
from bot.domain.backups import Backup, BackupStatus, backup_branch_name
from bot.domain.errors import Conflict
from bot.domain.health import Check, Level
from bot.domain.requests import ChangeRequest, Plan, RequestAction, RequestState, Step
from bot.domain.retention import RetentionPolicy
from bot.neon.errors import NeonNotFound, NeonUnreachable
from bot.neon.models import Branch, BranchChange, Operation, Project
from bot.services.alerts import (
    Alert,
    AlertingBackupNotifier,
    AlertingRequestNotifier,
    Alerts,
    ApprovalReminders,
    JobResult,
)
from bot.services.backups import BackupService
from bot.services.health import HealthReport, HealthService
from bot.services.scheduled_backups import ScheduledBackups
from handlers.health_blocks import alert_message
from storage import SqlStore
from tests.support.mrkdwn import assert_markup_is_lifeguards, mrkdwn_texts


def now() -> datetime:
    return datetime.now(UTC)


# --- stand-ins ---------------------------------------------------------------------------


def neon_branch(name: str, *, created_at: datetime | None = None, default: bool = False,
                protected: bool = False, size: int | None = 8 << 20) -> Branch:
    at = created_at or now()
    return Branch(id=f"br-{uuid.uuid4().hex[:8]}", project_id="proj-x", name=name,
                  current_state="ready", default=default, protected=protected,
                  created_at=at, updated_at=at, logical_size=size)


class Neon:
    """Answers what health and pruning read; deletes what it is asked to."""

    def __init__(self) -> None:
        self.retention_seconds = 7 * 86400
        self.count = 3
        self.quota: dict[str, Any] = {}
        self.size_limit: int | None = None
        self.unreachable = False
        self.branches: dict[str, Branch] = {}
        self.deleted: list[str] = []
        self.add(neon_branch("main", default=True))

    def add(self, branch: Branch) -> Branch:
        self.branches[branch.id] = branch
        return branch

    def _reachable(self) -> None:
        if self.unreachable:
            raise NeonUnreachable("connection refused")

    def get_project(self) -> Project:
        self._reachable()
        return Project(id="proj-x", name="x", region_id="aws-eu-central-1", pg_version=16,
                       history_retention_seconds=self.retention_seconds,
                       created_at=now() - timedelta(days=90),
                       branch_logical_size_limit_bytes=self.size_limit, quota=self.quota)

    def count_branches(self) -> int:
        self._reachable()
        return self.count

    def list_branches(self, search: str | None = None) -> list[Branch]:
        self._reachable()
        return [b for b in self.branches.values() if not search or search in b.name]

    def get_branch(self, branch_id: str) -> Branch:
        if branch_id not in self.branches:
            raise NeonNotFound("no such branch")
        return self.branches[branch_id]

    def delete_branch(self, branch_id: str) -> BranchChange:
        branch = self.branches.pop(branch_id)
        self.deleted.append(branch.name)
        return BranchChange(branch=branch)

    def wait_for_operations(self, operations: Any, *,
                            timeout: float | None = None) -> list[Operation]:
        return []


class Slack:
    """Records what would be posted; can be told to fail."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.changes: list[tuple[Check, Level | None]] = []
        self.digests: list[HealthReport] = []
        self.reminders: list[tuple[ChangeRequest, timedelta]] = []
        self.down = False

    def _up(self) -> None:
        if self.down:
            raise ConnectionError("slack is down")

    def post_alert(self, alert: Alert) -> None:
        self._up()
        self.alerts.append(alert)

    def health_changed(self, check: Check, previous: Level | None) -> None:
        self._up()
        self.changes.append((check, previous))

    def health_digest(self, report: HealthReport) -> None:
        self._up()
        self.digests.append(report)

    def remind_approvers(self, request: ChangeRequest, waited: timedelta) -> None:
        self._up()
        self.reminders.append((request, waited))

    def backup_changed(self, backup: Backup) -> None:
        return None

    def request_changed(self, request: ChangeRequest) -> None:
        return None

    def ask_approvers(self, request: ChangeRequest) -> None:
        return None


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = SqlStore(f"sqlite:///{tmp_path / 'lifeguard.db'}")
    yield opened
    opened.close()


@pytest.fixture
def neon() -> Neon:
    return Neon()


@pytest.fixture
def slack() -> Slack:
    return Slack()


class Drills:
    last: datetime | None = None

    def last_success(self) -> datetime | None:
        return self.last


@pytest.fixture
def drills() -> Drills:
    drills = Drills()
    drills.last = now() - timedelta(days=10)
    return drills


@pytest.fixture
def health(sqlite_store: SqlStore, neon: Neon, slack: Slack, drills: Drills) -> HealthService:
    limit = {"value": 10}
    service = HealthService(sqlite_store, neon, slack, branches_limit=lambda: limit["value"],
                            last_drill=drills.last_success)
    service.limit = limit  # type: ignore[attr-defined]  # the test's handle on it
    return service


def add_backup(store: SqlStore, age: timedelta, status: BackupStatus = BackupStatus.READY,
               *, updated_ago: timedelta | None = None,
               branch_id: str | None = None) -> Backup:
    created = now() - age
    backup = Backup(id=uuid.uuid4().hex, branch_name=backup_branch_name(created),
                    status=status, requested_by="U0ALICE", reason="test",
                    created_at=created, expires_at=created + timedelta(days=30),
                    updated_at=now() - (updated_ago if updated_ago is not None else age),
                    branch_id=branch_id)
    return store.backups.add(backup, AuditEvent("U0ALICE", "backup.requested",
                                               backup.branch_name))


def add_request(store: SqlStore, state: RequestState, *, age: timedelta,
                finished_ago: timedelta | None = None, card_ts: str | None = "1.000001",
                step: Step | None = None) -> ChangeRequest:
    created = now() - age
    request_id = uuid.uuid4().hex[:8]
    plan = Plan(action=RequestAction.RESTORE_FROM_BRANCH, project_id="proj-x",
                requester="U0ALICE", source_branch_id="br-src",
                source_branch_name="backup-20261120-101500",
                target_branch_name=f"restore-{request_id}")
    request = ChangeRequest(
        id=request_id, plan=plan, plan_hash=plan.hash(), state=state, reason="test",
        required_approvals=1, created_at=created, expires_at=created + timedelta(hours=1),
        updated_at=created, card_channel="C0APPROVALS", card_ts=card_ts, step=step,
        finished_at=now() - finished_ago if finished_ago is not None else None,
        error="Neon refused" if state == RequestState.FAILED else None)
    return store.requests.add(request, AuditEvent("U0ALICE", "request.created", request_id))


def check_of(report: HealthReport, key: str) -> Check:
    [check] = [c for c in report.checks if c.key == key]
    return check


# --- each check at OK, WARN and FAIL -------------------------------------------------------


@pytest.mark.parametrize(("hours", "level"), [(72, Level.OK), (48, Level.OK),
                                              (24, Level.WARN), (6, Level.FAIL)])
def test_restore_window(health, neon, sqlite_store, hours, level):
    neon.retention_seconds = hours * 3600
    check = check_of(health.report(), "restore_window")
    assert check.level == level
    assert check.value == f"{hours} h" if hours < 72 else "3 d"
    assert "warn under 48 h" in check.threshold


@pytest.mark.parametrize(("count", "level"), [(5, Level.OK), (8, Level.OK), (9, Level.WARN),
                                              (10, Level.FAIL), (11, Level.FAIL)])
def test_branch_count_against_the_plan_limit(health, neon, count, level):
    neon.count = count
    check = check_of(health.report(), "branch_count")
    assert check.level == level
    assert check.value.startswith(f"{count} of 10 branches")


def test_branch_count_without_a_reported_limit_is_ok_and_says_so(health, neon):
    health.limit["value"] = None
    neon.count = 400
    check = check_of(health.report(), "branch_count")
    assert (check.level, check.value) == (Level.OK, "400 branches (no limit reported)")


@pytest.mark.parametrize(("age", "level"), [(timedelta(hours=1), Level.OK),
                                            (timedelta(hours=30), Level.WARN),
                                            (timedelta(hours=80), Level.FAIL),
                                            (None, Level.FAIL)])
def test_newest_backup_age(health, sqlite_store, age, level):
    add_backup(sqlite_store, timedelta(days=20))  # an old one never hides a newer one
    add_backup(sqlite_store, timedelta(hours=2), BackupStatus.FAILED)  # failed: not counted
    if age is not None:
        add_backup(sqlite_store, age)
    check = check_of(health.report(), "backup_age")
    assert check.level == (level if age is not None else Level.FAIL)
    assert "warn over 26 h" in check.threshold


def test_no_backup_at_all_fails(health):
    check = check_of(health.report(), "backup_age")
    assert (check.level, check.value) == (Level.FAIL, "no backup yet")


@pytest.mark.parametrize(("days", "level"), [(10, Level.OK), (100, Level.WARN),
                                             (200, Level.FAIL), (None, Level.FAIL)])
def test_last_drill(health, drills, days, level):
    drills.last = now() - timedelta(days=days) if days is not None else None
    check = check_of(health.report(), "last_drill")
    assert check.level == level
    assert "warn over 90 d" in check.threshold


def test_without_a_drill_service_the_last_drill_is_unknown_and_fails(sqlite_store, neon,
                                                                      slack):
    service = HealthService(sqlite_store, neon, slack)
    check = check_of(service.report(), "last_drill")
    assert (check.level, check.value) == (Level.FAIL, "no successful drill recorded")


@pytest.mark.parametrize(("used_pct", "level"), [(50, Level.OK), (80, Level.OK),
                                                 (90, Level.WARN), (95, Level.FAIL)])
def test_storage_against_the_quota(health, neon, used_pct, level):
    neon.quota = {"logical_size_bytes": 1000 << 20}
    neon.add(neon_branch("backup-20261120-101500", size=(used_pct * 10) << 20))
    check = check_of(health.report(), "storage")
    assert check.level == level
    assert f"({used_pct} %)" in check.value and "largest branch `backup-20261120-101500`" \
        in check.value


def test_storage_uses_the_plans_branch_size_limit_when_no_quota_is_set(health, neon):
    neon.size_limit = 10 << 20  # main is 8 MiB: 80 %, OK; then 9 MiB: WARN
    assert check_of(health.report(), "storage").level == Level.OK
    neon.add(neon_branch("big", size=9 << 20))
    assert check_of(health.report(), "storage").level == Level.WARN


def test_storage_without_a_quota_is_ok_and_says_so(health):
    check = check_of(health.report(), "storage")
    assert (check.level, check.value) == (Level.OK, "8 MiB (no quota reported)")


def test_requests_ok_warn_when_stuck_fail_when_failed(health, sqlite_store):
    add_request(sqlite_store, RequestState.PENDING, age=timedelta(hours=5))  # waits for people
    add_request(sqlite_store, RequestState.FAILED, age=timedelta(days=3),
                finished_ago=timedelta(days=2))  # too long ago to count
    add_backup(sqlite_store, timedelta(minutes=2), BackupStatus.CREATING)  # still young
    assert check_of(health.report(), "requests").level == Level.OK

    add_request(sqlite_store, RequestState.RUNNING, age=timedelta(hours=2))
    add_backup(sqlite_store, timedelta(hours=1), BackupStatus.CREATING)
    check = check_of(health.report(), "requests")
    assert (check.level, check.value) == (Level.WARN, "2 stuck")

    add_request(sqlite_store, RequestState.FAILED, age=timedelta(hours=3),
                finished_ago=timedelta(hours=2))
    add_backup(sqlite_store, timedelta(minutes=61), BackupStatus.FAILED)
    check = check_of(health.report(), "requests")
    assert (check.level, check.value) == (Level.FAIL, "2 failed in the last 24 h, 2 stuck")


def test_neon_unreachable_fails_what_it_feeds_and_says_why(health, neon):
    neon.unreachable = True
    report = health.report()
    for key in ("restore_window", "branch_count", "storage"):
        assert (check_of(report, key).level, check_of(report, key).value) == (Level.FAIL,
                                                                              "unreadable")
    assert report.level == Level.FAIL
    assert any("connection refused" in p for p in report.problems)


# --- alerts once per change of state ------------------------------------------------------


def test_one_alert_per_change_of_state_kept_in_the_audit_trail(health, neon, slack,
                                                               sqlite_store):
    add_backup(sqlite_store, timedelta(hours=1))
    first = health.run_scheduled()
    assert first.report.level == Level.OK
    assert slack.changes == []  # never seen and OK: nothing to say
    assert len(slack.digests) == 1

    neon.retention_seconds = 24 * 3600
    health.run_scheduled()
    health.run_scheduled()
    assert [(c.key, c.level, p) for c, p in slack.changes] == [
        ("restore_window", Level.WARN, None)]

    neon.retention_seconds = 3600
    health.run_scheduled()
    neon.retention_seconds = 7 * 86400
    health.run_scheduled()
    health.run_scheduled()
    assert [(c.level, p) for c, p in slack.changes] == [
        (Level.WARN, None), (Level.FAIL, Level.WARN), (Level.OK, Level.FAIL)]
    assert len(slack.digests) == 6
    entries = sqlite_store.audit_for("health:restore_window")
    assert [(e.action, e.details["level"], e.details["previous"]) for e in entries] == [
        ("health.changed", "warn", None), ("health.changed", "fail", "warn"),
        ("health.changed", "ok", "fail")]
    assert health.previous_levels() == {"restore_window": Level.OK}


def test_the_report_on_demand_neither_alerts_nor_records(health, neon, slack, sqlite_store):
    neon.retention_seconds = 3600
    health.report()
    assert slack.changes == [] and slack.digests == []
    assert sqlite_store.audit_for("health:restore_window") == []


def test_an_alert_slack_did_not_take_is_tried_again_next_run(health, neon, slack):
    neon.retention_seconds = 3600
    slack.down = True
    with pytest.raises(ConnectionError):  # the digest cannot be posted either: job fails
        health.run_scheduled()
    assert health.previous_levels() == {}
    slack.down = False
    health.run_scheduled()
    assert [c.key for c, _ in slack.changes if c.key == "restore_window"] == [
        "restore_window"]


def test_health_job_failure_becomes_an_alert_not_an_exception(health, slack, sqlite_store):
    alerts = Alerts(slack, sqlite_store)

    def broken() -> JobResult:
        raise RuntimeError("the store is on fire")

    result = alerts.run_job("health", broken)
    assert (result.ok, result.summary) == (False, "failed: the store is on fire")
    [alert] = slack.alerts
    assert alert.title == "The scheduled health job failed"
    assert alert.error == "the store is on fire" and "/backup health" in alert.next_step
    assert [e.action for e in sqlite_store.audit_for("job:health")] == ["alert.posted"]


# --- alert hooks ---------------------------------------------------------------------------


def test_a_failed_backup_alerts_once_with_what_was_tried_and_what_next(slack, sqlite_store):
    alerts = Alerts(slack, sqlite_store)
    notifier = AlertingBackupNotifier(slack, alerts)
    backup = add_backup(sqlite_store, timedelta(minutes=1))
    failed = replace(backup, status=BackupStatus.FAILED, error="Neon refused the API key.",
                     requested_by="scheduler")
    notifier.backup_changed(replace(backup, status=BackupStatus.CREATING))
    notifier.backup_changed(failed)
    notifier.backup_changed(failed)  # shown again: not alerted again
    [alert] = slack.alerts
    assert alert.title == f"Backup `{backup.branch_name}` failed"
    assert alert.error == "Neon refused the API key."
    assert "the schedule" in alert.tried and "/backup now" in alert.next_step


def test_a_failed_promotion_says_how_to_undo(slack, sqlite_store):
    alerts = Alerts(slack, sqlite_store)
    notifier = AlertingRequestNotifier(slack, alerts)
    request = add_request(sqlite_store, RequestState.FAILED, age=timedelta(minutes=5),
                          step=Step.VERIFY)
    plan = replace(request.plan, action=RequestAction.PROMOTE, target_branch_name="main",
                   preserve_under_name="pre-restore-20261121-143000")
    notifier.request_changed(replace(request, plan=plan))
    [alert] = slack.alerts
    assert "/restore promote pre-restore-20261121-143000" in alert.next_step
    assert alert.error == "Neon refused" and "verify" in alert.tried


def test_an_alert_slack_refuses_is_recorded_as_undelivered(slack, sqlite_store):
    slack.down = True
    assert Alerts(slack, sqlite_store).notify(Alert("x failed", "tried", "next",
                                                    subject="thing")) is False
    assert [e.action for e in sqlite_store.audit_for("thing")] == ["alert.undelivered"]


# --- approval reminders ---------------------------------------------------------------------


def test_waiting_requests_remind_the_approvers_once(slack, sqlite_store):
    alerts = Alerts(slack, sqlite_store)
    reminders = ApprovalReminders(sqlite_store, slack, alerts, after=timedelta(minutes=10))
    young = add_request(sqlite_store, RequestState.PENDING, age=timedelta(minutes=2))
    old = add_request(sqlite_store, RequestState.PENDING, age=timedelta(minutes=15))
    add_request(sqlite_store, RequestState.PENDING, age=timedelta(hours=2))  # expired
    add_request(sqlite_store, RequestState.APPROVED, age=timedelta(minutes=30))
    assert [r.id for r in reminders.run()] == [old.id]
    assert reminders.run() == []  # once
    [(reminded, waited)] = slack.reminders
    assert reminded.id == old.id and waited >= timedelta(minutes=15)
    assert [e.action for e in sqlite_store.audit_for(old.id)] == [
        "request.created", "request.reminded"]
    assert sqlite_store.requests.get(young.id).extra == {}


def test_a_reminder_slack_refuses_is_alerted_not_repeated(slack, sqlite_store):
    alerts = Alerts(slack, sqlite_store)
    reminders = ApprovalReminders(sqlite_store, slack, alerts, after=timedelta(minutes=10))
    old = add_request(sqlite_store, RequestState.PENDING, age=timedelta(minutes=15))
    slack.down = True
    assert reminders.run() == []
    slack.down = False
    assert reminders.run() == []  # recorded before posting: at most once
    assert [e.action for e in sqlite_store.audit_for(old.id)][-2:] == [
        "request.reminded", "alert.undelivered"]


# --- pruning ---------------------------------------------------------------------------------


def recorded_backup(store: SqlStore, neon: Neon, age: timedelta, *,
                    protected: bool = False) -> Backup:
    created = now() - age
    branch = neon.add(neon_branch(backup_branch_name(created), created_at=created,
                                  protected=protected))
    backup = add_backup(store, age, branch_id=branch.id)
    assert backup.branch_name == branch.name
    return backup


@pytest.fixture
def scheduled(sqlite_store: SqlStore, neon: Neon, slack: Slack) -> ScheduledBackups:
    backups = BackupService(sqlite_store, neon, slack, retention=timedelta(days=30))
    return ScheduledBackups(backups, neon, sqlite_store, Alerts(slack, sqlite_store),
                            policy=RetentionPolicy(daily=2, weekly=0, monthly=0), zone=UTC,
                            settle_seconds=5)


def test_prune_deletes_only_what_the_policy_drops_and_only_lifeguard_backups(
        scheduled, sqlite_store, neon):
    keep = [recorded_backup(sqlite_store, neon, timedelta(days=d)) for d in (0, 1)]
    drop = [recorded_backup(sqlite_store, neon, timedelta(days=d)) for d in (3, 4)]
    guarded = recorded_backup(sqlite_store, neon, timedelta(days=5), protected=True)
    stranger = neon.add(neon_branch("backup-20200101-000000",
                                    created_at=now() - timedelta(days=9)))
    view = scheduled.show_prune("U0BOB")
    assert {c.name for c in view.plan.delete} == {b.branch_name for b in drop}
    assert view.plan.reasons[guarded.branch_name] == "protected"
    assert view.plan.reasons[stranger.name] == "not a Lifeguard backup"
    assert "main" not in view.plan.reasons  # not a backup at all: not a candidate
    assert {b.branch_name for b in keep} <= {c.name for c in view.plan.keep}

    with pytest.raises(Conflict):
        scheduled.current_plan("U0BOB", "0" * 64)  # a plan nobody was shown
    assert scheduled.current_plan("U0BOB", view.plan_hash) == view  # what a request names
    assert neon.deleted == []  # planning and asking delete nothing
    actions = [e.action for e in sqlite_store.entries() if e.subject == "prune"]
    assert actions == ["prune.planned", "prune.refused"]


def test_a_plan_that_changed_since_it_was_shown_is_refused(scheduled, sqlite_store, neon):
    for days in (0, 1, 3):
        recorded_backup(sqlite_store, neon, timedelta(days=days))
    view = scheduled.show_prune("U0BOB")
    recorded_backup(sqlite_store, neon, timedelta(hours=1))  # a new backup moves the plan
    with pytest.raises(Conflict, match="changed since this plan was shown"):
        scheduled.current_plan("U0BOB", view.plan_hash)
    assert neon.deleted == []


def test_the_scheduled_prune_runs_without_asking_and_alerts_on_failures(
        scheduled, sqlite_store, neon, slack):
    for days in (0, 1):
        recorded_backup(sqlite_store, neon, timedelta(days=days))
    gone = recorded_backup(sqlite_store, neon, timedelta(days=6))
    neon.branches = {k: v for k, v in neon.branches.items() if v.name != gone.branch_name}
    result = scheduled.prune_job()
    assert result.ok and result.summary == "deleted 0, kept 2"  # already gone from Neon
    doomed = recorded_backup(sqlite_store, neon, timedelta(days=7))

    def refuse(branch_id: str) -> BranchChange:
        raise NeonUnreachable("connection refused")

    neon.delete_branch = refuse  # type: ignore[method-assign]
    result = scheduled.prune_job()
    assert not result.ok and "1 failed" in result.summary
    [alert] = slack.alerts
    assert alert.title.startswith("Pruning old backups: 1 of 1 deletions failed")
    assert doomed.branch_name in alert.tried
    message = alert_message(alert)  # what Slack shows: the placeholder as text
    assert_markup_is_lifeguards(message)
    assert "`/backup delete &lt;branch&gt;` deletes one by hand" in "\n".join(
        mrkdwn_texts(message))
