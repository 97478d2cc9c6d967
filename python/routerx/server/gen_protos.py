"""Regenerates the checked-in gRPC code from ``protos/routerx/v1/router.proto``.

    python -m routerx.server.gen_protos            # writes python/routerx/server/_proto/
    python -m routerx.server.gen_protos --out DIR  # elsewhere (the test diffs against it)

protoc writes modules that import ``routerx.v1.router_pb2``: a top-level package that would
collide with this one. We rewrite that import to a relative one so the code lives at
``routerx.server._proto.routerx.v1`` while the proto keeps its canonical name
(``routerx/v1/router.proto``, package ``routerx.v1``) for reflection and other languages.
The generated code checks the grpcio and protobuf runtime versions itself (see GRPC_GENERATED_VERSION
and ValidateProtobufRuntimeVersion in the output), so the runtime pins follow the generator used.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "_proto"
DEFAULT_PROTO_ROOT = HERE.parents[2] / "protos"  # the repository's protos/ (source checkouts only)
PROTO = "routerx/v1/router.proto"
MODULE = "routerx.server._proto.routerx.v1.router_pb2"
GENERATED = ("routerx/v1/router_pb2.py", "routerx/v1/router_pb2_grpc.py", "routerx/v1/router_pb2.pyi")
INIT_FILES = ("__init__.py", "routerx/__init__.py", "routerx/v1/__init__.py")

# (file, text protoc writes, text we want): each must match exactly once, so a change in the
# generator's output fails here instead of producing code that imports the wrong package.
FIXES: Tuple[Tuple[str, str, str], ...] = (
    ("routerx/v1/router_pb2_grpc.py", "from routerx.v1 import router_pb2 as", "from . import router_pb2 as"),
    # The module name protoc records in the message classes (__module__, used by pickle).
    ("routerx/v1/router_pb2.py", "'routerx.v1.router_pb2'", repr(MODULE)),
)


def tools_version() -> str:
    return metadata.version("grpcio-tools")


def generate(out: Path = DEFAULT_OUT, proto_root: Path = DEFAULT_PROTO_ROOT) -> List[Path]:
    """Runs protoc into ``out`` and applies FIXES. Returns the files written."""
    from grpc_tools import protoc  # a dev dependency: imported here, not at module import

    src = proto_root / PROTO
    if not src.is_file():
        raise FileNotFoundError(f"{src}: proto not found (pass --proto-root)")
    out.mkdir(parents=True, exist_ok=True)
    # grpc_tools ships the well-known types (google/protobuf/*.proto); add them to the path.
    wkt = Path(protoc.__file__).resolve().parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{proto_root}", f"-I{wkt}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", str(src)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {src}")
    for name, old, new in FIXES:
        p = out / name
        text = p.read_text(encoding="utf-8")
        if text.count(old) != 1:
            raise RuntimeError(f"{p}: expected exactly one {old!r} to rewrite; the generator changed, update FIXES")
        p.write_text(text.replace(old, new), encoding="utf-8")
    for name in INIT_FILES:
        init = out / name
        init.write_text(f'"""Generated from protos/{PROTO} by routerx.server.gen_protos (grpcio-tools {tools_version()}); do not edit."""\n', encoding="utf-8")
    return [out / n for n in (*INIT_FILES, *GENERATED)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--proto-root", type=Path, default=DEFAULT_PROTO_ROOT)
    a = ap.parse_args(argv)
    for p in generate(a.out, a.proto_root):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
