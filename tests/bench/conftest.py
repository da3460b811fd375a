from tests.e2e.conftest import (  # noqa: F401 - the same fakes as the end-to-end tests
    bot,
    bot_env,
    driver,
    fake_neon_server,
    fake_slack_server,
    neon,
    slack,
)
