"""Fakes for calling Slack listeners directly, as Slack's bolt-python starter template's
tests do: `ack` and `respond` that remember what they were given, an Asker that keeps
what it would have told the person and runs work "after the ack" at once, services as
`Mock(spec=...)` (they remember their calls), and small domain objects to return."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import Mock

from slack_sdk import WebClient

from bot.domain.backups import Backup, BackupStatus
from bot.domain.drills import Drill, DrillState, drill_branch_name
from bot.domain.requests import ChangeRequest, Plan, RequestAction, RequestState
from handlers.answers import Asker
from handlers.blocks import Message

T0 = datetime(2026, 1, 13, 14, 25, tzinfo=UTC)
ALICE, BOB = "U0ALICE", "U0BOB"
APPROVALS, ALERTS = "C0APPROVALS", "C0ALERTS"
REQUEST_ID = "1a2b3c4d"


class Said:
    """Stands in for Bolt's `ack` or `respond`: remembers each call's message."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, text: str | dict[str, Any] = "", **kwargs: Any) -> None:
        message = dict(text) if isinstance(text, dict) else dict(kwargs)
        if isinstance(text, str) and text:
            message["text"] = text
        self.calls.append(message)

    @property
    def texts(self) -> list[str]:
        return [str(c.get("text", "")) for c in self.calls]


class RecordingAsker(Asker):
    """An Asker whose private messages are kept, not sent, and whose "after the ack"
    work runs at once (a failure in it is told, as the real one does)."""

    def __init__(self, kind: str = "command", user_id: str | None = ALICE,
                 response_url: str | None = "https://hooks.slack.test/answer") -> None:
        self.ran: list[str] = []
        super().__init__(Mock(spec=WebClient), self._run_now, kind, user_id, response_url)
        self.told: list[Message] = []

    def _run_now(self, job: Callable[[], object], what: str) -> object:
        self.ran.append(what)
        return job()

    def tell(self, message: Message) -> None:
        self.told.append({**message, "replace_original": self.replace_original})

    @property
    def told_texts(self) -> list[str]:
        return [str(m.get("text", "")) for m in self.told]


def command(text: str, user_id: str = ALICE, **extra: str) -> dict[str, Any]:
    return {"command": "/restore", "text": text, "user_id": user_id, "channel_id": "C0OPS",
            "response_url": "https://hooks.slack.test/answer", "trigger_id": "1337.42",
            **extra}


CARD_TS = "1700000000.000100"  # the message the clicked buttons are on


def click_body(action_id: str, value: Any, user_id: str = BOB) -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": user_id},
            "channel": {"id": APPROVALS},
            "container": {"type": "message", "channel_id": APPROVALS, "message_ts": CARD_TS},
            "response_url": "https://hooks.slack.test/click",
            "actions": [{"action_id": action_id, "value": value, "type": "button"}]}


def form_body(picked: Any = None, source: Any = None, reason: Any = None,
              user_id: str = ALICE) -> dict[str, Any]:
    return {"type": "view_submission", "user": {"id": user_id},
            "view": {"type": "modal", "callback_id": "restore.form", "state": {"values": {
                "when": {"when": {"type": "datetimepicker", "selected_date_time": picked}},
                "source": {"source": {"type": "plain_text_input", "value": source}},
                "reason": {"reason": {"type": "plain_text_input", "value": reason}}}}},
            "response_urls": []}


def make_request(state: RequestState = RequestState.PENDING,
                 request_id: str = REQUEST_ID) -> ChangeRequest:
    plan = Plan(action=RequestAction.RESTORE_POINT_IN_TIME, project_id="proj-1",
                requester=ALICE, source_branch_id="br-main", source_branch_name="main",
                target_branch_name="restore-20260113-1325", instant=T0 - timedelta(hours=1))
    return ChangeRequest(id=request_id, plan=plan, plan_hash=plan.hash(), state=state,
                         reason="bad deploy", required_approvals=1, created_at=T0,
                         expires_at=T0 + timedelta(minutes=30), updated_at=T0)


def make_backup(status: BackupStatus = BackupStatus.READY) -> Backup:
    return Backup(id="b0000001", branch_name="backup-20260113-142500", status=status,
                  requested_by=ALICE, reason="nightly", created_at=T0,
                  expires_at=T0 + timedelta(days=7), updated_at=T0, branch_id="br-backup")


def make_drill() -> Drill:
    return Drill(id="d0000001", state=DrillState.REQUESTED, started_by=ALICE,
                 target_instant=T0 - timedelta(hours=24), branch_name=drill_branch_name(T0),
                 created_at=T0, updated_at=T0)
