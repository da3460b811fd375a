"""Text Lifeguard did not write shows as text in Slack: every builder and every sentence
that takes a value from outside (a reason, a branch, table or column name from Neon or
PostgreSQL, an error message) escapes it once, and Lifeguard's own mentions, date tokens,
channel links and permalinks still work."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from bot.domain.backups import BackupStatus, check_deletable, parse_backup_command
from bot.domain.drills import DrillState, DrillStep, parse_drill_command, verification_failure
from bot.domain.echo import echo
from bot.domain.errors import InvalidInput, LifeguardError, NotAllowed
from bot.domain.health import Check, Level
from bot.domain.requests import Approval, Plan, RequestAction, RequestState, Step
from bot.domain.restores import parse_restore_command
from bot.domain.retention import PruneCandidate, PrunePlan, RetentionPolicy
from bot.domain.table_restores import TableCopy, TableMode
from bot.domain.text import escape
from bot.domain.verification import (
    CheckResult,
    TableResult,
    VerificationReport,
)
from bot.neon.errors import (
    NeonConflict,
    NeonError,
    NeonNotFound,
    NeonOperationFailed,
    NeonOperationTimeout,
    NeonServerError,
    NeonUnreachable,
)
from bot.neon.models import Operation
from bot.services.alerts import Alert, Alerts, backup_failure, request_failure
from bot.services.backups import BackupListing, Listing
from bot.services.drills import DrillOverview
from bot.services.neon_errors import explain_neon_error
from bot.services.scheduled_backups import PruneView
from bot.services.verification import verify_branch
from handlers import blocks, drill_blocks, health_blocks, home_blocks, restore_blocks
from handlers.answers import failure_text
from tests.support.handler_fakes import (
    ALICE,
    APPROVALS,
    BOB,
    T0,
    make_backup,
    make_drill,
    make_request,
)
from tests.support.mrkdwn import (
    HOSTILE,
    HOSTILE_SHOWN,
    assert_markup_is_lifeguards,
    assert_shows_as_text,
    mrkdwn_texts,
    outside_markup,
)
from tests.support.postgres import PostgresServer

HOSTILE_TABLE = "<!channel>"
HOSTILE_TABLE_SHOWN = "&lt;!channel&gt;"


def all_mrkdwn(message: Any) -> str:
    return "\n".join(mrkdwn_texts(message))


# --- the one function --------------------------------------------------------------------


def test_escape_writes_slacks_three_control_characters_as_entities_and_nothing_else():
    assert escape(HOSTILE) == HOSTILE_SHOWN
    assert escape("a & b <c> d") == "a &amp; b &lt;c&gt; d"
    kept = "*bold* _it_ `code` ~x~ 'q' \"dq\" é ✓ :emoji: #C0 @here |pipe|"
    assert escape(kept) == kept


def test_the_checker_sees_what_slack_would_parse():
    """The assertions below can fail: raw outside markup is found, Lifeguard's is not."""
    assert outside_markup({"text": HOSTILE}) == [
        "!channel", "@U0BOB00002", "https://evil.example|click here", "!here"]
    own = {"text": f"<@{ALICE}> <#{APPROVALS}> <!date^1700000000^{{time}}|14:25 UTC> "
                   "<!subteam^S0DBAS>"}
    assert outside_markup(own) == []
    with pytest.raises(AssertionError):
        assert_markup_is_lifeguards({"text": escape(HOSTILE_SHOWN)})  # escaped twice


def test_echo_of_typed_input_escapes_with_the_same_function():
    assert echo(HOSTILE, limit=200) == HOSTILE_SHOWN
    assert echo("`<!here>`") == "'&lt;!here&gt;'"


# --- backups -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(BackupStatus))
def test_a_backup_card_shows_the_reason_as_text_and_keeps_the_requesters_mention(status):
    backup = replace(make_backup(status), reason=HOSTILE, deleted_by=BOB)
    card = blocks.backup_card(backup)
    assert_shows_as_text(card)
    deletion = status in (BackupStatus.DELETING, BackupStatus.DELETED)
    assert f"<@{BOB if deletion else ALICE}>" in all_mrkdwn(card)  # mentioned on purpose
    assert "<!date^" in all_mrkdwn(card)


