"""Text made safe for Slack's mrkdwn, so Slack shows it as written: the one escaping function.

Slack reads `&`, `<` and `>` as control characters in mrkdwn (and in the top-level `text`
of a message, which is mrkdwn too), also inside code spans: `<!channel>` pings a channel,
`<@U…>` a person, `<https://…|click here>` is a link that shows other words, and a `<branch>`
is markup that does not show. Slack's rule is to write them as `&amp;`, `&lt;` and `&gt;`
wherever they mean themselves; nothing else is encoded.

The rule Lifeguard keeps:

- Lifeguard's own text that means `<`, `>` or `&` literally (a usage's `<branch>` or
  `<when>`, an example condition `id <= 5`) goes through `escape` where it is written:
  the whole literal (`RESTORE_USAGE = escape("…")`), or the literal parts of a sentence
  that also holds composed text (`escape("… `<when>` is ") + WHEN_FORMATS`).
- A value from outside (a reason, a title or note someone typed; a branch, database,
  schema, table or column name from Neon or PostgreSQL; an error message from Neon,
  PostgreSQL, Slack or any exception) goes through `escape` exactly where it is
  interpolated into mrkdwn: into a sentence (an error's message, a verification summary,
  an alert) or, by a Block Kit builder, into a block.
- What comes out of that composing is mrkdwn-ready and is never escaped again: the `str()`
  of a LifeguardError, `explain_neon_error`, `VerificationReport.summary()` and a table's
  note, the stored `error` of a request, backup or drill, an Alert's texts, a health
  check's value and problems. They may hold Lifeguard's own markup (the mentions it means,
  `<!date^…>` tokens, channel links, code spans), which escaping would break.
- Plain-text objects (`plain_text`: button texts, modal titles, hints, labels) are not
  mrkdwn, nor is what the command line prints: what goes into them stays plain and is not
  escaped.

So every value is escaped once, where it meets mrkdwn: nothing is missed, and nothing
shows as `&amp;lt;`.
"""

from __future__ import annotations

_SLACK_CONTROL = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape(text: str) -> str:
    """`text` with Slack's control characters `&`, `<` and `>` written as entities, so
    Slack shows it as it is and parses nothing in it."""
    return text.translate(_SLACK_CONTROL)
