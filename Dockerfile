# vidqueue: one image for every role (worker, beat, flower, api); the command picks the role.
# Base image pinned to a patch release and Debian release: bump it deliberately.
FROM python:3.11.13-slim-bookworm

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
# Only what `pip install .` needs, named one by one: nothing else in the checkout (a secrets/
# directory for docker-compose.yml, an env file) can end up in the image. The source stays
# root-owned and read-only to the service user; settings' relative paths
# (config/providers.toml) resolve against /app.
COPY pyproject.toml README.md ./
COPY config ./config
COPY workers ./workers
COPY producer ./producer
COPY simulator ./simulator
COPY devstack ./devstack
RUN pip install . && rm -rf build *.egg-info

# Every X_FILE variable (a Docker secret) becomes X before the command runs (docs/deploy.md).
COPY docker/entrypoint.sh /usr/local/bin/vidqueue-entrypoint
RUN chmod 0755 /usr/local/bin/vidqueue-entrypoint

USER vidqueue

ENTRYPOINT ["vidqueue-entrypoint"]
# Celery's warm shutdown on SIGTERM: finish running tasks, then exit (acks_late redelivers the rest).
STOPSIGNAL SIGTERM
CMD ["celery", "-A", "workers", "worker", "-l", "INFO", "--without-gossip", "--without-mingle"]
