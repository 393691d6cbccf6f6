# The portal's production image: gunicorn with deploy/gunicorn.conf.py, as `make serve` runs it.
#
#   docker build -t member-portal .
#
# It needs SECRET_KEY, ALLOWED_HOSTS and DATABASE_URL at run time (see .env.example). Migrations
# are not run at start-up: run `python manage.py migrate --no-input` with the new image once per
# release, before it serves (the `migrate` service of deploy/compose.yaml, deploy/k8s/migrate-job.yaml).

# --- build: a virtualenv with the runtime dependencies, and the collected static files ---------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /app
# Dependencies before the code, so a code change reuses this layer. Runtime ones only: every one
# ships a wheel, so no compiler is needed.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# With DEBUG off, static files go through whitenoise's CompressedManifestStaticFilesStorage:
# hashed names and pre-compressed copies, made once here and baked into the image. The key and
# host only let the settings load; nothing made here uses them.
RUN DEBUG=false SECRET_KEY=collectstatic-only-not-used-at-run-time ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --no-input -v 0

# --- runtime: the same Python, the virtualenv and the code; no build tools --------------------
FROM python:3.11.14-slim-bookworm

# A fixed uid and gid, so Kubernetes' runAsUser and fsGroup can name them (deploy/k8s/).
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin portal

# PROMETHEUS_MULTIPROC_DIR: the workers' metric files, emptied at each start; under /tmp so that
# a read-only root file system needs only /tmp writable (a tmpfs or an emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=false \
    GUNICORN_BIND=0.0.0.0:8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

# Owned by root and read-only to the portal user: the process cannot change its own code.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app

USER 10001:10001
EXPOSE 8000
# GET /health/live on the container's own port (urllib: the slim image has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "deploy/healthcheck.py"]
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
