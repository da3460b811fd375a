"""Every name Slack and Lifeguard share, in one place: slash commands, button action ids,
view callback ids and the form's block ids, and the events Lifeguard listens to.

The builders put these into messages and views; the listeners are registered on them;
`manifest.yml` declares the commands and events (tests/test_manifest.py keeps all three
in agreement). Approval buttons are part of the external contract (DESIGN.md).
"""

from __future__ import annotations

# Slash commands (manifest.yml: features.slash_commands)
BACKUP_COMMAND = "/backup"
RESTORE_COMMAND = "/restore"
DRILL_COMMAND = "/drill"
INCIDENT_COMMAND = "/incident"

# Buttons on approval cards; value: the request id
APPROVE = "request.approve"
REJECT = "request.reject"
CANCEL = "request.cancel"

# Buttons on the private `/backup prune` plan; value: the plan's hash
PRUNE_CONFIRM = "backup.prune.confirm"
PRUNE_CANCEL = "backup.prune.cancel"

# The drill reminder's "Start drill" button; value: "start"
DRILL_START = "drill.start"

# On every request card and failure alert (DESIGN.md); value: the request id, or empty
INCIDENT_OPEN = "incident.open"

# The form `/restore` alone opens, and its fields (block id = action id)
RESTORE_FORM = "restore.form"
FORM_WHEN = "when"
FORM_SOURCE = "source"
FORM_REASON = "reason"

# Events (manifest.yml: settings.event_subscriptions.bot_events)
APP_HOME_OPENED = "app_home_opened"

# What Lifeguard has listeners for (tests/test_manifest.py checks these against the
# register functions): a request naming one of these that Bolt calls unhandled was not
# acknowledged in time, rather than unknown.
COMMANDS = frozenset({BACKUP_COMMAND, RESTORE_COMMAND, DRILL_COMMAND, INCIDENT_COMMAND})
BUTTONS = frozenset({APPROVE, REJECT, CANCEL, PRUNE_CONFIRM,
                     PRUNE_CANCEL, DRILL_START, INCIDENT_OPEN})
FORMS = frozenset({RESTORE_FORM})
