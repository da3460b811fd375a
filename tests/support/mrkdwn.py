"""What Slack would parse in a message: its mrkdwn texts and the `<…>` markup in them, and
the check that text from outside shows as text while Lifeguard's own markup still works.

A hostile value tries each kind of Slack markup at once: a channel-wide ping, a person's
mention, a link that shows other words, an ampersand and an `@here`. Shown as text, it
reads the same in Slack; parsed, it would ping and mislead.
"""

from __future__ import annotations

import json
import re
from typing import Any

HOSTILE = "<!channel> <@U0BOB00002> <https://evil.example|click here> & <!here>"
HOSTILE_SHOWN = ("&lt;!channel&gt; &lt;@U0BOB00002&gt; &lt;https://evil.example|click here"
                 "&gt; &amp; &lt;!here&gt;")

# The markup Lifeguard writes on purpose: mentions of the tests' people (U0 and capital
# letters, never the injected U0BOB00002), user-group mentions, date tokens, channel links
# and the permalink to a card. The placeholders of its usage texts (`<branch>`) are not
# markup: Lifeguard writes them escaped (`&lt;branch&gt;`), so a raw one is found here.
LIFEGUARD_MARKUP = re.compile(
    r"@U0[A-Z]+"
    r"|!subteam\^S[0-9A-Z]+"
    r"|!date\^[0-9]+\^[^|<>]*\|[^|<>]*"
    r"|#[CG][0-9A-Z]+"
    r"|https?://[^|<>\s]+/archives/[^|<>\s]+\|the card")
_MARKUP = re.compile(r"<([^<>]*)>")
# Escaping twice shows entities as text: `&amp;lt;` reads "&lt;" in Slack.
DOUBLE_ESCAPED = ("&amp;lt;", "&amp;gt;", "&amp;amp;")


def mrkdwn_texts(message: Any) -> list[str]:
    """Every text Slack reads as mrkdwn in a message, view or list of blocks: the top-level
    `text` and each `mrkdwn` text object. `plain_text` objects are left out (Slack parses
    nothing in them)."""
    texts: list[str] = []

    def walk(node: Any, top: bool) -> None:
        if isinstance(node, str) and node.startswith("[") and not top:
            try:
                node = json.loads(node)  # blocks sent form-encoded arrive as JSON text
            except ValueError:
                return
        if isinstance(node, dict):
            if top and isinstance(node.get("text"), str):
                texts.append(node["text"])
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                texts.append(node["text"])
            for key, value in node.items():
                if key != "text" or not isinstance(value, str):
                    walk(value, False)
        elif isinstance(node, list):
            for item in node:
                walk(item, False)

    walk(message, True)
    return texts


def outside_markup(message: Any) -> list[str]:
    """The `<…>` markup in the message's mrkdwn that Lifeguard did not write on purpose."""
    return [token for text in mrkdwn_texts(message) for token in _MARKUP.findall(text)
            if not LIFEGUARD_MARKUP.fullmatch(token)]


def assert_markup_is_lifeguards(message: Any) -> None:
    """Slack would parse only Lifeguard's own markup here, and nothing is escaped twice."""
    assert outside_markup(message) == [], mrkdwn_texts(message)
    shown = "\n".join(mrkdwn_texts(message))
    assert not any(twice in shown for twice in DOUBLE_ESCAPED), shown


def assert_shows_as_text(message: Any, shown: str = HOSTILE_SHOWN) -> None:
    """The hostile value is in the message, escaped once, and parses as nothing."""
    assert_markup_is_lifeguards(message)
    assert shown in "\n".join(mrkdwn_texts(message)), mrkdwn_texts(message)
