# vidqueue: one image for every role (worker, beat, flower, api); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Beat keeps its schedule in /var/lib/vidqueue (a named volume in docker-compose.yml).
RUN groupadd --system --gid 10001 vidqueue \
    && useradd --system --uid 10001 --gid vidqueue --home-dir /app --shell /usr/sbin/nologin vidqueue \
    && mkdir -p /var/lib/vidqueue \
    && chown vidqueue:vidqueue /var/lib/vidqueue

WORKDIR /app
# The source stays root-owned and read-only to the service user; settings' relative paths
# (config/providers.toml) resolve against /app.
COPY . .
RUN pip install . && rm -rf build *.egg-info

USER vidqueue

# Celery's warm shutdown on SIGTERM: finish running tasks, then exit (acks_late redelivers the rest).
STOPSIGNAL SIGTERM
CMD ["celery", "-A", "workers", "worker", "-l", "INFO", "--without-gossip", "--without-mingle"]
