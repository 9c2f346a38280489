#!/usr/bin/env python3
"""Write the RPC tables of docs/api.md from the usdcarb.v1 protos.

The handwritten conventions stay above BEGIN_MARKER; everything between BEGIN_MARKER and
END_MARKER is replaced. Comments need source info, which the committed descriptor set
(gen/descriptor/usdcarb.binpb) leaves out for Envoy, so the protos are compiled afresh:
with `buf build` when buf is installed (.venv/bin or PATH), else with grpcio-tools'
protoc.

    python scripts/gen_api_docs.py            # rewrite docs/api.md
    python scripts/gen_api_docs.py --check    # exit 1 (and show a diff) if it is stale
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, resource_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "api.md"
PACKAGE = "usdcarb.v1"
BEGIN_MARKER = "<!-- BEGIN GENERATED RPC TABLE -->"
END_MARKER = "<!-- END GENERATED RPC TABLE -->"

# SourceCodeInfo paths: FileDescriptorProto.message_type = 4 and .service = 6,
# DescriptorProto.field = 2, ServiceDescriptorProto.method = 2.
_MESSAGE, _SERVICE, _FIELD, _METHOD = 4, 6, 2, 2


@dataclass(frozen=True)
class Rpc:
    name: str
    streaming: str
    http: list[str]
    request: str
    response: str
    summary: str


@dataclass(frozen=True)
class Service:
    name: str
    comment: str
    rpcs: list[Rpc]


def build_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """Compile proto/ with source info (comments) and return the descriptor set."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "api.binpb"
        buf = ROOT / ".venv" / "bin" / "buf"
        buf_cmd = str(buf) if buf.is_file() else shutil.which("buf")
        if buf_cmd:
            cmd = [buf_cmd, "build", "--as-file-descriptor-set", "-o", str(out)]
        else:
            import grpc_tools

            wkt = Path(grpc_tools.__file__).parent / "_proto"
            protos = sorted(
                str(p.relative_to(ROOT / "proto"))
                for p in (ROOT / "proto" / "usdcarb" / "v1").glob("*.proto")
            )
            cmd = [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                "-Iproto",
                f"-I{wkt}",
                "--include_source_info",
                "--include_imports",
                f"--descriptor_set_out={out}",
                *protos,
            ]
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stdout}{run.stderr}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {
        tuple(loc.path): loc.leading_comments.strip()
        for loc in file.source_code_info.location
        if loc.leading_comments.strip()
    }


def one_paragraph(comment: str) -> str:
    return " ".join(line.strip() for line in comment.splitlines() if line.strip())


def first_sentence(comment: str) -> str:
    text = one_paragraph(comment)
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return match.group(1) if match else text


def short_type(full: str) -> str:
    name = full.lstrip(".")
    return name.removeprefix(PACKAGE + ".")


def http_bindings(method: descriptor_pb2.MethodDescriptorProto) -> list[str]:
    if not method.options.HasExtension(annotations_pb2.http):
        return []
    rule = method.options.Extensions[annotations_pb2.http]
    out = []
    for r in [rule, *rule.additional_bindings]:
        verb = r.WhichOneof("pattern")
        if verb == "custom":
            out.append(f"{r.custom.kind} {r.custom.path}")
        elif verb is not None:
            out.append(f"{verb.upper()} {getattr(r, verb)}")
    return out


def services(fds: descriptor_pb2.FileDescriptorSet) -> list[Service]:
    found = []
    for file in fds.file:
        if file.package != PACKAGE:
            continue
        notes = comments(file)
        for si, service in enumerate(file.service):
            rpcs = []
            for mi, method in enumerate(service.method):
                if method.client_streaming and method.server_streaming:
                    streaming = "bidi"
                elif method.client_streaming:
                    streaming = "client"
                else:
                    streaming = "server" if method.server_streaming else ""
                rpcs.append(
                    Rpc(
                        name=method.name,
                        streaming=streaming,
                        http=http_bindings(method),
                        request=short_type(method.input_type),
                        response=short_type(method.output_type),
                        summary=first_sentence(notes.get((_SERVICE, si, _METHOD, mi), "")),
                    )
                )
            found.append(Service(service.name, one_paragraph(notes.get((_SERVICE, si), "")), rpcs))
    return sorted(found, key=lambda s: s.name)


@dataclass(frozen=True)
class Resource:
    type: str
    pattern: str
    message: str


@dataclass(frozen=True)
class PageSize:
    method: str
    default: str
    maximum: str


