# Lifeguard in a container, for teams that deploy images. The image is set up by the same
# `scripts/setup` that CI runs (.ci/run), so it holds exactly what CI tested; nothing is
# installed here by hand. Build and run:
#
#   docker build -t lifeguard .
#   docker run --env-file .env -p 3000:3000 lifeguard
#
# Give it DATABASE_URL=postgresql://… (or mount a volume for a SQLite store) so the audit
# trail and requests outlive the container.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=3000

# An unprivileged user owning the project folder; a numeric id, so orchestrators can tell
# it is not root (Kubernetes' runAsNonRoot).
RUN useradd --uid 10001 --user-group --create-home --home-dir /app --shell /usr/sbin/nologin lifeguard

WORKDIR /app
COPY --chown=10001:10001 . /app
USER 10001:10001

RUN scripts/setup

EXPOSE 3000
# 200 only while the bot's store answers; Python's own urllib, as the image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4).status == 200 else 1)"]

CMD ["/app/.venv/bin/python", "-m", "bot"]
