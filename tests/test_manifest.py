"""manifest.yml, the listeners and the messages agree: every slash command, shortcut
callback id and event the manifest declares has a listener, and every listener is
declared; every button and form the builders put into messages has a listener, and every
button or form listener is one a builder uses. The listeners are read from the register
functions handlers.wiring.install calls on the Bolt app; `differences` is shown to catch a
planted mismatch of each kind."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain.retention import PruneCandidate, PrunePlan, RetentionPolicy
from bot.services.scheduled_backups import PruneView
from handlers import drill_blocks, health_blocks, ids, restore_blocks, wiring
from tests.support.handler_fakes import T0, make_request

ROOT = Path(__file__).resolve().parents[1]
EVENTS_URL_PATH = "/slack/events"


class RecordingApp:
    """Stands in for Bolt's App in the register functions: remembers each registration."""

    def __init__(self) -> None:
        self.listeners: dict[str, dict[str, Callable[..., Any]]] = defaultdict(dict)

    def _on(self, kind: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(listener: Callable[..., Any]) -> Callable[..., Any]:
            assert name not in self.listeners[kind], f"two {kind} listeners for {name}"
            self.listeners[kind][name] = listener
            return listener
        return register

    def command(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._on("command", name)

    def action(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._on("action", name)

    def view(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._on("view", name)

    def event(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._on("event", name)

    def shortcut(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._on("shortcut", name)


def registered() -> RecordingApp:
    app = RecordingApp()
    for module in wiring.LISTENER_MODULES:
        module.register(app)  # type: ignore[arg-type]
    return app


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text())
    return loaded


# --- what the builders put into messages ---------------------------------------------------


def _interactive_ids(message: dict[str, Any]) -> set[str]:
    """Action ids of the buttons of a message (not of a form's inputs, which Slack sends
    with the form's submission rather than as clicks)."""
    found: set[str] = set()
    for block in message.get("blocks", []):
        elements = block.get("elements", []) if block.get("type") == "actions" else []
        accessory = block.get("accessory")
        for element in [*elements, *([accessory] if accessory else [])]:
            if element.get("type") == "button":
                found.add(element["action_id"])
    return found


def built_messages() -> list[dict[str, Any]]:
    """A message from each builder that has buttons, in the state that shows them."""
    keep = PruneCandidate("backup-20260113-142500", T0, True, False, False)
    old = PruneCandidate("backup-20251201-030000", T0 - timedelta(days=43), True, False, False)
    prune = PruneView(PrunePlan(keep=(keep,), delete=(old,), reasons={keep.name: "daily"}),
                      "ab" * 32, RetentionPolicy(7, 4, 12), "UTC")
    return [restore_blocks.request_card(make_request()),
            health_blocks.prune_plan(prune),
            drill_blocks.drill_reminder(None, now=datetime.now(UTC))]


def built_forms() -> list[dict[str, Any]]:
    return [restore_blocks.restore_form(datetime.now(UTC))]


# --- the comparison ------------------------------------------------------------------------


def differences(manifest: dict[str, Any], app: RecordingApp,
                messages: list[dict[str, Any]], forms: list[dict[str, Any]]) -> list[str]:
    """Everything that does not agree, said so a person can fix it; [] when all agree."""
    features = manifest.get("features", {})
    settings = manifest.get("settings", {})
    found: list[str] = []

    def compare(what: str, declared: set[str], listened: set[str], where: str) -> None:
        found.extend(f"{what} {n} is in {where} but has no listener"
                     for n in sorted(declared - listened))
        found.extend(f"{what} {n} has a listener but is not in {where}"
                     for n in sorted(listened - declared))

    commands = features.get("slash_commands", [])
    compare("command", {c["command"] for c in commands}, set(app.listeners["command"]),
            "manifest.yml")
    compare("shortcut", {s["callback_id"] for s in features.get("shortcuts", [])},
            set(app.listeners["shortcut"]), "manifest.yml")
    events = settings.get("event_subscriptions", {}).get("bot_events", [])
    compare("event", set(events), set(app.listeners["event"]), "manifest.yml")
    compare("button", set().union(*map(_interactive_ids, messages)),
            set(app.listeners["action"]), "any message the builders make")
    compare("form", {f["callback_id"] for f in forms}, set(app.listeners["view"]),
            "any form the builders make")

    interactive = bool(app.listeners["action"] or app.listeners["view"]
                       or app.listeners["shortcut"])
    if settings.get("interactivity", {}).get("is_enabled", False) != interactive:
        found.append("settings.interactivity.is_enabled disagrees with the listeners")
    urls = {c.get("url") for c in commands}
    urls.add(settings.get("interactivity", {}).get("request_url"))
    urls.add(settings.get("event_subscriptions", {}).get("request_url"))
    if not settings.get("socket_mode_enabled") and not all(
            u and u.endswith(EVENTS_URL_PATH) for u in urls):
        found.append(f"every request URL must end in {EVENTS_URL_PATH}: {sorted(map(str, urls))}")
    return found


def test_the_manifest_the_listeners_and_the_messages_agree() -> None:
    assert differences(manifest(), registered(), built_messages(), built_forms()) == []


def test_the_commands_and_ids_are_the_ones_in_the_ids_module() -> None:
    # The error handler tells "not acknowledged in time" from "unknown" by these sets.
    app = registered()
    assert set(app.listeners["command"]) == ids.COMMANDS
    assert set(app.listeners["action"]) == ids.BUTTONS
    assert set(app.listeners["view"]) == ids.FORMS
    # the approval buttons are part of the external contract (DESIGN.md)
    assert (ids.APPROVE, ids.REJECT, ids.CANCEL) == ("request.approve", "request.reject",
                                                     "request.cancel")


def test_listeners_are_plain_module_level_functions() -> None:
    for kind, listeners in registered().listeners.items():
        for name, listener in listeners.items():
            assert "<locals>" not in listener.__qualname__, (kind, name)
            assert listener.__name__.startswith("handle_"), (kind, name)


def planted(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(manifest()))
    change(copy)
    return copy


@pytest.mark.parametrize(("change", "says"), [
    (lambda m: m["features"]["slash_commands"].pop(2), "command /drill has a listener but"),
    (lambda m: m["features"]["slash_commands"].append(
        {"command": "/lifeguard", "url": "https://h/slack/events"}),
     "command /lifeguard is in manifest.yml but has no listener"),
    (lambda m: m["features"].setdefault("shortcuts", []).append(
        {"callback_id": "lifeguard.menu"}), "shortcut lifeguard.menu is in manifest.yml"),
    (lambda m: m["settings"]["event_subscriptions"]["bot_events"].clear(),
     "event app_home_opened has a listener but"),
    (lambda m: m["settings"]["interactivity"].update(is_enabled=False),
     "interactivity.is_enabled"),
    (lambda m: m["settings"]["interactivity"].update(request_url="https://h/actions"),
     "must end in /slack/events"),
])
def test_a_planted_manifest_mismatch_is_caught(change: Callable[[dict[str, Any]], None],
                                               says: str) -> None:
    found = differences(planted(change), registered(), built_messages(), built_forms())
    assert any(says in f for f in found), found


def test_a_planted_button_without_a_listener_and_a_listener_without_a_button_are_caught(
        ) -> None:
    extra = {"blocks": [{"type": "actions", "elements": [
        {"type": "button", "action_id": "incident.unknown", "value": ""}]}]}
    found = differences(manifest(), registered(), [*built_messages(), extra], built_forms())
    assert found == ["button incident.unknown is in any message the builders make but has no "
                     "listener"]
    without_card = [m for m in built_messages() if ids.APPROVE not in _interactive_ids(m)]
    found = differences(manifest(), registered(), without_card, [])
    assert "button request.approve has a listener but is not in any message the builders " \
           "make" in found
    assert "form restore.form has a listener but is not in any form the builders make" in found


def iter_listener_args() -> Iterator[tuple[str, str]]:
    for listeners in registered().listeners.values():
        for listener in listeners.values():
            code = listener.__code__
            yield from ((listener.__name__, a) for a in code.co_varnames[:code.co_argcount])


def test_every_listener_argument_is_one_bolt_or_the_services_middleware_provides() -> None:
    # Bolt passes its own arguments by name, and every context entry: the services
    # middleware puts each Services field and the request's asker there.
    bolt_args = {"ack", "body", "command", "action", "view", "event", "respond", "client",
                 "context", "logger", "payload"}
    provided = bolt_args | set(wiring.Services.__dataclass_fields__) | {"asker"}
    assert {(f, a) for f, a in iter_listener_args() if a not in provided} == set()
