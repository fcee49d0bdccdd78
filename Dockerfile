# The pod-labeler webhook server: `python -m app.main serve`, HTTPS on 8443.
#
# Both stages use the same official Python image, pinned to a patch release whose
# minor is PYTHON_VERSION in versions.env (tests/unit/test_image_matches_chart.py
# checks it): the virtualenv built in the first stage links to that interpreter, so
# it only runs on the same one. Debian 13 (trixie) rather than bookworm: bookworm
# left Debian's regular security support in June 2026.
#
# Why not a distroless final stage: the only distroless image with Python 3.11 is
# gcr.io/distroless/python3-debian12 (Debian's 3.11.2 at /usr/bin, no patch-level tag),
# which reached its end of life three months after Debian 13's release (distroless
# SUPPORT_POLICY.md); python3-debian13 carries 3.13. And a venv made from this image's
# /usr/local/bin/python would not run on another interpreter. So the final stage is the
# slim image with pip, setuptools and wheel removed: it keeps the base's shell, but has
# no compiler, no package installer, and nothing in it runs as root.

# BASE: the image both stages start from. Releases and the kind workflow use this
# default. `make up` passes a Debian bookworm base made locally with mmdebstrap
# (LOCAL_BASE_IMAGE in versions.env), because no registry can be reached there: same
# Python minor, same layout below /opt/venv and /app, but Debian's Python 3.11.2 at
# /usr/bin rather than the official image's 3.11.17 at /usr/local/bin.
ARG BASE=python:3.11.17-slim-trixie

# ---- builder: the runtime dependencies, in a venv of their own -----------------------
# hadolint ignore=DL3006
FROM ${BASE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY requirements.txt constraints.txt /tmp/
# A venv without pip: the base image's pip installs into it (--python), so the venv
# copied to the final stage holds exactly the requirements. Wheels only: the image has
# no compiler, and a source build would be a surprise worth failing on.
RUN python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install \
        --no-cache-dir --only-binary=:all: --requirement /tmp/requirements.txt --constraint /tmp/constraints.txt \
    && python -m pip --python /opt/venv/bin/python check

# ---- final: the server, as 65532 -------------------------------------------------
# hadolint ignore=DL3006
FROM ${BASE}

# Set by hack/kind-e2e.sh (and so CI) from the chart's appVersion and the git commit.
ARG VERSION=0.3.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pod-labeler" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that labels every new Pod" \
      org.opencontainers.image.source="https://github.com/pod-labeler/pod-labeler" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the chart; the app's
# bytecode is compiled below instead. PYTHONUNBUFFERED: log lines leave at once.
# PYTHONPATH: `python -m app.main` finds the package whatever the working directory.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PATH="/opt/venv/bin:${PATH}"

# Nothing installs packages at run time: drop the installer and its bundled wheels.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
    && rm -rf /usr/local/lib/python3.11/ensurepip

COPY --from=builder /opt/venv /opt/venv
COPY app/ /app/app/
# checked-hash .pyc files stay valid whatever mtimes the copy gave the sources.
RUN python -m compileall -q --invalidation-mode checked-hash /app/app

WORKDIR /app
# Numeric, so that the kubelet can enforce runAsNonRoot; the chart runs as the same.
USER 65532:65532
EXPOSE 8443/tcp
ENTRYPOINT ["python", "-m", "app.main", "serve"]
