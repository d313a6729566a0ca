"""HandoffService: Pro+ live-broker handoff. v1 foundation: eligibility only.

Enrollment (Alpaca OAuth), token custody and per-order submission come in a later issue; until
then every caller is told plainly why they cannot hand off.
"""

from __future__ import annotations

from typing import Any

import grpc

from raxx.mbt.v1 import handoff_service_pb2 as pb
from raxx.mbt.v1 import handoff_service_pb2_grpc as pb_grpc
from services.platform.auth import require_user

Ctx = grpc.aio.ServicerContext[Any, Any]


def eligibility(tier: str) -> tuple[bool, str]:
    if tier != "pro_plus":
        return False, "live handoff is a Pro+ feature; your tier is " + (tier or "free")
    return False, "live handoff enrollment is not available yet"


class HandoffServicer(pb_grpc.HandoffServiceServicer):
    async def GetHandoffStatus(
        self, request: pb.GetHandoffStatusRequest, context: Ctx
    ) -> pb.HandoffStatus:
        user = require_user()
        eligible, reason = eligibility(user.tier)
        return pb.HandoffStatus(eligible=eligible, enrolled=False, reason=reason)
