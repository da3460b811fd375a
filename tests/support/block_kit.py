"""Slack's Block Kit limits, checked: `problems(payload, surface)` lists every limit a
message or view breaks, said so a person can fix it ([] when it fits).

The limits are Slack's published ones (Block Kit reference: blocks, composition objects,
block elements, surfaces):

- blocks: 50 in a message, 100 in a modal or Home tab view; `block_id` at most 255;
- section: `text` at most 3000 characters, at most 10 `fields` of at most 2000 each, and
  either `text` or `fields`;
- header: plain_text, at most 150; context: at most 10 elements;
- actions: at most 25 elements; buttons: `text` plain_text at most 75, `value` at most
  2000, `action_id` at most 255, `url` at most 3000, style `primary` or `danger`;
- a message's top-level `text` at most 40000 (Slack truncates beyond), and a view's
  `title`, `submit`, `close` plain_text at most 24, `private_metadata` at most 3000;
- text objects are `plain_text` or `mrkdwn` with a non-empty `text`.

Use it from any test: `assert problems(message) == []`.
"""

from __future__ import annotations

from typing import Any

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
LIMITS = {
    "block_id": 255, "section_text": 3000, "field": 2000, "fields": 10, "header": 150,
    "context_elements": 10, "actions_elements": 25, "button_text": 75, "button_value": 2000,
    "action_id": 255, "url": 3000, "message_text": 40000, "view_title": 24,
    "private_metadata": 3000,
}
KNOWN_BLOCKS = {"section", "header", "context", "actions", "divider", "image", "input",
                "rich_text", "file", "video", "markdown"}


def _text_object(obj: Any, where: str, *, plain_only: bool = False,
                 limit: int | None = None) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: not a text object"]
    found = []
    kind = obj.get("type")
    if kind not in ("plain_text", "mrkdwn") or (plain_only and kind != "plain_text"):
        found.append(f"{where}: text type {kind!r}" + (" (must be plain_text)"
                                                       if plain_only else ""))
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        found.append(f"{where}: empty text")
    elif limit is not None and len(text) > limit:
        found.append(f"{where}: {len(text)} characters, at most {limit}")
    return found


def _button(element: dict[str, Any], where: str) -> list[str]:
    found = _text_object(element.get("text"), f"{where}.text", plain_only=True,
                         limit=LIMITS["button_text"])
    if len(str(element.get("value", ""))) > LIMITS["button_value"]:
        found.append(f"{where}: value over {LIMITS['button_value']} characters")
    if len(str(element.get("action_id", ""))) > LIMITS["action_id"]:
        found.append(f"{where}: action_id over {LIMITS['action_id']} characters")
    if len(str(element.get("url", ""))) > LIMITS["url"]:
        found.append(f"{where}: url over {LIMITS['url']} characters")
    if "style" in element and element["style"] not in ("primary", "danger"):
        found.append(f"{where}: style {element['style']!r}")
    return found


def _element(element: Any, where: str) -> list[str]:
    if not isinstance(element, dict):
        return [f"{where}: not an element"]
    if element.get("type") == "button":
        return _button(element, where)
    return []


def block_problems(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"{where}: not a block"]
    kind = block.get("type")
    found: list[str] = []
    if kind not in KNOWN_BLOCKS:
        found.append(f"{where}: unknown block type {kind!r}")
    if len(str(block.get("block_id", ""))) > LIMITS["block_id"]:
        found.append(f"{where}: block_id over {LIMITS['block_id']} characters")
    if kind == "section":
        if "text" not in block and "fields" not in block:
            found.append(f"{where}: a section needs text or fields")
        if "text" in block:
            found += _text_object(block["text"], f"{where}.text", limit=LIMITS["section_text"])
        fields = block.get("fields") or []
        if len(fields) > LIMITS["fields"]:
            found.append(f"{where}: {len(fields)} fields, at most {LIMITS['fields']}")
        for n, item in enumerate(fields):
            found += _text_object(item, f"{where}.fields[{n}]", limit=LIMITS["field"])
        if "accessory" in block:
            found += _element(block["accessory"], f"{where}.accessory")
    elif kind == "header":
        found += _text_object(block.get("text"), f"{where}.text", plain_only=True,
                              limit=LIMITS["header"])
    elif kind == "context":
        elements = block.get("elements") or []
        if not elements or len(elements) > LIMITS["context_elements"]:
            found.append(f"{where}: {len(elements)} elements, 1 to "
                         f"{LIMITS['context_elements']}")
        for n, item in enumerate(elements):
            if isinstance(item, dict) and item.get("type") in ("plain_text", "mrkdwn"):
                found += _text_object(item, f"{where}.elements[{n}]",
                                      limit=LIMITS["section_text"])
    elif kind == "actions":
        elements = block.get("elements") or []
        if not elements or len(elements) > LIMITS["actions_elements"]:
            found.append(f"{where}: {len(elements)} elements, 1 to "
                         f"{LIMITS['actions_elements']}")
        found += [p for n, e in enumerate(elements) for p in _element(e, f"{where}[{n}]")]
    return found


def problems(payload: dict[str, Any], surface: str = "message") -> list[str]:
    """Every Block Kit limit `payload` breaks. `surface`: "message" (chat.postMessage,
    chat.update, responses), "modal" or "home"."""
    found: list[str] = []
    blocks = payload.get("blocks") or []
    most = MESSAGE_BLOCKS if surface == "message" else VIEW_BLOCKS
    if len(blocks) > most:
        found.append(f"{len(blocks)} blocks, at most {most} in a {surface}")
    for n, block in enumerate(blocks):
        found += block_problems(block, f"blocks[{n}]")
    if surface == "message":
        text = payload.get("text")
        if not isinstance(text, str) or not text:
            found.append("a message needs a top-level text (notifications, screen readers)")
        elif len(text) > LIMITS["message_text"]:
            found.append(f"text: {len(text)} characters, at most {LIMITS['message_text']}")
    else:
        if payload.get("type") != surface:
            found.append(f"view type {payload.get('type')!r}, expected {surface!r}")
        for key in ("title", "submit", "close"):
            if payload.get(key) is not None:  # Slack's stored views say null
                found += _text_object(payload[key], key, plain_only=True,
                                      limit=LIMITS["view_title"])
        if len(str(payload.get("private_metadata", ""))) > LIMITS["private_metadata"]:
            found.append("private_metadata over 3000 characters")
    return found
