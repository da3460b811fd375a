"""An approval is bound to a hash of what will run: if the stored plan is changed after
the approval (by anyone with access to the store), nothing is sent to Neon."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from bot.domain.requests import RequestState
from storage import SqlStore
from tests.support.restore_stubs import RecordingNeon, restore_service


def test_a_plan_edited_after_approval_is_refused_before_neon_is_called(tmp_path: Path):
    store = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
    neon = RecordingNeon()
    service = restore_service(store, neon)
    request = service.request_from_branch("U0ALICE", "backup-20261120-101500", "",
                                          channel_id=None, response_url=None)
    approved = service.approve(request.id, "U0BOB", shown_on=None)
    assert approved.state == RequestState.APPROVED

    with store.engine.begin() as conn:  # someone points the approved request elsewhere
        conn.execute(text("UPDATE change_requests SET source_branch_id = 'br-attacker' "
                          "WHERE id = :id"), {"id": request.id})

    finished = service.advance(request.id)
    assert finished is not None and finished.state == RequestState.FAILED
    assert "changed after it was approved" in (finished.error or "")
    assert neon.mutations == []
    assert [e.action for e in store.audit_for(request.id)][-1] == "request.failed"
    store.close()