def test_the_backup_list_shows_reasons_as_text():
    backup = replace(make_backup(), reason=HOSTILE)
    listing = Listing([BackupListing(backup, None)],
                      explain_neon_error(NeonUnreachable(HOSTILE)))
    message = blocks.backup_list(listing, T0 + timedelta(hours=1))
    assert_shows_as_text(message)
    assert f"by <@{ALICE}>" in all_mrkdwn(message)


def test_a_backup_that_failed_before_neon_says_neons_words_as_text():
    backup = replace(make_backup(BackupStatus.FAILED),
                     error=explain_neon_error(NeonServerError(HOSTILE, status=500)))
    assert_shows_as_text(blocks.backup_not_started(backup))
    assert_shows_as_text(blocks.backup_card(backup))


def test_a_refused_deletion_of_a_typed_name_shows_the_name_as_text():
    parsed = parse_backup_command(f"delete {'<!here>'}")
    with pytest.raises(NotAllowed) as refused:
        check_deletable(branch_name=parsed.branch_name, recorded_as_backup=False,  # type: ignore[union-attr]
                        is_default=False, is_protected=False)
    message = blocks.error_message(failure_text(refused.value))
    assert "`&lt;!here&gt;` is not a backup Lifeguard took" in all_mrkdwn(message)
    assert_markup_is_lifeguards(message)
    for default, protected in ((True, False), (False, True)):
        with pytest.raises(NotAllowed) as other:
            check_deletable(branch_name=HOSTILE, recorded_as_backup=True, is_default=default,
                            is_protected=protected)
        assert_shows_as_text(blocks.error_message(str(other.value)))


@pytest.mark.parametrize("text", [HOSTILE, f"list {HOSTILE}", f"health {HOSTILE}"])
def test_a_wrong_backup_command_repeats_what_was_typed_as_text(text):
    with pytest.raises(InvalidInput) as wrong:
        parse_backup_command(text)
    message = blocks.backup_help(str(wrong.value))
    assert_markup_is_lifeguards(message)
    assert "&lt;!channel&gt;" in all_mrkdwn(message)


# --- restores ----------------------------------------------------------------------------


def hostile_request(state: RequestState,
                    action: RequestAction = RequestAction.RESTORE_POINT_IN_TIME,
                    **changes: Any) -> Any:
    """A request whose reason was typed by an attacker and whose default branch is called
    something hostile in Neon."""
    request = make_request(state)
    plan = request.plan
    if action == RequestAction.PROMOTE:
        plan = Plan(action=action, project_id="proj-1", requester=ALICE,
                    source_branch_id="br-restore", source_branch_name="restore-20260113-1325",
                    target_branch_name=HOSTILE, target_branch_id="br-main",
                    preserve_under_name="pre-restore-20260113-142500")
    elif action == RequestAction.RESTORE_TABLE:  # names from PostgreSQL, a typed condition
        copy = TableCopy(schema=HOSTILE, table=HOSTILE, mode=TableMode.MERGE, condition=HOSTILE,
                         target_table=HOSTILE)
        plan = replace(plan, action=action, source_branch_name=HOSTILE, table_copy=copy)
        changes.setdefault("extra", {"columns": [HOSTILE], "key": [HOSTILE], "rows": 5,
                                     "live_rows": 95, "safety_backup": HOSTILE,
                                     "copy_result": {"read": 5, "copied": 5, "live_before": 95,
                                                     "live_after": 100, "seconds": 0.5}})
    else:
        plan = replace(plan, action=action, source_branch_name=HOSTILE)
    approvals = () if state == RequestState.PENDING else (Approval(BOB, T0),)
    return replace(request, plan=plan, plan_hash=plan.hash(), reason=HOSTILE,
                   approvals=approvals, decided_by=BOB, **changes)


