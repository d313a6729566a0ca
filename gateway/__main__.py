"""`python -m gateway`: serve the HTTP gateway (uvicorn) on MBT_GATEWAY_HOST:MBT_GATEWAY_PORT."""

from __future__ import annotations

import logging
import os

import uvicorn

from gateway.app import create_app


def main() -> None:
    # our own lines (one structured line per request) at INFO; uvicorn's at WARNING
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s gateway %(levelname)s %(name)s: %(message)s"
    )
    host = os.environ.get("MBT_GATEWAY_HOST", "127.0.0.1")
    port = int(os.environ.get("MBT_GATEWAY_PORT", "8080"))
    uvicorn.run(create_app(), host=host, port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
