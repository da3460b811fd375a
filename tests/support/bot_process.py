"""Runs the real bot, `python -m bot`, as a child process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.postgres import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-token"
APPROVALS_CHANNEL = "C0APPROVALS"
ALERTS_CHANNEL = "C0ALERTS"


def bot_environment(*, slack_api_url: str, neon_api_url: str, neon_api_key: str,
                    neon_project_id: str, database_url: str, **extra: str) -> dict[str, str]:
    """A complete environment for the bot; nothing is inherited from the test's own
    settings but PATH-like basics, so a developer's .env cannot leak in."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "PYTHONPATH", "TMPDIR")
           if key in os.environ}
    env |= {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_api_url,
        "NEON_API_KEY": neon_api_key,
        "NEON_PROJECT_ID": neon_project_id,
        "NEON_API_URL": neon_api_url,
        "DATABASE_URL": database_url,
        "APPROVALS_CHANNEL": APPROVALS_CHANNEL,
        "ALERTS_CHANNEL": ALERTS_CHANNEL,
        "RECONCILE_INTERVAL": "2s",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env |= extra
    return env


def run_bot_command(args: list[str], env: dict[str, str], cwd: Path | None = None,
                    timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot ARGS` to completion (doctor, migrate, audit …)."""
    return subprocess.run([sys.executable, "-m", "bot", *args], env=_with_project(env),
                          cwd=cwd or tempfile.gettempdir(), capture_output=True, text=True,
                          timeout=timeout)


def _with_project(env: dict[str, str]) -> dict[str, str]:
    # The package is importable from the project folder even when not pip-installed;
    # the process itself runs from another directory, as a deployment would.
    path = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{path}" if path
            else str(PROJECT_ROOT)}


class BotProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = _with_project({**env, "PORT": str(self.port)})
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the bot
            prefix="lifeguard-bot-", suffix=".log", delete=False)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> BotProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot"], env=self.env, cwd=tempfile.gettempdir(),
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bot exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the bot did not become healthy in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash or an OOM kill would do."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> BotProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def audit_entries(env: dict[str, str]) -> list[dict[str, object]]:
    """The bot's audit trail, read the way an operator would: `python -m bot audit export`."""
    import json

    result = run_bot_command(["audit", "export", "--format", "jsonl"], env)
    if result.returncode != 0:
        raise RuntimeError(f"audit export failed: {result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
