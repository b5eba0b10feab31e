# syntax=docker/dockerfile:1
# The messenger in one image: the migrations and all six processes of the app (auth, chat, content, gateway,
# relay, notifier), and haproxy, the load balancer in front of several gateway nodes. The container's command
# chooses which one runs, with the entry point `python -m workbook app up` uses for each:
# python -m workbook.launch ROOT MODULE [ARGS...], e.g.
#
#   python -m workbook.launch reference_app db                  the migrations (then it exits)
#   python -m workbook.launch reference_app auth.grpc_server    also chat.grpc_server, content.grpc_server
#   python -m workbook.launch reference_app gateway             the default command
#   python -m workbook.launch reference_app events relay        also events notifier
#
# ROOT is reference_app, or exercises for a learner's own app. docker-compose.yml runs them all together
# (`docker compose --profile app up --build`); the settings come from APP_... variables as everywhere else.
# Build with BuildKit (Docker's builder since 23.0): the client stage relies on it.

# --- The web client: client/ built by Vite into dist/, which the gateway serves at / ---
FROM node:22-slim AS client
WORKDIR /client
# "clien[t]" is a wildcard on purpose: without client/ in the build context it copies nothing (BuildKit
# allows a wildcard with no match), and the image is built without a web client instead of failing.
COPY clien[t] ./
RUN --mount=type=cache,target=/root/.npm \
    if [ -f package.json ]; then npm ci --no-audit --no-fund && npm run build; else mkdir dist; fi

# --- The app ---
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# HAProxy from Debian, for the load balancer in front of the gateway nodes (docker-compose.yml's haproxy service runs
# this image with the configuration workbook/balancer.py prints, as `python -m workbook app up --gateways 2` does).
# Its version is the one of the base image's Debian release, as on a machine that runs `apt-get install haproxy`.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/*

# Only the application's packages (the "# The application" section of requirements.txt) and trustme (the section
# after it: compose's certs service makes the app's certificate authority with it), at the versions of
# constraints.txt: the course's tools (JupyterLab, the checks) have no place in the app's image.
COPY requirements.txt constraints.txt ./
RUN awk '/^#/ { app = ($0 == "# The application" || $0 ~ /^# The local certificate authority/); next } app && NF' \
        requirements.txt > app-requirements.txt \
    && pip install --no-cache-dir -r app-requirements.txt -c constraints.txt \
    && rm app-requirements.txt

# The code stays owned by root, so the app's user can read it but not change it.
COPY workbook/ workbook/
COPY reference_app/ reference_app/
COPY exercises/ exercises/
COPY --from=client /client/dist client/dist

RUN useradd --system --uid 10001 --user-group --no-create-home messenger \
    && mkdir /certs && chown 10001:10001 /certs
# /certs: where compose's certs service writes the TLS files (a named volume takes this folder's owner).
USER 10001:10001

EXPOSE 8000 50051 50052 50053
# The gateway's probe, for the default command (over TLS, as prod requires): the same check `python -m workbook app up` makes
# (workbook/processes.py). docker-compose.yml gives every other process the probe that fits it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys; from workbook.processes import Readiness, is_ready; sys.exit(not is_ready(Readiness('http', '127.0.0.1', 8000, '/openapi.json', ca_file='/certs/tls/ca.pem'), age_seconds=0))"]
CMD ["python", "-m", "workbook.launch", "reference_app", "gateway"]
