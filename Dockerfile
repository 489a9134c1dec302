# syntax=docker/dockerfile:1.7
# One image for the services; the command picks one:
#   safeguard-ingest | safeguard-risk | safeguard-notify | safeguard-desk
# (the desk's schema is migrated by `safeguard db upgrade`, a Job before its rollout)
# Build: docker build -t safeguard:dev .   (the last stage, `production`: the runtime only)
#   with --build-arg SAFEGUARD_REVISION="$(git rev-parse HEAD)" for safeguard_build_info
# The `devtools` stage adds the development inbox for docker-compose.yml and is never the
# production image: docker build --target devtools .
# The base is pinned to Python 3.11 on Debian 12; a release pipeline should pin it by
# digest as well (python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/safeguard \
 && /opt/safeguard/bin/pip install pip==25.3
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
# rocksdict backs Faust's `rocksdb://` table store (the production default).
RUN /opt/safeguard/bin/pip install . rocksdict==0.3.29 \
 && /opt/safeguard/bin/python -m compileall -q /opt/safeguard

FROM ${PYTHON_IMAGE} AS runtime
# The source revision the image was built from, exposed as safeguard_build_info{revision}:
# docker build --build-arg SAFEGUARD_REVISION="$(git rev-parse HEAD)" .
ARG SAFEGUARD_REVISION=unknown
ENV PATH=/opt/safeguard/bin:$PATH \
    SAFEGUARD_REVISION=${SAFEGUARD_REVISION} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INGEST_HOST=0.0.0.0 \
    RISK_HOST=0.0.0.0 \
    NOTIFY_HOST=0.0.0.0 \
    DESK_HOST=0.0.0.0 \
    RISK_POLICY_FILE=/app/policy/default.yaml \
    NOTIFY_POLICY_FILE=/app/policy/default.yaml \
    DESK_POLICY_FILE=/app/policy/default.yaml \
    RISK_STREAM__DATA_DIR=/var/lib/safeguard/risk \
    NOTIFY_STREAM__DATA_DIR=/var/lib/safeguard/notify
# Pango and a font for the desk's assurance pack (WeasyPrint renders its PDF).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 safeguard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin safeguard \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/safeguard \
      /var/lib/safeguard/risk /var/lib/safeguard/notify
COPY --from=build /opt/safeguard /opt/safeguard
COPY policy/default.yaml /app/policy/default.yaml

# The probe the orchestrator runs: GET /healthz on this container's service. One service
# runs per container, so the port is HEALTHCHECK_PORT, else the service's own *_PORT,
# else whichever default port (8080 ingest, 8081 risk, 8082 notify, 8084 desk) answers.
COPY --chmod=0755 <<'PY' /usr/local/bin/safeguard-healthcheck
#!/opt/safeguard/bin/python
import os
import sys
import urllib.request

names = ("HEALTHCHECK_PORT", "INGEST_PORT", "RISK_PORT", "NOTIFY_PORT", "DESK_PORT")
ports = [os.environ[n] for n in names if os.environ.get(n)] or ["8080", "8081", "8082", "8084"]
for port in ports:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        continue
sys.exit(1)
PY

WORKDIR /app
USER 10001:10001
EXPOSE 8080 8081 8082 8084
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
  CMD ["safeguard-healthcheck"]
CMD ["safeguard-ingest"]

# Development only: the runtime plus the development inbox (devtools/ and its SMTP server),
# for the webhook-inbox service of docker-compose.yml. Not the default target.
FROM runtime AS devtools
USER 0:0
RUN /opt/safeguard/bin/pip install --no-cache-dir aiosmtpd==1.4.6 atpublic==9.0.0
COPY devtools /app/devtools
USER 10001:10001

# The production image, and the default target: the runtime stage as it is.
FROM runtime AS production
