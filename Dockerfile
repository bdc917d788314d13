# One image for both the operator (`agent-operator run`) and the gateway
# sidecar (`agent-operator gateway`).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
# Restricted pod security: a numeric non-root user, nothing writable but /tmp.
USER 65532:65532
ENTRYPOINT ["agent-operator"]
CMD ["run"]
