"""Each timeline line is posted in the incident's channel exactly once, however many
callers post at once (threads, two stores as two replicas, two processes), and a line
whose poster died is posted later, never lost, and not twice when Slack had taken it.
On SQLite and PostgreSQL (the `database_url` fixture), with the real store."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.domain.incident_timeline import LIFEGUARD, TimelineEntry
from bot.domain.incidents import Incident, IncidentState, IncidentStatus
from bot.services.incident_lines import LINE_LEASE, LINE_RETRY, TimelinePoster
from handlers.incident_room import SlackIncidentRoom
from storage import SqlStore
from tests.support.fake_slack import FakeSlack
from tests.support.handler_fakes import ALICE, T0

CHANNEL = "C0INC"


def make_incident() -> Incident:
    return Incident(id="0a1b2c3d", title="Orders emptied", state=IncidentState.OPEN,
                    status=IncidentStatus.INVESTIGATING, opened_by=ALICE, lead=ALICE,
                    day="20260113", slug="orders-emptied", created_at=T0, updated_at=T0,
                    channel_name="inc-20260113-orders-emptied", channel_id=CHANNEL)


def line(n: int) -> TimelineEntry:
    return TimelineEntry("0a1b2c3d", f"note:{n:03d}", T0 + timedelta(seconds=n), LIFEGUARD,
                         f"line {n}")


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


class Room:
    """The channel, in memory: what was posted and deleted; posting takes a moment, so
    racing callers overlap."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.lock = threading.Lock()
        self.posted: list[tuple[str, str]] = []  # (key, ts)
        self.deleted: list[str] = []
        self.searched: list[datetime] = []
        self.during_post: Any = None  # run inside the next post, once

    def post_entry(self, incident: Incident, entry: TimelineEntry) -> str:
        time.sleep(self.pause)
        with self.lock:
            ts = f"{1700000000 + len(self.posted)}.000100"
            self.posted.append((entry.key, ts))
        hook, self.during_post = self.during_post, None
        if hook:
            hook()
        return ts

    def find_entry(self, incident: Incident, entry: TimelineEntry,
                   since: datetime) -> str | None:
        self.searched.append(since)
        return next((ts for key, ts in self.posted
                     if key == entry.key and ts not in self.deleted), None)

    def delete_entry(self, incident: Incident, ts: str) -> None:
        self.deleted.append(ts)

    def shown(self) -> Counter[str]:
        return Counter(key for key, ts in self.posted if ts not in self.deleted)


def test_of_callers_racing_for_a_line_exactly_one_claims_it(database_url: str) -> None:
    with SqlStore(database_url) as one, SqlStore(database_url) as two:
        for n in range(20):
            assert one.incident_entries.add(line(n))
        barrier = threading.Barrier(6)

        def claims(worker: int) -> list[str]:
            store = one if worker % 2 else two
            barrier.wait()
            return [line(n).key for n in range(20)
                    if store.incident_entries.claim("0a1b2c3d", line(n).key, f"w{worker}", T0,
                                                    LINE_LEASE)]

        with ThreadPoolExecutor(6) as pool:
            won = [key for keys in pool.map(claims, range(6)) for key in keys]
        assert sorted(won) == [line(n).key for n in range(20)]  # each once, none lost


def test_two_replicas_posting_the_same_lines_post_each_once(database_url: str) -> None:
    room = Room(pause=0.002)
    with SqlStore(database_url) as one, SqlStore(database_url) as two:
        posters = [TimelinePoster(s.incident_entries, room, worker_id=f"replica-{n}")
                   for n, s in enumerate((one, two))]
        for n in range(25):
            one.incident_entries.add(line(n))
        barrier = threading.Barrier(4)

        def post_all(worker: int) -> None:
            barrier.wait()
            posters[worker % 2].post_pending(make_incident())

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post_all, range(4)))
        assert room.shown() == Counter({line(n).key: 1 for n in range(25)})
        assert not room.deleted
        recorded = {e.key: e.posted_ts for e in two.incident_entries.of("0a1b2c3d")}
        assert recorded == dict(room.posted)


def test_a_claim_whose_poster_died_is_posted_once_its_lease_ran_out(database_url: str) -> None:
    clock, room = Clock(), Room()
    with SqlStore(database_url) as store:
        poster = TimelinePoster(store.incident_entries, room, worker_id="survivor", now=clock)
        store.incident_entries.add(line(1))
        # a poster claims the line, then dies before Slack is called
        assert store.incident_entries.claim("0a1b2c3d", line(1).key, "dead", T0, LINE_LEASE)
        clock.at = T0 + LINE_LEASE - timedelta(seconds=1)
        poster.post_pending(make_incident())
        assert room.posted == []  # its claim still holds
        clock.at = T0 + LINE_LEASE + timedelta(seconds=1)
        poster.post_pending(make_incident())
        assert room.shown() == Counter({line(1).key: 1})
        assert room.searched == [T0]  # looked for the dead poster's message first
        [entry] = store.incident_entries.of("0a1b2c3d")
        assert entry.posted_ts == room.posted[0][1]
        poster.post_pending(make_incident())
        assert len(room.posted) == 1


