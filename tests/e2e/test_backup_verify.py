"""`/backup verify` end to end, and the per-table report people read: signed requests to
the real bot, a backup branch that is a real database compared with production."""

from __future__ import annotations

from tests.e2e.conftest import ALICE, OPS_CHANNEL
from tests.e2e.test_table_restores import run, seed_accounts, take_backup
from tests.support.bot_process import audit_entries
from tests.support.waits import wait_for_response


def verify(driver, slack, text: str, words: str) -> dict:
    url = slack.new_response_url()
    ack = driver.command("/backup", f"verify {text}", user_id=ALICE, channel_id=OPS_CHANNEL,
                         response_url=url)
    assert ack.status_code == 200
    if words in ack.text:
        return ack.json()
    answer = wait_for_response(slack, url, words, timeout=30)
    assert answer["response_type"] == "ephemeral"
    return answer


def report_lines(answer: dict) -> list[str]:
    text = next(b["text"]["text"] for b in answer["blocks"]
                if b["type"] == "section" and b["text"]["text"].startswith("```"))
    return text.strip("`").splitlines()


def test_backup_verify_compares_each_table_with_production_largest_difference_first(
        driver, neon, slack, bot_env):
    seed_accounts(neon, 20)
    run(neon, "main", "CREATE TABLE orders (id int PRIMARY KEY, created_at timestamptz "
        "DEFAULT now())")
    run(neon, "main", "INSERT INTO orders SELECT g FROM generate_series(1, 5) g")
    run(neon, "main", "CREATE TABLE settings (key text)")
    backup = take_backup(driver, slack, neon)
    run(neon, "main", "INSERT INTO orders SELECT g FROM generate_series(6, 40) g")
    run(neon, "main", "DELETE FROM accounts WHERE id <= 2")

    answer = verify(driver, slack, backup, "verified")
    assert f"Backup `{backup}` verified" in answer["blocks"][0]["text"]["text"]
    assert "moved on" in answer["blocks"][0]["text"]["text"]
    header, *lines = report_lines(answer)
    assert header.split() == ["table", "backup", "production", "differs"]
    names = [line.split()[0] for line in lines]
    assert names == ["orders", "accounts", "settings"]  # 35 rows apart, then 2, then none
    assert lines[0].split()[1:3] == ["5", "40"] and lines[1].split()[1:3] == ["20", "18"]
    assert lines[2].split()[1:4] == ["0", "0", "no"]
    entries = [e["action"] for e in audit_entries(bot_env) if e["subject"] == backup]
    assert "backup.verified" in entries


def test_backup_verify_refuses_what_is_not_a_backup(driver, neon, slack):
    assert "neither a backup" in verify(driver, slack, "main", "neither a backup")["text"]
    assert "no branch named" in verify(driver, slack, "backup-20200101-000000",
                                       "no branch named")["text"]
    assert "exactly one" in verify(driver, slack, "", "exactly one")["text"]
