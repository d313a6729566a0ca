"""Typed errors, mapped in one place to gRPC status (with google.rpc.ErrorInfo) and HTTP.

MbtError                      (base; carries grpc code, reason, metadata)
 ├── InvalidArgument          INVALID_ARGUMENT   400  a field is missing or malformed
 ├── NotFound                 NOT_FOUND          404  no such thing *for this caller*
 ├── AlreadyExists            ALREADY_EXISTS     409
 ├── FailedPrecondition       FAILED_PRECONDITION 400 e.g. insufficient buying power
 ├── Unauthenticated          UNAUTHENTICATED    401
 ├── PermissionDenied         PERMISSION_DENIED  403
 ├── Unavailable              UNAVAILABLE        503  kill switch, dependency down
 └── ResourceExhausted        RESOURCE_EXHAUSTED 429
      └── RateLimited                               a tier's request rate (+ RetryInfo)
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "mbt.raxx.dev"

# grpc-gateway's HTTPStatusFromCode (research/architecture.md §1.2).
HTTP_STATUS_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class MbtError(Exception):
    """A domain error with a stable UPPER_SNAKE reason and a message that names the problem."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = metadata or {}

    def to_status(self) -> status_pb2.Status:
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])


class InvalidArgument(MbtError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str, *, reason: str | None = None) -> None:
        super().__init__(f"{field}: {problem}", reason=reason, metadata={"field": field})
        self.field = field


class NotFound(MbtError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(MbtError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(MbtError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Unauthenticated(MbtError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(MbtError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unavailable(MbtError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


# the reason of a hold accounts did not decide yet: its ledger has not applied the event the
# hold waits for (`after_event`); the caller asks again
LEDGER_BEHIND = "LEDGER_BEHIND"


class ResourceExhausted(MbtError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class RateLimited(ResourceExhausted):
    """Over the caller's request rate; carries `google.rpc.RetryInfo` with the delay."""

    default_reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: int, limit: int) -> None:
        super().__init__(message, metadata={"limit": str(limit), "retry_after": str(retry_after_s)})
        self.retry_after_s = retry_after_s

    def to_status(self) -> status_pb2.Status:
        status = super().to_status()
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.seconds = self.retry_after_s
        detail = any_pb2.Any()
        detail.Pack(retry)
        status.details.append(detail)
        return status


_BY_CODE: dict[grpc.StatusCode, type[MbtError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        ResourceExhausted,
    )
}


def error_from_status(status: status_pb2.Status) -> MbtError:
    """The typed error a `google.rpc.Status` describes (its ErrorInfo reason and metadata)."""
    code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)
    reason, metadata = code.name, {}
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
    return _typed(code, status.message or reason, reason, metadata)


def _typed(code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str]) -> MbtError:
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        e: MbtError = InvalidArgument(metadata.get("field", "request"), message, reason=reason)
        e.message = message
        return e
    cls = _BY_CODE.get(code, Unavailable)
    return cls(message, reason=reason, metadata=metadata)


def error_from_rpc(err: grpc.aio.AioRpcError) -> MbtError:
    """Rebuild the typed error a downstream service raised, keeping its reason and message."""
    from grpc_status import rpc_status

    reason, metadata = err.code().name, {}
    status = rpc_status.from_call(err)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
    return _typed(err.code(), err.details() or reason, reason, metadata)