def resources(fds: descriptor_pb2.FileDescriptorSet) -> list[Resource]:
    found: list[Resource] = []
    for file in fds.file:
        if file.package != PACKAGE:
            continue
        for message in file.message_type:
            if message.options.HasExtension(resource_pb2.resource):
                res = message.options.Extensions[resource_pb2.resource]
                found.extend(Resource(res.type, p, message.name) for p in res.pattern)
    return sorted(found, key=lambda r: r.pattern)


def page_sizes(fds: descriptor_pb2.FileDescriptorSet) -> list[PageSize]:
    """Default and maximum page_size of every paged List RPC, from the field comments."""
    field_notes: dict[str, str] = {}
    for file in fds.file:
        if file.package != PACKAGE:
            continue
        notes = comments(file)
        for mi, message in enumerate(file.message_type):
            for fi, field in enumerate(message.field):
                if field.name == "page_size":
                    field_notes[f".{PACKAGE}.{message.name}"] = one_paragraph(
                        notes.get((_MESSAGE, mi, _FIELD, fi), "")
                    )
    found: list[PageSize] = []
    for file in fds.file:
        if file.package != PACKAGE:
            continue
        for service in file.service:
            for method in service.method:
                note = field_notes.get(method.input_type)
                if note is None:
                    continue
                match = re.search(r"default ([\d,]+), at most ([\d,]+)", note)
                default, maximum = match.groups() if match else (note or "?", "?")
                found.append(PageSize(f"{service.name}.{method.name}", default, maximum))
    return sorted(found, key=lambda p: p.method)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(fds: descriptor_pb2.FileDescriptorSet) -> str:
    lines = [
        "<!-- Generated by scripts/gen_api_docs.py from proto/usdcarb/v1: edit the protos, "
        "then run it. -->",
        "",
        "## Resources",
        "",
        "| Resource type | Name pattern | Message |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{r.type}` | `{r.pattern}` | `{r.message}` |" for r in resources(fds)]
    lines += [
        "",
        "## Page sizes",
        "",
        "`page_size` 0 means the default; larger values are capped at the maximum.",
        "",
        "| RPC | Default | Maximum |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{p.method}` | {p.default} | {p.maximum} |" for p in page_sizes(fds)]
    lines += [
        "",
        "## RPC reference",
        "",
        "Streaming `server`: the RPC returns a server stream (NDJSON over REST).",
        "Types are in `usdcarb.v1` unless qualified.",
    ]
    for service in services(fds):
        lines += ["", f"### {service.name}", ""]
        if service.comment:
            lines += [service.comment, ""]
        lines += [
            "| RPC | Streaming | HTTP | Request → Response | Summary |",
            "| --- | --- | --- | --- | --- |",
        ]
        for rpc in service.rpcs:
            http = "<br>".join(f"`{cell(h)}`" for h in rpc.http) or "—"
            stream = "stream " if rpc.streaming in ("server", "bidi") else ""
            types = f"`{rpc.request}` → `{stream}{rpc.response}`"
            lines.append(
                f"| `{rpc.name}` | {rpc.streaming or '—'} | {http} | {types} | "
                f"{cell(rpc.summary)} |"
            )
    return "\n".join(lines) + "\n"


def splice(doc: str, table: str) -> str:
    """Replace what lies between the markers; keep everything else as written."""
    begin = doc.find(BEGIN_MARKER)
    end = doc.find(END_MARKER)
    if begin < 0 or end < begin:
        raise SystemExit(f"{DOC}: expected the lines {BEGIN_MARKER} … {END_MARKER}")
    head = doc[: begin + len(BEGIN_MARKER)]
    tail = doc[end:]
    return f"{head}\n{table}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    parser.add_argument("--doc", type=Path, default=DOC, help="the Markdown file to update")
    parser.add_argument(
        "--descriptor-set",
        type=Path,
        help="a descriptor set WITH source info (default: compile proto/ now)",
    )
    args = parser.parse_args(argv)

    if args.descriptor_set:
        fds = descriptor_pb2.FileDescriptorSet.FromString(args.descriptor_set.read_bytes())
    else:
        fds = build_descriptor_set()
    current = args.doc.read_text()
    updated = splice(current, render(fds))

    if args.check:
        if updated != current:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                updated.splitlines(keepends=True),
                fromfile=f"{args.doc} (committed)",
                tofile=f"{args.doc} (from the protos)",
            )
            sys.stderr.writelines(diff)
            print(f"{args.doc} is stale: run `python scripts/gen_api_docs.py`", file=sys.stderr)
            return 1
        return 0
    if updated != current:
        args.doc.write_text(updated)
        print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
