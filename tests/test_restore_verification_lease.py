"""Regression: a verification longer than the lease was taken over by another worker
(restores renewed their lease only while waiting on Neon). Now the heartbeat keeps it:
with a verification slowed to three lease periods and a second worker polling all along,
the restore is verified once and shown on one card."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.domain.requests import RequestState
from bot.domain.verification import VerificationReport
from bot.neon.models import BranchChange, Database, Endpoint, Operation
from bot.services.ports import MessageRef
from bot.services.restores import RestoreService
from storage import SqlStore
from tests.support.restore_stubs import Directory, RecordingNeon

LEASE = 0.5
BEAT = 0.1


class ObedientNeon(RecordingNeon):
    """Creates the restore branch at once and has it ready."""

    def create_branch(self, name: str, **kwargs: Any) -> BranchChange:
        self.mutations.append("create_branch")
        self.restored = self.backup.__class__(**{**self.backup.__dict__, "id": "br-restored",
                                                 "name": name})
        return BranchChange(branch=self.restored, operations=())

    def find_branch_by_name(self, name: str) -> Any:
        made = getattr(self, "restored", None)
        if made is not None and made.name == name:
            return made
        return super().find_branch_by_name(name)

    def wait_for_operations(self, operations: Any, *, timeout: float | None = None
                            ) -> list[Operation]:
        return []

    def wait_for_branch_ready(self, branch_id: str, timeout: float | None = None) -> Any:
        return self.restored

    def list_endpoints(self) -> list[Endpoint]:
        return [Endpoint(id=f"ep-{b}", branch_id=b, type="read_write", host="h",
                         current_state="idle")
                for b in ("br-restored", self.backup.id, self.main.id)]

    def list_databases(self, branch_id: str) -> list[Database]:
        return [Database("neondb", "neondb_owner")]

    def connection_uri(self, branch_id: str, database_name: str, role_name: str,
                       pooled: bool = False, endpoint_id: str | None = None) -> str:
        return f"postgresql://{branch_id}"


class CountingCards:
    def __init__(self) -> None:
        self.posted: list[str] = []
        self.lock = threading.Lock()

    def request_changed(self, request: Any) -> MessageRef | None:
        with self.lock:
            if request.card_ts is None:
                self.posted.append(request.id)
                return MessageRef("C0APPROVALS", f"{len(self.posted)}.0")
        return None

    def ask_approvers(self, request: Any) -> None:
        return None


def test_a_verification_of_three_lease_periods_runs_once_on_one_card(tmp_path: Path):
    store = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
    neon = ObedientNeon()
    cards = CountingCards()
    verifications: list[float] = []

    def slow_verifier(target: str, source: str, **kwargs: Any) -> VerificationReport:
        verifications.append(time.monotonic())
        time.sleep(LEASE * 3)
        return VerificationReport(ok=True, compared_tables=1, tables=(), missing_in_target=(),
                                  extra_in_target=(), checks=(), seconds=LEASE * 3,
                                  error=None, compared_with=kwargs["compared_with"])

    def service(worker: str) -> RestoreService:
        restores = RestoreService(store, neon, Directory(), cards, slow_verifier,
                                  project_id="proj-x", required_approvals=1,
                                  approval_ttl=timedelta(minutes=30),
                                  approvers_configured=True, worker_id=worker)
        restores.work.lease_seconds, restores.work.heartbeat_seconds = LEASE, BEAT
        return restores

    first, second = service("first"), service("second")
    request = first.request_from_branch("U0ALICE", "backup-20261120-101500", "drill",
                                        channel_id=None, response_url=None)
    first.approve(request.id, "U0BOB", shown_on=None)

    worker = threading.Thread(target=first.advance, args=(request.id,))
    worker.start()
    while not (store.requests.lease_of(request.id) or ("",))[0].startswith("first/"):
        time.sleep(0.005)  # the first worker has it
    refused = 0
    while worker.is_alive():  # the second worker polls all along, as the reconciler does
        if second.advance(request.id) is None:  # the first still holds it
            refused += 1
        time.sleep(BEAT / 2)
    worker.join()

    finished = store.requests.get(request.id)
    assert finished is not None and finished.state == RequestState.SUCCEEDED
    assert len(verifications) == 1
    assert refused >= LEASE * 3 / BEAT  # it asked all through the verification
    assert cards.posted == [request.id]  # one card, updated in place
    assert neon.mutations == ["create_branch"]
    actions = [e.action for e in store.audit_for(request.id)]
    assert actions.count("request.succeeded") == 1
    store.close()