def test_a_poster_that_died_after_slack_took_the_line_is_not_posted_again(
        database_url: str) -> None:
    clock, room = Clock(), Room()
    with SqlStore(database_url) as store:
        store.incident_entries.add(line(1))
        dying = TimelinePoster(store.incident_entries, room, worker_id="dying", now=clock)

        def die() -> None:
            raise SystemExit("killed between Slack's answer and the store")

        room.during_post = die
        with pytest.raises(SystemExit):
            dying.post(make_incident(), line(1))
        [(key, ts)] = room.posted
        assert store.incident_entries.of("0a1b2c3d")[0].posted_ts is None
        clock.at = T0 + LINE_LEASE + timedelta(seconds=1)
        TimelinePoster(store.incident_entries, room, worker_id="next",
                       now=clock).post_pending(make_incident())
        assert room.posted == [(key, ts)]  # found, not posted again
        assert store.incident_entries.of("0a1b2c3d")[0].posted_ts == ts


def test_a_slow_poster_whose_claim_ran_out_deletes_its_own_second_copy(
        database_url: str) -> None:
    clock, room = Clock(), Room()
    with SqlStore(database_url) as store:
        store.incident_entries.add(line(1))
        slow = TimelinePoster(store.incident_entries, room, worker_id="slow", now=clock)
        fast = TimelinePoster(store.incident_entries, room, worker_id="fast", now=clock)

        def meanwhile() -> None:  # Slack held the slow post longer than its lease
            clock.at = T0 + LINE_LEASE + timedelta(seconds=1)
            room.find_entry = lambda *_: None  # type: ignore[method-assign]
            fast.post(make_incident(), line(1))

        room.during_post = meanwhile
        slow.post(make_incident(), line(1))
        [(_, slow_ts), (_, fast_ts)] = room.posted
        assert room.deleted == [slow_ts]
        assert room.shown() == Counter({line(1).key: 1})
        assert store.incident_entries.of("0a1b2c3d")[0].posted_ts == fast_ts


def test_a_line_slack_refused_is_posted_at_the_next_try_after_the_pause(
        database_url: str) -> None:
    clock, room = Clock(), Room()
    with SqlStore(database_url) as store:
        poster = TimelinePoster(store.incident_entries, room, worker_id="one", now=clock)
        assert poster.add(line(1))
        refused = True

        def post(incident: Incident, entry: TimelineEntry) -> str:
            if refused:
                raise RuntimeError("Slack refused posting a timeline line (`fatal_error`).")
            return Room.post_entry(room, incident, entry)

        room.post_entry = post  # type: ignore[method-assign]
        poster.post(make_incident(), line(1))  # never raises
        refused = False
        poster.post_pending(make_incident())
        assert room.posted == []  # not before the pause
        clock.at = T0 + LINE_RETRY + timedelta(seconds=1)
        poster.post_pending(make_incident())
        assert room.shown() == Counter({line(1).key: 1})


def test_the_reconciler_leaves_a_new_line_to_its_recorder_then_posts_it(
        database_url: str) -> None:
    """A line recorded and never claimed (its recorder died in between) is posted by the
    reconciler's round, but only after the recorder's reservation: posting it meanwhile
    could put it before a line the recorder is still posting."""
    clock, room = Clock(), Room()
    with SqlStore(database_url) as store:
        poster = TimelinePoster(store.incident_entries, room, worker_id="one", now=clock)
        assert poster.add(line(1)) and not poster.add(line(1))
        poster.post_pending(make_incident(), overdue_only=True)
        assert room.posted == []
        clock.at = T0 + LINE_RETRY + timedelta(seconds=1)
        poster.post_pending(make_incident(), overdue_only=True)
        assert room.shown() == Counter({line(1).key: 1})
        assert room.searched == []  # nobody had claimed it: nothing to look for


def test_a_closed_or_channelless_incident_gets_no_lines(database_url: str) -> None:
    room = Room()
    with SqlStore(database_url) as store:
        poster = TimelinePoster(store.incident_entries, room, worker_id="one")
        store.incident_entries.add(line(1))
        poster.post_pending(replace(make_incident(), state=IncidentState.CLOSED))
        poster.post_pending(replace(make_incident(), channel_id=None))
        assert room.posted == []
        assert store.incident_entries.of("0a1b2c3d")[0].posted_ts is None