@pytest.mark.parametrize("state", list(RequestState))
@pytest.mark.parametrize("action", list(RequestAction))
def test_an_approval_card_shows_reason_and_branch_names_as_text_in_every_state(state, action):
    step = Step.VERIFY if state == RequestState.RUNNING else None
    request = hostile_request(state, action, step=step)
    card = restore_blocks.request_card(request)
    assert_shows_as_text(card)
    shown = all_mrkdwn(card)
    assert f"requested by <@{ALICE}>" in shown
    if state in (RequestState.APPROVED, RequestState.RUNNING, RequestState.SUCCEEDED):
        assert f"<@{BOB}>" in shown  # the approver, mentioned on purpose
    if state == RequestState.PENDING:
        assert "<!date^" in shown
    assert_shows_as_text(restore_blocks.request_status(request))


def test_the_answers_to_the_requester_and_the_approvers_dm_keep_lifeguards_markup():
    request = hostile_request(RequestState.PENDING)
    accepted = restore_blocks.request_accepted(request, APPROVALS)
    assert_shows_as_text(accepted)  # the plan names Neon's default branch
    assert f"<#{APPROVALS}>" in all_mrkdwn(accepted)
    dm = restore_blocks.approver_dm(
        request, f"https://lifeguard.slack.com/archives/{APPROVALS}/p1700000000000100")
    assert_markup_is_lifeguards(dm)
    assert f"<@{ALICE}> asks" in dm["text"] and "|the card>" in dm["text"]


def test_the_checking_answer_repeats_the_typed_command_as_text():
    assert_shows_as_text(restore_blocks.checking(f"10 minutes ago {HOSTILE}"))


def test_open_requests_and_the_home_tab_show_branch_names_as_text():
    request = hostile_request(RequestState.PENDING, RequestAction.PROMOTE)
    assert_shows_as_text(restore_blocks.status_list([request]))
    backup = replace(make_backup(), reason=HOSTILE, branch_name=f"backup-{HOSTILE}")
    waiting = hostile_request(RequestState.PENDING, RequestAction.RESTORE_FROM_BRANCH)
    home = home_blocks.home_view(home_blocks.HomeFacts(
        user_id=ALICE, waiting=[waiting], mine=[request], backups=[backup]))
    assert_shows_as_text(home)


def test_a_requests_history_shows_an_actor_that_is_not_a_person_as_text():
    from bot.domain.audit import AuditEntry
    entry = AuditEntry(seq=1, created_at=T0, actor=HOSTILE, action="request.created",
                       subject="1a2b3c4d", details={}, prev_hash="0" * 64, hash="1" * 64)
    people = replace(entry, seq=2, actor=ALICE)
    message = restore_blocks.request_log(make_request(), [entry, people])
    assert_shows_as_text(message)
    assert f"<@{ALICE}>" in all_mrkdwn(message)


def hostile_report(*, ok: bool = False) -> VerificationReport:
    """What PostgreSQL could report: tables, columns and a check named by someone else."""
    return VerificationReport(
        ok=ok, compared_tables=1,
        tables=(TableResult("public", HOSTILE_TABLE, 2, 1, True, {}, True,
                            "rows 1 here, 2 in the source"),),
        missing_in_target=(f"public.{HOSTILE}",), extra_in_target=(f"{HOSTILE}.x",),
        checks=(CheckResult(HOSTILE, False, HOSTILE, None),
                CheckResult("count", False, None, HOSTILE)),
        seconds=0.5, error=None, compared_with=f"{HOSTILE} (live)")


def test_a_verification_report_names_tables_columns_and_checks_as_text():
    report = hostile_report()
    summary = report.summary()
    assert "&lt;" in summary and "<" not in summary.replace("&lt;", "")
    failed = replace(make_request(RequestState.FAILED),
                     verification=report.to_dict(), error=f"Verification failed: {summary}")
    card = restore_blocks.request_card(failed)
    assert_shows_as_text(card)
    assert f"{HOSTILE_TABLE_SHOWN} (rows 1 here, 2 in the source)" in all_mrkdwn(card)
    broken = replace(report, error=HOSTILE)
    assert escape(HOSTILE) in broken.summary()


