"""The committed generated code must equal what scripts/gen_protos.py produces now."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_generated_code_is_current(tmp_path: Path) -> None:
    gen = _load_generator()
    written = gen.generate(tmp_path)
    assert written, "protoc produced nothing"
    committed = ROOT / "protos" / "raxx" / "mbt" / "v1"
    fresh_names = {p.name for p in written}
    committed_names = {p.name for p in committed.glob("*_pb2*")}
    assert fresh_names == committed_names, "run `python scripts/gen_protos.py`"
    stale = [p.name for p in written if p.read_bytes() != (committed / p.name).read_bytes()]
    assert not stale, f"stale generated code {stale}: run `python scripts/gen_protos.py`"


def test_generated_code_imports_at_its_proto_package_path() -> None:
    from raxx.mbt.v1 import orders_service_pb2

    assert orders_service_pb2.DESCRIPTOR.package == "raxx.mbt.v1"
    assert orders_service_pb2.DESCRIPTOR.name == "raxx/mbt/v1/orders_service.proto"
