"""A webhook receiver for asr-worker's transcript documents, with the Python standard library
only: it checks each request's Standard Webhooks signature (webhook-id, webhook-timestamp,
webhook-signature: HMAC-SHA256 with the secret ASR_WEBHOOK_SECRET), refuses what does not
verify (401), answers 204 to what does, and skips a delivery whose webhook-id it has already
taken (a webhook may come more than once; its id is the same every time).

    ASR_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py --port 8080

then point the worker at it: `ASR_WEBHOOK_URL=http://127.0.0.1:8080/transcripts`, or a call's
`callback=http://127.0.0.1:8080/transcripts`. It prints one line per delivery taken.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

TOLERANCE_S = 300  # refuse a signature made more than 5 minutes from now (a replay)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """True if the request was signed with `secret` (whsec_ and base64) in the last 5 minutes."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (webhook_id and timestamp.isdigit() and signatures):
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(signature, expected)
        for version, _, signature in (item.partition(",") for item in signatures.split())
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--secret", default=os.environ.get("ASR_WEBHOOK_SECRET", ""))
    parser.add_argument("--count", type=int, default=0, help="stop after this many deliveries taken")
    args = parser.parse_args()
    taken: set[str] = set()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            if not verify(args.secret, headers, body):
                print("refused: the signature does not verify", flush=True)
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(204)
            self.end_headers()
            if headers["webhook-id"] in taken:
                return  # a copy of one already taken
            taken.add(headers["webhook-id"])
            delivery = json.loads(body)
            data = delivery["data"]
            if delivery["type"] == "transcript.completed":
                said = " / ".join(f"{u['role']}: {u['text']}" for u in data["utterances"])
                print(f"{delivery['type']} {data['interaction_id']} {data['status']}: {said}", flush=True)
            else:  # transcript.final
                print(
                    f"{delivery['type']} {data['interaction_id']} ch{data['channel']}: {data['text']}",
                    flush=True,
                )

        def log_message(self, format: str, *values: object) -> None:
            return  # one line per delivery is enough

    server = HTTPServer(("127.0.0.1", args.port), Receiver)
    print(f"listening on http://127.0.0.1:{args.port}/", flush=True)
    while not args.count or len(taken) < args.count:
        server.handle_request()
    server.server_close()


if __name__ == "__main__":
    main()