def test_the_newest_timestamp_phrase_names_the_column_as_text():
    report = VerificationReport(
        ok=True, compared_tables=1,
        tables=(TableResult("public", HOSTILE_TABLE, 1, 1, True,
                            {"<@U0BOB00002>_at": ("2026-01-13T14:25:00Z",
                                                  "2026-01-13T14:25:00Z")}, False,
                            "1 rows on both sides (exact)"),),
        missing_in_target=(), extra_in_target=(), checks=(), seconds=0.1, error=None,
        compared_with="main")
    assert report.summary() == (
        "Verified 1 tables against main: row counts match (exact); newest "
        "&lt;@U0BOB00002&gt;_at 2026-01-13T14:25:00Z (&lt;!channel&gt;), the same in the "
        "source.")


def test_a_real_verification_of_hostile_names_shows_them_as_text_on_the_card(
        postgres: PostgresServer, postgres_url: str):
    """Names as PostgreSQL gives them, through the real verifier, onto the card."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "<!channel>" (id int, "<@U0BOB00002>_at" timestamptz)')
        conn.execute('''INSERT INTO "<!channel>" VALUES (1, '2026-01-13 14:25+00')''')
        conn.execute('CREATE TABLE "<!here>" (id int)')
    target = postgres.create_database("escaping_target")
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute('CREATE TABLE "<!channel>" (id int, "<@U0BOB00002>_at" timestamptz)')
        conn.execute('''INSERT INTO "<!channel>" VALUES (1, '2026-01-13 14:20+00')''')
    report = verify_branch(target, postgres_url, compared_with="main (live)")
    assert not report.ok
    [table] = report.tables
    assert table.table == "<!channel>"  # stored as PostgreSQL named it
    assert report.missing_in_target == ("public.<!here>",)
    failed = replace(make_request(RequestState.FAILED), verification=report.to_dict(),
                     error=f"Verification failed: {report.summary()}")
    card = restore_blocks.request_card(failed)
    assert_markup_is_lifeguards(card)
    shown = all_mrkdwn(card)
    assert "1 of 1 tables differ against main (live): &lt;!channel&gt; (newest " \
           "&lt;@U0BOB00002&gt;_at 2026-01-13T14:20:00Z here" in shown
    assert "Missing here: public.&lt;!here&gt;." in shown


# --- drills ------------------------------------------------------------------------------


def hostile_drill() -> Any:
    """A failed drill whose default branch, tables and Neon's words are hostile, with its
    sentences composed by the real functions."""
    report = hostile_report()
    drill = replace(make_drill(), state=DrillState.FAILED, step=DrillStep.DONE,
                    source_branch_name=HOSTILE, source_branch_id="br-main",
                    step_timings={"create_branch": 1.0, "wait_branch": 2.0, "verify": 3.0},
                    verification=report.to_dict(), summary=report.summary(),
                    failed_step=DrillStep.VERIFY, finished_at=T0)
    error, advice = verification_failure(report, drill, HOSTILE, timedelta(days=1))
    cleanup = (f"The drill branch `{drill.branch_name}` could not be deleted: "
               f"{explain_neon_error(NeonConflict(HOSTILE, status=409))}")
    return replace(drill, error=error, next_step=advice, cleanup_error=cleanup)


def test_a_drill_report_shows_branch_tables_and_errors_as_text():
    drill = hostile_drill()
    card = drill_blocks.drill_card(drill)
    assert_shows_as_text(card)
    assert f"<@{ALICE}>" in all_mrkdwn(card)
    history = drill_blocks.drill_history([drill])  # the error shortened, still as text
    assert_markup_is_lifeguards(history)
    assert "against &lt;!channel&gt; &lt;@U0BOB00002&gt;" in all_mrkdwn(history)
    assert_shows_as_text(drill_blocks.drill_status(DrillOverview(drill, drill, None),
                                                   T0 + timedelta(hours=1)))


@pytest.mark.parametrize("missing", [(), (HOSTILE,) * 7])
def test_a_drill_that_compared_nothing_names_the_tables_and_branch_as_text(missing):
    report = replace(hostile_report(), compared_tables=0, tables=(),
                     missing_in_target=missing)
    error, advice = verification_failure(report, make_drill(), HOSTILE, timedelta(hours=1))
    message = drill_blocks.drill_card(replace(make_drill(), state=DrillState.FAILED,
                                              error=error, next_step=advice))
    assert_shows_as_text(message)
    unfinished = replace(report, error=HOSTILE)
    error, _ = verification_failure(unfinished, make_drill(), "main", timedelta(hours=1))
    assert error == f"Verification could not finish: {HOSTILE_SHOWN}"


@pytest.mark.parametrize("text", [HOSTILE, f"status {HOSTILE}"])
def test_a_wrong_drill_command_repeats_what_was_typed_as_text(text):
    with pytest.raises(InvalidInput) as wrong:
        parse_drill_command(text)
    message = drill_blocks.drill_help(str(wrong.value))
    assert_markup_is_lifeguards(message)
    assert "&lt;!channel&gt;" in all_mrkdwn(message)


@pytest.mark.parametrize("text", [HOSTILE, f"from {HOSTILE}", f"promote {HOSTILE}",
                                  f"status {HOSTILE}", f"log {HOSTILE}",
                                  "14:25 Europe/<!channel>"])
def test_a_wrong_restore_command_repeats_what_was_typed_as_text(text):
    with pytest.raises(LifeguardError) as wrong:
        parse_restore_command(text)
    message = restore_blocks.restore_help(str(wrong.value))
    assert_markup_is_lifeguards(message)
    assert "&lt;" in all_mrkdwn(message)


# --- Neon's words ----------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    NeonUnreachable(HOSTILE), NeonUnreachable(HOSTILE, outcome_unknown=True),
    NeonServerError(HOSTILE, status=500), NeonNotFound(HOSTILE, status=404),
    NeonConflict(HOSTILE, status=409), NeonError(HOSTILE, status=400),
    NeonOperationTimeout(HOSTILE)], ids=lambda e: type(e).__name__)
def test_neons_message_is_shown_as_text(error):
    assert_shows_as_text(blocks.error_message(explain_neon_error(error)))


def test_a_failed_neon_operation_is_shown_as_text():
    operation = Operation(id="op-1", action=HOSTILE, status="failed", created_at=T0,
                          updated_at=T0, error=HOSTILE)
    said = explain_neon_error(NeonOperationFailed(operation))
    assert said == f"Neon's {HOSTILE_SHOWN} operation ended failed: {HOSTILE_SHOWN}."


# --- alerts, health, pruning -------------------------------------------------------------


def test_a_backup_failure_alert_shows_reason_and_neons_words_as_text():
    backup = replace(make_backup(BackupStatus.FAILED), reason=HOSTILE,
                     error=explain_neon_error(NeonServerError(HOSTILE, status=503)))
    message = health_blocks.alert_message(backup_failure(backup))
    assert_shows_as_text(message)
    assert f"<@{ALICE}>" in all_mrkdwn(message)


@pytest.mark.parametrize("action", list(RequestAction))
def test_a_request_failure_alert_shows_branch_names_as_text(action):
    request = hostile_request(RequestState.FAILED, action, step=Step.VERIFY,
                              error=explain_neon_error(NeonConflict(HOSTILE, status=409)))
    message = health_blocks.alert_message(request_failure(request))
    assert_shows_as_text(message)
    assert f"<@{ALICE}>" in all_mrkdwn(message) and f"<@{BOB}>" in all_mrkdwn(message)


class Poster:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def post_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)


class Audit:
    def append(self, event: Any) -> Any:
        return event

    def audit_for(self, subject: str) -> list[Any]:
        return []


def test_a_failed_jobs_alert_shows_the_exceptions_message_as_text():
    poster = Poster()

    def job() -> Any:
        raise RuntimeError(HOSTILE)

    result = Alerts(poster, Audit()).run_job("backup", job)
    assert result.summary == f"failed: {HOSTILE}"  # the log and the command line: as it is
    [alert] = poster.alerts
    assert_shows_as_text(health_blocks.alert_message(alert))


def test_a_health_report_shows_branch_names_and_problems_as_text(tmp_path):
    from bot.services.health import HealthService
    from storage import SqlStore
    from tests.test_health_service import Neon, Slack, neon_branch

    neon = Neon()
    neon.quota = {"logical_size_bytes": 100 << 20}
    neon.add(neon_branch(HOSTILE, size=90 << 20))
    store = SqlStore(f"sqlite:///{tmp_path / 'lifeguard.db'}")
    try:
        def broken() -> int:
            raise RuntimeError(HOSTILE)

        report = HealthService(store, neon, Slack(), branches_limit=broken).report()
    finally:
        store.close()
    assert report.problems == (f"the branch limit: RuntimeError: {HOSTILE_SHOWN}",)
    message = health_blocks.health_report(report)
    assert_shows_as_text(message)
    assert f"largest branch `{HOSTILE_SHOWN}`" in all_mrkdwn(message)
    [storage] = [c for c in report.checks if c.key == "storage"]
    assert_shows_as_text(health_blocks.health_alert(storage, Level.OK))
    assert_shows_as_text(health_blocks.health_digest(report))


def test_a_reminder_keeps_lifeguards_mentions_of_people_and_groups():
    request = replace(hostile_request(RequestState.PENDING), card_ts="1.1")
    message = health_blocks.reminder(request, timedelta(minutes=20),
                                     f"<@{BOB}>, <!subteam^S0DBAS>")
    assert_markup_is_lifeguards(message)
    assert f"<@{BOB}>, <!subteam^S0DBAS>" in message["text"]


def candidate(name: str, age_days: int) -> PruneCandidate:
    return PruneCandidate(name, datetime(2026, 1, 13, tzinfo=UTC) - timedelta(days=age_days),
                          recorded_by_lifeguard=True, is_default=False, is_protected=False)


def test_the_prune_plan_and_its_outcome_show_branch_names_as_text():
    plan = PrunePlan(keep=(candidate(HOSTILE, 1),), delete=(candidate(HOSTILE, 40),),
                     reasons={HOSTILE: "daily 2026-01-12"})
    view = PruneView(plan, "a" * 64, RetentionPolicy(), "UTC")
    message = health_blocks.prune_plan(view)
    assert_shows_as_text(message)
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"] for b in buttons] == [
        {"type": "plain_text", "text": "Ask a second person to delete 1 backup"},
        {"type": "plain_text", "text": "Cancel"}]


def test_a_prune_request_card_shows_branch_names_as_text():
    request = hostile_request(RequestState.PENDING, RequestAction.PRUNE_BACKUPS)
    plan = replace(request.plan, branches=(HOSTILE,))
    card = restore_blocks.request_card(replace(request, plan=plan, plan_hash=plan.hash()))
    assert_shows_as_text(card)


def test_a_health_check_value_is_shown_as_composed():
    """A check's value is mrkdwn-ready: shown as it is, not escaped again."""
    check = Check(key="storage", title="Storage", level=Level.WARN,
                  value=f"90 % of 100 MiB, largest branch `{escape(HOSTILE)}`",
                  threshold="warn over 80 %", advice="Delete old backups (`/backup list`).")
    assert_shows_as_text(health_blocks.health_alert(check, None))


