"""The container image's rules, checked on the Dockerfile itself (no container daemon runs
here): not root, a health check on /healthz with Python's urllib, no install step but
`scripts/setup` (the one CI runs), secrets kept out by .dockerignore; and the health
check's own command, run against the real bot."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bot_process import PROJECT_ROOT, BotProcess, bot_environment
from tests.support.postgres import free_port

DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            result.append((keyword.upper(), arguments.strip()))
            pending = ""
    assert not pending, "a continued line at the end of the Dockerfile"
    return result


def exec_form(arguments: str) -> list[str]:
    """The argument list of an exec-form CMD (`["a", "b"]`); fails on the shell form."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def test_the_image_starts_from_python_3_11_slim(steps):
    assert steps[0] == ("FROM", "python:3.11-slim-bookworm")
    assert [k for k, _ in steps].count("FROM") == 1


def test_the_bot_runs_as_an_unprivileged_user(steps):
    users = [(i, args) for i, (keyword, args) in enumerate(steps) if keyword == "USER"]
    assert users, "no USER: the bot would run as root"
    last_index, last_user = users[-1]
    name = last_user.split(":")[0]
    assert name not in ("root", "0") and name.isdigit(), last_user  # numeric: runAsNonRoot
    cmd_index = next(i for i, (keyword, _) in enumerate(steps) if keyword == "CMD")
    assert last_index < cmd_index
    # the setup runs as that user too, so the virtual environment is theirs
    setup_index = next(i for i, (k, args) in enumerate(steps) if k == "RUN"
                       and args == "scripts/setup")
    assert last_index < setup_index
    created = [args for keyword, args in steps if keyword == "RUN" and "useradd" in args]
    assert created and f"--uid {name}" in created[0]


def test_nothing_is_installed_but_by_scripts_setup(steps):
    runs = [args for keyword, args in steps if keyword == "RUN"]
    assert "scripts/setup" in runs
    for command in runs:
        words = shlex.split(command)
        assert command == "scripts/setup" or words[0] in ("useradd", "groupadd"), command
        for forbidden in ("apt-get", "apt", "pip", "curl", "wget", "&&", ";", "|"):
            assert forbidden not in words, command
    assert not [k for k, _ in steps if k == "ADD"]  # COPY only: nothing fetched


def test_the_command_is_the_setups_python_running_the_bot(steps):
    (cmd,) = [args for keyword, args in steps if keyword == "CMD"]
    assert exec_form(cmd) == ["/app/.venv/bin/python", "-m", "bot"]
    (workdir,) = [args for keyword, args in steps if keyword == "WORKDIR"]
    assert workdir == "/app"


def healthcheck_command(steps: list[tuple[str, str]]) -> list[str]:
    (check,) = [args for keyword, args in steps if keyword == "HEALTHCHECK"]
    options, _, command = check.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    return exec_form(command)


def test_the_health_check_asks_healthz_with_python_urllib(steps):
    command = healthcheck_command(steps)
    assert command[:2] == ["/app/.venv/bin/python", "-c"]
    assert "urllib.request" in command[2] and "/healthz" in command[2]
    assert "curl" not in " ".join(command) and "wget" not in " ".join(command)


def test_the_health_check_passes_on_a_healthy_bot_and_fails_without_one(steps, bot_env):
    """The image's health check command itself, with this machine's Python."""
    script = healthcheck_command(steps)[2]

    def check(port: int) -> int:
        return subprocess.run([sys.executable, "-c", script], env={"PORT": str(port)},
                              capture_output=True, timeout=20).returncode

    with BotProcess(bot_env) as bot:
        assert check(bot.port) == 0
    assert check(bot.port) != 0  # stopped
    assert check(free_port()) != 0  # never started


@pytest.fixture
def bot_env(tmp_path: Path) -> dict[str, str]:
    # The health check needs only the process and its store; Slack and Neon stay unused.
    return bot_environment(slack_api_url="http://127.0.0.1:9/api/",
                           neon_api_url="http://127.0.0.1:9/api/v2", neon_api_key="neon-key",
                           neon_project_id="proj-health", database_url=f"sqlite:///{tmp_path}/s.db")


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for pattern in (".env", ".venv/", ".git/", "lifeguard.db*"):
        assert pattern in ignored, pattern
    assert "!.env.example" in ignored
    copied = [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "COPY"]
    assert all(" . " in f" {args} " for args in copied)  # what is copied is what is not ignored


def test_the_readme_shows_the_dockerfile_beside_the_procfile():
    readme = (PROJECT_ROOT / "README.md").read_text()
    paragraphs = readme.split("\n\n")
    beside = [p for p in paragraphs if "Procfile" in p and "Dockerfile" in p]
    assert beside, "README.md: no paragraph names both the Procfile and the Dockerfile"
    assert "docker build" in readme and "docker run" in readme
