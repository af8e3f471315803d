"""A strict peer for Slack incoming webhooks (Slack itself cannot run here): it checks the
payload the way Slack documents it (`text` required unless there are `blocks` or
`attachments`; `blocks` of header/section with plain_text/mrkdwn texts within Slack's limits;
attachments with some text) and answers like Slack does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlackPeer:
    """Answers like Slack's incoming webhooks (`ok`, text/plain) at PATH; with `fail_first` the
    first request gets a 500 so the sender's retry is exercised. Rejects (400) payloads Slack
    would reject."""

    PATH = "/services/T000/B000/XXXX"

    def __init__(self, fail_first: bool = True):
        self.posts: list[dict] = []
        self.failed_first = not fail_first
        peer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, answer = peer.handle(self.path, self.headers.get("content-type", ""), body)
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(answer.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{self.PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, path, ctype, body):
        if path != self.PATH:
            return 404, "no_service"
        if not ctype.startswith("application/json"):
            return 400, "invalid_payload"
        try:
            p = json.loads(body)
        except ValueError:
            return 400, "invalid_payload"
        # Slack wants `text`, unless the message is made of blocks or (legacy) attachments.
        text_ok = isinstance(p.get("text"), str) and p["text"]
        if not text_ok and not p.get("blocks") and not p.get("attachments"):
            return 400, "no_text"
        for a in p.get("attachments", []):
            if not isinstance(a, dict) or not any(isinstance(a.get(k), str) and a[k] for k in ("text", "fallback", "title", "pretext")):
                return 400, "invalid_attachments"
        for b in p.get("blocks", []):
            if b.get("type") not in ("header", "section"):
                return 400, "invalid_blocks"
            texts = ([b["text"]] if "text" in b else []) + b.get("fields", [])
            if not texts or len(b.get("fields", [])) > 10:
                return 400, "invalid_blocks"
            for t in texts:
                if t.get("type") not in ("plain_text", "mrkdwn") or not isinstance(t.get("text"), str) or len(t["text"]) > 3000:
                    return 400, "invalid_blocks"
            if b["type"] == "header" and (b["text"]["type"] != "plain_text" or len(b["text"]["text"]) > 150):
                return 400, "invalid_blocks"
        if not self.failed_first:
            self.failed_first = True
            return 500, "temporarily_unavailable"
        self.posts.append(p)
        return 200, "ok"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