# --- Lifeguard's own placeholders ----------------------------------------------------------
# A usage's `<branch>` means the characters themselves: written as entities, Slack shows it;
# written raw, Slack reads markup and the placeholder vanishes or turns into a link.


def refusal_of(check: Any, *args: Any) -> str:
    with pytest.raises(LifeguardError) as refused:
        check(*args)
    return str(refused.value)


def incident_refusal(state: Any) -> str:
    from bot.domain.incidents import IncidentState, check_in_incident
    from tests.test_incidents_domain import make_incident
    incident = None if state is None else make_incident(state=IncidentState(state))
    return refusal_of(check_in_incident, incident, "note")


def restore_window_refusal() -> str:
    from bot.domain.instants import check_restore_window
    return refusal_of(lambda: check_restore_window(
        T0 - timedelta(days=3), now=T0, window_seconds=86400, zone=UTC))


def table_restore_refusal(text: str) -> str:
    from bot.domain.table_restores import parse_table_restore
    return refusal_of(parse_table_restore, text)


def condition_refusal(condition: str) -> str:
    from bot.services.table_source import check_one_expression
    return refusal_of(check_one_expression, condition)


def restorable_source_refusal() -> str:
    from bot.domain.restores import check_restorable_source
    return refusal_of(check_restorable_source, "main")


