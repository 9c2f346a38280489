# syntax=docker/dockerfile:1.7
# One image for every Python service (identity, strategy, validation, ingestion, backtest,
# notification and the replay server); the command picks one:
#   python -m usdcarb.<service>.main
# Build from the repository root:
#   docker build -f deploy/docker/services.Dockerfile \
#     --build-arg PYTHON_IMAGE="$(. deploy/docker/base-images.env; echo "$PYTHON_IMAGE")" .
# checkov:skip=CKV_DOCKER_7: FROM reads an ARG whose value is the fixed version in deploy/docker/base-images.env (tests/deploy refuses latest or untagged there)
ARG PYTHON_IMAGE

# ---------------------------------------------------------------- build: dependencies
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
# The pinned dependencies go into a venv; the project itself is then removed from it and
# its sources sit on PYTHONPATH, the same layout as `make venv`.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip uninstall -y usdcarb

# ---------------------------------------------------------------- final
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/usdcarb/services:/opt/usdcarb/gen/python:/opt/usdcarb/clients/python \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/var/cache/numba
RUN groupadd --system --gid 10001 usdcarb \
 && useradd --system --uid 10001 --gid usdcarb --no-create-home --shell /usr/sbin/nologin usdcarb
COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/usdcarb
COPY services ./services
COPY gen/python ./gen/python
COPY clients/python ./clients/python
# Public half of the DEV-ONLY key (identity publishes it only when publish_dev_key=true,
# which ENV=prod refuses); the private key never enters an image.
COPY gateway/dev-keys/DEV-ONLY-jwks.json ./gateway/dev-keys/DEV-ONLY-jwks.json
COPY deploy/docker/healthcheck.py deploy/docker/entrypoint.sh /opt/usdcarb/bin/
# Compile the backtest engine's numba kernels now, so a new pod serves its first backtest
# at once. Kubernetes mounts the root filesystem read-only and numba only uses a cache
# directory it can write: the backtest pod's init container copies this one to a volume.
RUN NUMBA_CACHE_DIR=/opt/usdcarb/numba-cache python -m usdcarb.backtest.engine.warm \
 && python -m compileall -q services gen/python clients/python \
 && mkdir -p /var/cache/numba \
 && cp -a /opt/usdcarb/numba-cache/. /var/cache/numba/ \
 && chown -R 10001:10001 /var/cache/numba \
 && chmod 0755 /opt/usdcarb/bin/entrypoint.sh
USER 10001:10001
# gRPC health of the one service this container runs (its USDCARB_<SVC>_GRPC_PORT).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "/opt/usdcarb/bin/healthcheck.py"]
ENTRYPOINT ["/opt/usdcarb/bin/entrypoint.sh"]
CMD ["python", "-m", "usdcarb.strategy.main"]
