// A media fork as FreeSWITCH's mod_audio_fork, mod_audio_stream and jambonz `listen` drive one,
// played with the `ws` package (which refuses a server that selects none of the subprotocols
// it offered, "Server sent no subprotocol", as those modules' users see it).
//
//   node fork_client.mjs '{"url": "ws://...", "protocols": ["audio.drachtio.org"],
//     "headers": {}, "metadata": "{...}" | null, "audio": "/path/raw.pcm", "frameBytes": 640,
//     "paceMs": 0, "texts": ["..."], "end": "close" | "empty-frame" | "none", "closeCode": 1000}'
//
// Prints one JSON line per thing that happened (open, message, close, error) and exits 0 once
// the socket has closed, 1 on an error.
import { readFileSync } from "node:fs";
import WebSocket from "ws";

const spec = JSON.parse(process.argv[2]);
const audio = spec.audio ? readFileSync(spec.audio) : Buffer.alloc(0);
const frameBytes = spec.frameBytes || 640;
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const ws = new WebSocket(spec.url, spec.protocols || [], { headers: spec.headers || {} });
let failed = false;

ws.on("error", (err) => {
  failed = true;
  say({ event: "error", message: String(err.message) });
});
ws.on("unexpected-response", (_req, res) => {
  failed = true;
  say({ event: "error", message: `unexpected response ${res.statusCode}` });
  ws.terminate();
});
ws.on("message", (data, isBinary) => {
  say({ event: "message", binary: isBinary, data: isBinary ? data.length : data.toString() });
});
ws.on("close", (code, reason) => {
  say({ event: "close", code, reason: reason.toString() });
  process.exit(failed ? 1 : 0);
});
ws.on("open", async () => {
  say({ event: "open", protocol: ws.protocol });
  if (spec.metadata !== null && spec.metadata !== undefined) ws.send(spec.metadata);
  for (let i = 0; i < audio.length; i += frameBytes) {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(audio.subarray(i, i + frameBytes));
    if (spec.paceMs) await sleep(spec.paceMs);
  }
  for (const text of spec.texts || []) ws.send(text);
  if (spec.end === "empty-frame") ws.send(Buffer.alloc(0));
  else if (spec.end !== "none") ws.close(spec.closeCode || 1000);
});
