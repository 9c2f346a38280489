"""buf plugin for grpcio-tools' gRPC Python stubs.

buf has no builtin for the gRPC Python generator, and grpcio-tools ships it only inside
its bundled protoc. This plugin hands the request's files back to that protoc through
``--descriptor_set_in`` and returns what it wrote.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory() as tmp:
        fds = descriptor_pb2.FileDescriptorSet(file=request.proto_file)
        (Path(tmp) / "in.binpb").write_bytes(fds.SerializeToString())
        out = Path(tmp) / "out"
        out.mkdir()
        proc = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc",
             f"--descriptor_set_in={tmp}/in.binpb", f"--grpc_python_out={out}",
             *request.file_to_generate],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            response.error = proc.stderr or f"grpc_tools.protoc exited {proc.returncode}"
        else:
            for path in sorted(out.rglob("*.py")):
                response.file.add(name=str(path.relative_to(out)), content=path.read_text())
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