@pytest.mark.parametrize(("said", "shown"), [
    (lambda: restore_blocks.restore_help(), "`/restore cancel &lt;id&gt;`"),
    (lambda: restore_blocks.restore_help(restorable_source_refusal()),
     "use `/restore &lt;when&gt;`."),
    (lambda: restore_blocks.restore_help(table_restore_refusal("accounts")),
     "`from &lt;branch&gt;` or `at &lt;when&gt;` after the table name."),
    (lambda: restore_blocks.restore_help(table_restore_refusal("accounts at never")),
     "`&lt;when&gt;` is `2026-01-13T14:25:00Z`"),
    (lambda: restore_blocks.restore_help(table_restore_refusal("accounts from main")),
     "`at &lt;when&gt;` copies the table as it was"),
    (lambda: restore_blocks.restore_help(table_restore_refusal(
        "accounts from backup-20261121-142500 --rows id")), '`--rows "id &lt;= 5"`'),
    (lambda: blocks.error_message(condition_refusal("id = 1; DROP TABLE x")),
     "such as `id &lt;= 5`."),
    (lambda: blocks.error_message(condition_refusal("id = ")), "such as `id &lt;= 5`."),
    (lambda: restore_blocks.restore_help(restore_window_refusal()),
     "`/restore from &lt;branch&gt;` (`/backup list` shows them)"),
    (lambda: blocks.backup_help(), "`/backup verify &lt;branch&gt;`"),
    (lambda: drill_blocks.drill_help(refusal_of(parse_drill_command, "bogus")),
     "`/drill start`"),
    (lambda: blocks.error_message(incident_refusal(None)),
     "`/incident open &lt;title&gt;` opens one"),
    (lambda: blocks.error_message(incident_refusal("closed")),
     "a new channel: `/incident open &lt;title&gt;`."),
], ids=["restore-help", "restore-from-main", "table-without-source", "table-bad-when",
        "table-from-main", "table-rows-unquoted", "condition-two-statements",
        "condition-unparsed", "outside-the-window", "backup-help", "drill-bogus",
        "incident-elsewhere", "incident-closed"])
