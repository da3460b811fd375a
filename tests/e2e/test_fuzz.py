"""Hostile input against the running bot, through signed requests: 2,000+ texts over
/backup, /restore and /drill and tampered interaction payloads, with a fixed seed and a
time bound. Every one is answered with HTTP 200 within 3 s and reaches the person (in the
answer itself or at its response URL); none shows a traceback; none hits an unexpected
error in the bot; and Neon sees no mutation, since nothing in the mix may change it."""

from __future__ import annotations

import json
import random
import time
from typing import Any

from tests.e2e.conftest import ALICE, BOB, OPS_CHANNEL
from tests.support.bot_process import APPROVALS_CHANNEL

SEED = 20261201
TEXTS = 1700  # slash commands
PAYLOADS = 400  # interaction payloads
TIME_BOUND_SECONDS = 240
ANSWER_GOAL_SECONDS = 3.0

HOSTILE = [
    "<!channel>", "<!here>", "<@U0BOB00002>", "<https://evil.example|click here>", "&amp;",
    "<#C0OPS|ops>", "`code`", "*bold*", "'; DROP TABLE orders; --", "\x00", "\u202e", "😀",
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "-5 minutes ago", "99999999999 days ago",
    "2026-02-30 25:61", "24:00", "1e309 hours ago", "NaN", "-0", "0x1f", "restore-", "backup-",
    "backup-20261121-142500", "pre-restore-20261121-142500", "restore-20261121-1425",
    "x" * 600, "a" * 5000, " ", "\t\n", "help", "--replace", "--rows 1=1", "%s%s%n",
    "${jndi:ldap://x}", "{{7*7}}", "../../etc/passwd", "\\", '"', "'", "⁄", "١٢:٣٠",
]
# Words that would change Neon (a backup, a drill, an export) are left out of the mix;
# everything else a person might type is in it.
SUBCOMMANDS = {
    "/backup": ["", "list", "delete", "health", "prune", "schedule", "help", "verify",
                "exports", "bogus", "LIST", "Delete"],
    "/restore": ["", "from", "promote", "status", "cancel", "log", "table", "export", "help",
                 "14:25", "yesterday", "2026-13-01", "5 minutes ago"],
    "/drill": ["status", "history", "help", "stop", "bogus"],
}
ACTIONS = ["request.approve", "request.reject", "request.cancel", "backup.delete.confirm",
           "backup.delete.cancel", "backup.prune.confirm", "drill.start", "incident.open",
           "no.such.action"]


def hostile_text(rng: random.Random) -> str:
    words = [rng.choice(HOSTILE) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.3:
        words.append("".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 20))))
    return " ".join(words)


def hostile_value(rng: random.Random) -> Any:
    return rng.choice([None, 42, -1, 1.5, True, [], ["a"], {}, {"id": "x"}, "", "0" * 300,
                       hostile_text(rng), "req-deadbeef", "r" * 8])


def tampered_payload(rng: random.Random) -> dict[str, Any]:
    """A block_actions or view_submission payload with parts missing or of the wrong
    shape, as an attacker or a broken client would send it."""
    user: Any = rng.choice([{"id": BOB, "username": "bob", "team_id": "T0LIFEGUARD"},
                            {"id": hostile_value(rng)}, None, "U0BOB", {}])
    if rng.random() < 0.7:
        action: Any = {"type": "button", "action_id": rng.choice(ACTIONS),
                       "block_id": "b", "value": hostile_value(rng),
                       "action_ts": f"{time.time():.6f}"}
        payload: dict[str, Any] = {
            "type": "block_actions", "user": user, "team": {"id": "T0LIFEGUARD"},
            "api_app_id": "A0LIFEGUARD", "token": "legacy", "trigger_id": "1.2.x",
            "container": rng.choice([{"type": "message", "message_ts": "1.1",
                                      "channel_id": APPROVALS_CHANNEL}, None, {}, "x"]),
            "channel": rng.choice([{"id": APPROVALS_CHANNEL}, None, 7]),
            "message": rng.choice([{"ts": "1.1", "text": "card"}, None, []]),
            "response_url": "http://127.0.0.1:9/nowhere",
            "actions": rng.choice([[action], [], None, action, [action, action], [42]]),
        }
    else:
        values: Any = rng.choice([
            {"when": {"when": {"type": "datetimepicker",
                               "selected_date_time": hostile_value(rng)}}},
            {"when": {"when": {"type": "datetimepicker", "selected_date_time": 253402300800}}},
            {"when": {"when": {"type": "datetimepicker", "selected_date_time": -86400}}},
            {"reason": {"reason": {"type": "plain_text_input", "value": hostile_value(rng)}}},
            {"source": 3}, None, [], "state"])
        payload = {
            "type": "view_submission", "user": user, "team": {"id": "T0LIFEGUARD"},
            "api_app_id": "A0LIFEGUARD", "token": "legacy", "trigger_id": "1.2.x",
            "view": rng.choice([{"id": "V1", "type": "modal", "callback_id": "restore.form",
                                 "state": {"values": values}, "private_metadata": "",
                                 "hash": "h"},
                                {"id": "V1", "type": "modal", "callback_id": "restore.form"},
                                {"callback_id": hostile_value(rng)}, None]),
        }
    if rng.random() < 0.1:
        del payload["type"]
    return payload


