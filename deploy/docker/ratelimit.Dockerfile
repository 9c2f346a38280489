# syntax=docker/dockerfile:1.7
# Envoy's reference rate limit service (github.com/envoyproxy/ratelimit, Go) for the
# gateway's shared budgets, built at the same pinned pseudo-version as `make setup`
# (no tag after v1.4.0). Its limits are not baked in: Kubernetes mounts the ConfigMap
# ratelimit-limits, Compose the rendered file, at /data/ratelimit/config (watched).
#   docker build -f deploy/docker/ratelimit.Dockerfile \
#     --build-arg GO_IMAGE=... --build-arg PYTHON_IMAGE=... .   (deploy/docker/base-images.env)
# checkov:skip=CKV_DOCKER_7: FROM reads ARGs whose values are the fixed versions in deploy/docker/base-images.env (tests/deploy refuses latest or untagged there)
ARG GO_IMAGE
ARG PYTHON_IMAGE

FROM ${GO_IMAGE} AS build
ARG RATELIMIT_VERSION=v1.4.1-0.20260122083618-3fb702589d36
ENV CGO_ENABLED=0 GOBIN=/out GOFLAGS=-trimpath
RUN go install "github.com/envoyproxy/ratelimit/src/service_cmd@${RATELIMIT_VERSION}"

# The Python base (already pinned and scanned) gives the healthcheck an interpreter.
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 usdcarb \
 && useradd --system --uid 10001 --gid usdcarb --no-create-home --shell /usr/sbin/nologin usdcarb
COPY --from=build /out/service_cmd /usr/local/bin/ratelimit
USER 10001:10001
EXPOSE 8081 8080 9090
HEALTHCHECK --interval=5s --timeout=3s --retries=20 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthcheck', timeout=2)"]
ENTRYPOINT ["/usr/local/bin/ratelimit"]