def test_lifeguards_placeholders_reach_slack_as_entities(said, shown):
    message = said()
    assert_markup_is_lifeguards(message)  # a raw `<branch>` would be found as markup
    assert shown in all_mrkdwn(message)


def test_the_incident_cards_hints_write_their_placeholders_as_entities():
    from bot.domain.incidents import IncidentState
    from handlers.incident_blocks import archive_warning, status_card
    from tests.test_incidents_domain import make_incident
    card = status_card(make_incident())
    assert_markup_is_lifeguards(card)
    assert "`/incident note &lt;text&gt;`" in all_mrkdwn(card)
    archived = archive_warning(make_incident(state=IncidentState.CLOSED))
    assert_markup_is_lifeguards(archived)
    assert "(`/incident open &lt;title&gt;`)" in all_mrkdwn(archived)


@pytest.mark.parametrize("level", [Level.WARN, Level.FAIL])
def test_the_health_advice_writes_its_placeholders_as_entities(level):
    from bot.domain.health import Thresholds, check_branch_count, check_requests
    branches = check_branch_count(10 if level == Level.FAIL else 9, 10, Thresholds())
    requests = check_requests(1 if level == Level.FAIL else 0, 1, Thresholds())
    assert (branches.level, requests.level) == (level, level)
    for check, shown in ((branches, "`/backup delete &lt;branch&gt;`"),
                         (requests, "`/restore log &lt;id&gt;`" if level == Level.FAIL
                          else "`/restore status`")):
        message = health_blocks.health_alert(check, Level.OK)
        assert_markup_is_lifeguards(message)
        assert shown in all_mrkdwn(message)


def test_a_failed_jobs_alert_names_run_job_with_its_placeholder_as_an_entity():
    poster = Poster()

    def job() -> Any:
        raise RuntimeError("the store is down")

    Alerts(poster, Audit()).run_job("prune", job)
    [alert] = poster.alerts
    message = health_blocks.alert_message(alert)
    assert_markup_is_lifeguards(message)
    assert "`python -m bot run-job &lt;name&gt;`" in all_mrkdwn(message)
