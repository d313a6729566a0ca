"""Regenerate the committed Python code for protos/raxx/mbt/v1/*.proto.

Usage: python scripts/gen_protos.py [--out DIR]

The generated modules sit next to their .proto files (protos/raxx/mbt/v1/), so the import
path equals the proto package (`raxx.mbt.v1`) and nothing needs rewriting.
`tests/unit/test_generated_protos.py` regenerates into a temporary directory and fails when
the committed code is stale.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import sysconfig
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = PROTO_ROOT / "raxx" / "mbt" / "v1"


def generate(out: Path) -> list[Path]:
    """Run protoc (+ mypy-protobuf stubs) for every proto file into `out`; return written files."""
    protos = sorted(PACKAGE_DIR.glob("*.proto"))
    plugin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{sysconfig.get_paths()['purelib']}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
        # the comments of every message, field and RPC: the OpenAPI's descriptions
        f"--descriptor_set_out={out / 'raxx' / 'mbt' / 'v1' / 'source_info_pb2.binpb'}",
        "--include_source_info",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    (out / "raxx" / "mbt" / "v1").mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = sorted((out / "raxx" / "mbt" / "v1").glob("*_pb2*"))
    for pkg in ("raxx", "raxx/mbt", "raxx/mbt/v1"):
        (out / pkg / "__init__.py").touch()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    ns = parser.parse_args()
    if ns.out == PROTO_ROOT:
        for old in PACKAGE_DIR.glob("*_pb2*"):
            old.unlink()
    files = generate(ns.out)
    print(f"generated {len(files)} files into {ns.out}")
    shutil.rmtree(PACKAGE_DIR / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
