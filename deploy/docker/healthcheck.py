"""Container HEALTHCHECK: ask the gRPC health service ("" = the whole server) of the one
service this container runs; exit 0 only when it answers SERVING.

The port is the container's ``USDCARB_<SERVICE>_GRPC_PORT``; the connection is plaintext
when ``USDCARB_<SERVICE>_PLAINTEXT`` is true, else mutual TLS with its ``TLS_*`` files
(the certificate must name the service).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from usdcarb.platform.tls import channel_credentials


def main() -> int:
    ports = {k: v for k, v in os.environ.items()
             if k.startswith("USDCARB_") and k.endswith("_GRPC_PORT")}
    if len(ports) != 1:
        sys.stderr.write(f"expected one USDCARB_<SERVICE>_GRPC_PORT, got {sorted(ports)}\n")
        return 1
    (key, port), = ports.items()
    prefix = key.removesuffix("GRPC_PORT")
    service = prefix.removeprefix("USDCARB_").rstrip("_").lower()
    address = f"127.0.0.1:{port}"
    if os.environ.get(prefix + "PLAINTEXT", "").lower() in ("1", "true", "yes", "on"):
        channel = grpc.insecure_channel(address)
    else:
        creds = channel_credentials(Path(os.environ[prefix + "TLS_CA_FILE"]),
                                    Path(os.environ[prefix + "TLS_CERT_FILE"]),
                                    Path(os.environ[prefix + "TLS_KEY_FILE"]))
        channel = grpc.secure_channel(address, creds,
                                      options=[("grpc.ssl_target_name_override", service)])
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.RpcError as exc:
            sys.stderr.write(f"expected SERVING, got {exc.code().name}\n")
            return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        sys.stderr.write(f"expected SERVING, got {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