# --- two processes, the real Slack room, the fake Slack over HTTP ----------------------

def _post_in_a_process(database_url: str, api_url: str, start: Any, worker: str) -> None:
    with SqlStore(database_url, migrate=False) as store:
        room = SlackIncidentRoom(WebClient(token="xoxb-test-token", base_url=api_url),
                                 "C0ALERTS")
        poster = TimelinePoster(store.incident_entries, room, worker_id=worker)
        start.wait(30)
        poster.post_pending(make_incident())


def test_two_processes_posting_through_slack_post_each_line_once(database_url: str) -> None:
    with FakeSlack() as slack, SqlStore(database_url) as store:
        slack.add_channel(CHANNEL, name="inc-20260113-orders-emptied")
        for n in range(20):
            store.incident_entries.add(line(n))
        spawn = multiprocessing.get_context("spawn")
        start = spawn.Event()
        processes = [spawn.Process(target=_post_in_a_process,
                                   args=(database_url, slack.api_url, start, f"p{n}"))
                     for n in range(2)]
        for process in processes:
            process.start()
        time.sleep(1.0)  # both imported and waiting
        start.set()
        for process in processes:
            process.join(60)
            assert process.exitcode == 0
        messages = slack.messages(CHANNEL)
        keys = Counter(m["metadata"]["event_payload"]["key"] for m in messages)
        assert keys == Counter({line(n).key: 1 for n in range(20)})
        recorded = {e.key: e.posted_ts for e in store.incident_entries.of("0a1b2c3d")}
        assert recorded == {m["metadata"]["event_payload"]["key"]: m["ts"] for m in messages}
        assert not slack.calls_to("chat.delete") and not slack.server_errors


def test_the_slack_room_finds_a_line_it_posted_and_deletes_a_copy() -> None:
    with FakeSlack() as slack:
        slack.add_channel(CHANNEL, name="inc-20260113-orders-emptied")
        room = SlackIncidentRoom(WebClient(token=slack.bot_token, base_url=slack.api_url),
                                 "C0ALERTS")
        before = datetime.fromtimestamp(time.time()).astimezone()
        ts = room.post_entry(make_incident(), line(1))
        room.post_entry(make_incident(), line(2))
        assert room.find_entry(make_incident(), line(1), before) == ts
        assert room.find_entry(make_incident(), line(3), before) is None
        room.delete_entry(make_incident(), ts)
        assert room.find_entry(make_incident(), line(1), before) is None
        room.delete_entry(make_incident(), ts)  # gone already is fine
        assert [m["text"] for m in slack.messages(CHANNEL)] == [":gear: Line 2"]


def _post_with_a_short_lease(database_url: str, api_url: str) -> None:
    with SqlStore(database_url, migrate=False) as store:
        room = SlackIncidentRoom(WebClient(token="xoxb-test-token", base_url=api_url),
                                 "C0ALERTS")
        TimelinePoster(store.incident_entries, room, worker_id="doomed",
                       lease=timedelta(seconds=3)).post_pending(make_incident())


def test_a_poster_killed_while_slack_took_its_line_is_taken_over_without_a_second_copy(
        database_url: str) -> None:
    with FakeSlack() as slack, SqlStore(database_url) as store:
        slack.add_channel(CHANNEL, name="inc-20260113-orders-emptied")
        store.incident_entries.add(line(1))
        held = slack.hold_answer("chat.postMessage")
        doomed = multiprocessing.get_context("spawn").Process(
            target=_post_with_a_short_lease, args=(database_url, slack.api_url))
        doomed.start()
        held.wait_reached()
        doomed.kill()  # SIGKILL: Slack has the line, the store never heard
        doomed.join(10)
        held.release()
        [message] = slack.messages(CHANNEL)
        assert store.incident_entries.of("0a1b2c3d")[0].posted_ts is None
        room = SlackIncidentRoom(WebClient(token=slack.bot_token, base_url=slack.api_url),
                                 "C0ALERTS")
        survivor = TimelinePoster(store.incident_entries, room, worker_id="survivor")
        survivor.post_pending(make_incident())  # the dead claim still holds: nothing
        assert store.incident_entries.of("0a1b2c3d")[0].posted_ts is None
        time.sleep(3.2)
        survivor.post_pending(make_incident())
        assert slack.messages(CHANNEL) == [message]  # found, not posted again
        assert store.incident_entries.of("0a1b2c3d")[0].posted_ts == message["ts"]
        assert len(slack.calls_to("chat.postMessage")) == 1
