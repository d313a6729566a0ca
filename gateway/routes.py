"""HTTP routes derived at run time from the `google.api.http` annotations of the protos.

No hand-typed route table: each annotated method becomes one compiled path template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, message_factory

from raxx.mbt.v1 import (
    accounts_service_pb2,
    handoff_service_pb2,
    marketdata_service_pb2,
    orders_service_pb2,
    sessions_service_pb2,
)

# proto service full name -> the MBT service (process) that serves it
SERVICE_MODULES: dict[str, tuple[str, Any]] = {
    "raxx.mbt.v1.AccountsService": ("accounts", accounts_service_pb2),
    "raxx.mbt.v1.OrdersService": ("orders", orders_service_pb2),
    "raxx.mbt.v1.MarketDataService": ("marketdata", marketdata_service_pb2),
    "raxx.mbt.v1.SessionsService": ("sessions", sessions_service_pb2),
    "raxx.mbt.v1.HandoffService": ("handoff", handoff_service_pb2),
}

_VAR = re.compile(r"\{([a-zA-Z0-9_.]+)(?:=([^}]*))?\}")


@dataclass(frozen=True)
class HttpRoute:
    verb: str  # GET, POST, ...
    template: str
    regex: re.Pattern[str]
    fields: dict[str, str]  # regex group name -> dotted field path
    body: str  # "", "*" or a field name
    service: str  # accounts, orders, ...
    grpc_path: str  # /raxx.mbt.v1.OrdersService/SubmitOrder
    method: descriptor.MethodDescriptor
    request_cls: type[Any]
    response_cls: type[Any]

    def match(self, verb: str, path: str) -> dict[str, str] | None:
        if verb != self.verb:
            return None
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        return {self.fields[k]: v for k, v in m.groupdict().items()}


def split_verb(template: str) -> tuple[str, str]:
    """Split a custom-method suffix (`.../orders/{id}:cancel`) off a path template."""
    depth = 0
    for i in range(len(template) - 1, -1, -1):
        ch = template[i]
        if ch == "}":
            depth += 1
        elif ch == "{":
            depth -= 1
        elif ch == "/" and depth == 0:
            break
        elif ch == ":" and depth == 0:
            return template[:i], template[i + 1 :]
    return template, ""


def compile_template(template: str) -> tuple[re.Pattern[str], dict[str, str]]:
    """`/v1/{name=accounts/*}/orders:cancel` -> a regex plus group -> field mapping."""
    path, verb = split_verb(template)
    fields: dict[str, str] = {}
    out: list[str] = []
    pos = 0
    for i, m in enumerate(_VAR.finditer(path)):
        out.append(re.escape(path[pos : m.start()]))
        group = f"f{i}"
        fields[group] = m.group(1)
        sub = m.group(2) or "*"
        sub_re = "/".join(
            "[^/]+" if s == "*" else ".+" if s == "**" else re.escape(s) for s in sub.split("/")
        )
        out.append(f"(?P<{group}>{sub_re})")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    if verb:
        out.append(re.escape(":" + verb))
    return re.compile("".join(out)), fields


def _rules(rule: http_pb2.HttpRule) -> list[http_pb2.HttpRule]:
    return [rule, *rule.additional_bindings]


def build_routes() -> list[HttpRoute]:
    routes: list[HttpRoute] = []
    for full_name, (service, module) in SERVICE_MODULES.items():
        svc = module.DESCRIPTOR.services_by_name[full_name.rsplit(".", 1)[1]]
        for m in svc.methods:
            opts = m.GetOptions()
            if not opts.HasExtension(annotations_pb2.http):
                continue
            for rule in _rules(opts.Extensions[annotations_pb2.http]):
                kind = rule.WhichOneof("pattern")
                if kind is None:
                    continue
                template = getattr(rule, kind) if kind != "custom" else rule.custom.path
                verb = kind.upper() if kind != "custom" else rule.custom.kind.upper()
                regex, fields = compile_template(template)
                routes.append(
                    HttpRoute(
                        verb=verb,
                        template=template,
                        regex=regex,
                        fields=fields,
                        body=rule.body,
                        service=service,
                        grpc_path=f"/{full_name}/{m.name}",
                        method=m,
                        request_cls=message_factory.GetMessageClass(m.input_type),
                        response_cls=message_factory.GetMessageClass(m.output_type),
                    )
                )
    # literal paths win over templates (`/sessions/current` before `/sessions/{session_id}`)
    routes.sort(key=lambda r: len(r.fields))
    return routes