def answerable(payload: dict[str, Any]) -> bool:
    """Whether the payload has Slack's envelope (a kind, the user as an object with an id,
    the channel as an object): only then can anyone be answered. Bolt itself cannot read
    an envelope of another shape, and the bot answers it 400, never 5xx."""
    user = payload.get("user")
    return ("type" in payload and isinstance(user, dict)
            and isinstance(user.get("id"), str) and bool(user["id"])
            and isinstance(payload.get("channel", {}), dict | None))


def test_fuzzed_commands_and_payloads_are_all_answered_and_change_nothing(
        driver, neon, slack, bot):
    rng = random.Random(SEED)
    started = time.monotonic()
    slow, errors, awaiting = [], [], []
    sent = 0
    for index in range(TEXTS + PAYLOADS):
        if time.monotonic() - started > TIME_BOUND_SECONDS:
            break
        sent += 1
        before = time.monotonic()
        if index < TEXTS:
            command = rng.choice(list(SUBCOMMANDS))
            text = f"{rng.choice(SUBCOMMANDS[command])} {hostile_text(rng)}".strip()
            url = slack.new_response_url(channel_id=OPS_CHANNEL, user_id=ALICE)
            response = driver.command(command, text, user_id=ALICE, channel_id=OPS_CHANNEL,
                                      response_url=url)
            answered_inline = bool(response.content.strip())
            if not answered_inline:
                awaiting.append((command, text, url, driver.last_trigger_id))
        else:
            payload = tampered_payload(rng)
            response = driver._post_form({"payload": json.dumps(payload)}, sign=True,
                                         timestamp=None, secret=None, retry_num=None,
                                         retry_reason=None)
        took = time.monotonic() - before
        # A body no person can be answered for (no kind, no user who clicked) gets 400;
        # everything else is answered with 200 and a private message.
        allowed = (200, 400) if index >= TEXTS and not answerable(payload) else (200,)
        if response.status_code not in allowed:
            errors.append((response.status_code, response.text[:200],
                           json.dumps(payload)[:400] if index >= TEXTS else text))
        if took > ANSWER_GOAL_SECONDS:
            slow.append(took)
        if "Traceback" in response.text:
            errors.append(("traceback", response.text[:200]))

    # Commands answered later (after ":mag: Checking…" or a deferred ack) must be answered.
    # (`/restore` alone is answered with a form: views.open with the command's trigger.)
    def answered(url: str, trigger_id: str) -> bool:
        return bool(slack.responses(url)) or any(
            call.args.get("trigger_id") == trigger_id for call in slack.calls_to("views.open"))

    deadline = time.monotonic() + 60
    unanswered = list(awaiting)
    while unanswered and time.monotonic() < deadline:
        unanswered = [item for item in unanswered if not answered(item[2], item[3])]
        time.sleep(0.5)
    later = [body for _, _, url, _ in awaiting for body in slack.responses(url)]
    log = bot.log()
    print(f"\nfuzz: {sent} requests ({min(sent, TEXTS)} commands, "
          f"{max(0, sent - TEXTS)} payloads) in {time.monotonic() - started:.0f} s; "
          f"{len(errors)} non-200 or traceback answers, {len(slow)} slower than "
          f"{ANSWER_GOAL_SECONDS:g} s, {len(unanswered)} unanswered, "
          f"{len(neon.mutations())} Neon mutations, "
          f"{log.count('Traceback')} tracebacks in the log")
    assert sent >= 2000
    assert errors == [], sorted({str(e)[:160] for e in errors})[:15]
    assert slow == []
    assert unanswered == [], unanswered[:10]
    assert not any("Traceback" in json.dumps(body) for body in later)
    assert neon.mutations() == []
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 1500):][:4000]
    assert slack.messages(OPS_CHANNEL) == [] or all(
        "<!channel>" not in m.get("text", "") for m in slack.messages(OPS_CHANNEL))
