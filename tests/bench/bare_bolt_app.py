"""A bare Bolt app on Lifeguard's own server stack (waitress + Bolt's WSGI adapter through
bot.web), for the acknowledgement-latency benchmark: the same work minus Lifeguard's."""

from __future__ import annotations

import os

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.web import make_wsgi_app, serve


def main() -> None:
    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = App(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"],
              token_verification_enabled=False, process_before_response=False)

    @app.command("/backup")
    def backup(ack: Ack) -> None:
        ack(text="ok")

    serve(make_wsgi_app(app, lambda: None), int(os.environ["PORT"]))


if __name__ == "__main__":
    main()
