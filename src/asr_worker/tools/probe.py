"""`python -m asr_worker.tools.probe`: the container's health check. Exit 0 when the worker in
this container answers 200 on /ready, 1 otherwise, with one line saying why.

It reads the worker's own configuration from the environment (PORT, HOST, ASR_WORKER_TOKEN),
so the image's HEALTHCHECK needs no arguments and no curl (slim images have none). A worker
listening on every address (HOST 0.0.0.0 or ::) is asked on the loopback address. Standard
library only, and no asyncio: it runs every few seconds, and must start fast and use little.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Final

TIMEOUT_S: Final = 3.0


def ready_url(env: Mapping[str, str]) -> str:
    """Where this container's worker answers /ready, from its own HOST and PORT."""
    host = env.get("HOST", "").strip() or "127.0.0.1"
    port = env.get("PORT", "").strip() or "3001"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        host = "::1" if address.version == 6 else "127.0.0.1"
    if address is not None and address.version == 6:
        host = f"[{host}]"
    return f"http://{host}:{port}/ready"


def probe(env: Mapping[str, str]) -> tuple[bool, str]:
    """(ready, one line saying so or why not)."""
    url = ready_url(env)
    request = urllib.request.Request(url)
    token = env.get("ASR_WORKER_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status == 200, f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:  # 503 while starting or draining, 401 for a wrong token
        body = exc.read(200).decode("utf-8", "replace")
        return False, f"{url}: HTTP {exc.code} {body}"
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return False, f"{url}: {reason}"


def main() -> int:
    ok, line = probe(os.environ)
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
