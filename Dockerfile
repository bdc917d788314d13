# syntax=docker/dockerfile:1
# One image for the operator (`agent-operator run`, the default command) and
# the gateway sidecar (`agent-operator gateway ...`). Its HEALTHCHECK is
# `agent-operator healthcheck`, which probes /healthz of whichever of the two
# runs (docs/operator.md, "The image").
#
#   docker build -t agent-operator:0.1.0 .
#
# Both stages use the same base: the virtualenv built in the first one points
# at the base's /usr/local/bin/python3.

# --- build: wheels and the virtualenv (pip and any build tool stay here) -----
FROM python:3.11.14-slim-trixie AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Every dependency ships binary wheels for linux amd64 and arm64, so no
# compiler is installed; one without would need it here, never below. The
# cache mount keeps pip's downloads between builds and out of the image.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels .
# A virtualenv without pip; bytecode compiled once, checked by hash rather than
# by source timestamps (which reproducible builds may rewrite), because the root
# filesystem is read-only at run time and nothing can be compiled then.
RUN python -m venv --without-pip /opt/agent-operator \
    && pip --python /opt/agent-operator/bin/python install --no-cache-dir --no-compile \
        --no-index /wheels/*.whl \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/agent-operator/lib

# --- runtime -------------------------------------------------------------------
FROM python:3.11.14-slim-trixie
LABEL org.opencontainers.image.title="agent-operator" \
      org.opencontainers.image.description="Kubernetes operator for LLM agents, and its gateway sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/agent-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# pip, setuptools and wheel are not needed at run time (the app's virtualenv
# never sees them). The base image ships the standard library without
# bytecode: compile it now, or every start and every health check compiles it
# again in memory. The user gets a passwd entry (tools that look up the
# current user) and no home: nothing is written outside /tmp.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /usr/local/lib/python3.11 \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
COPY --from=build /opt/agent-operator /opt/agent-operator
# Restricted pod security: a numeric non-root user (runAsNonRoot can check it).
USER 65532:65532
# Probes /healthz of the `run` (its --health-port, 8081) or `gateway` (its
# --admin-listen, 9090) process of this container; Kubernetes ignores it and
# uses the pod's probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["agent-operator", "healthcheck"]
ENTRYPOINT ["agent-operator"]
CMD ["run"]
