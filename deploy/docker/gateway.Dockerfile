# syntax=docker/dockerfile:1.7
# The Envoy gateway: its config rendered by the project's generator
# (python -m usdcarb.gateway.config) for one topology, baked in with the API descriptor.
#   docker build -f deploy/docker/gateway.Dockerfile --build-arg TOPOLOGY=k8s \
#     --build-arg PYTHON_IMAGE=... --build-arg ENVOY_IMAGE=... .   (deploy/docker/base-images.env)
# checkov:skip=CKV_DOCKER_7: FROM reads ARGs whose values are the fixed versions in deploy/docker/base-images.env (tests/deploy refuses latest or untagged there)
# checkov:skip=CKV_DOCKER_2: distroless Envoy has no shell or client to probe with; Kubernetes probes the listener and nothing in Compose waits on the gateway
ARG PYTHON_IMAGE
ARG ENVOY_IMAGE

FROM ${PYTHON_IMAGE} AS render
ARG TOPOLOGY=k8s
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gen ./gen
COPY deploy/gateway ./deploy/gateway
RUN pip install . \
 && mkdir -p /out \
 && cp gen/descriptor/usdcarb.binpb /out/usdcarb.binpb \
 && sh deploy/gateway/render.sh "${TOPOLOGY}" /out/usdcarb.binpb /out/envoy.yaml

FROM ${ENVOY_IMAGE}
COPY --from=render /out/envoy.yaml /out/usdcarb.binpb /out/
# The distroless Envoy image runs as its non-root user (65532).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/envoy", "-c", "/out/envoy.yaml", "--disable-hot-restart", "--log-level", "warn"]
