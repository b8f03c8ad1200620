#!/usr/bin/env python3
"""A minimal stand-in for Slack's Web API for the API contract run (.ci/api-contract).

The contract run checks what /api/v1 answers, not what slackops posts to Slack, but some answers
depend on Slack: an announcement's assignees are checked with users.info before anything is
written. This answers every Web API method on 127.0.0.1 the way Slack does for a healthy
workspace (../shared/reference/slack.md: HTTP 200 with a JSON body whose `ok` says whether the
call worked):

  - users.info: an active human member for a well-formed user ID (`U`/`W` then upper-case
    letters and digits), `{"ok": false, "error": "user_not_found"}` for anything else, as Slack
    answers an unknown ID;
  - conversations.open: a DM channel; chat.getPermalink: a permalink;
  - every other method: `{"ok": true}` with a channel and a message `ts`, enough for
    chat.postMessage, chat.update and pins.add that the background jobs call.

Usage: fake_slack_api.py PORT_FILE   (binds an ephemeral port and writes it to PORT_FILE)
"""
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


def user_id(handler, body):
    query = parse_qs(urlparse(handler.path).query)
    if "user" in query:
        return query["user"][0]
    ctype = handler.headers.get("Content-Type", "")
    if "json" in ctype:
        try:
            return str(json.loads(body or b"{}").get("user", ""))
        except ValueError:
            return ""
    return parse_qs(body.decode("utf-8", "replace")).get("user", [""])[0]


class Handler(BaseHTTPRequestHandler):
    def answer(self, body):
        method = urlparse(self.path).path.rsplit("/", 1)[-1]
        if method == "users.info":
            uid = user_id(self, body)
            if USER_ID.match(uid):
                reply = {"ok": True, "user": {
                    "id": uid, "name": uid.lower(), "real_name": uid, "tz": "UTC",
                    "deleted": False, "is_bot": False, "is_app_user": False,
                    "profile": {"real_name": uid, "display_name": uid.lower(),
                                "email": f"{uid.lower()}@example.com"},
                }}
            else:
                reply = {"ok": False, "error": "user_not_found"}
        elif method == "conversations.open":
            reply = {"ok": True, "channel": {"id": "D0FAKE"}}
        elif method == "chat.getPermalink":
            reply = {"ok": True, "channel": "C0FAKE",
                     "permalink": "https://example.slack.com/archives/C0FAKE/p1"}
        else:
            ts = f"{time.time():.6f}"
            reply = {"ok": True, "channel": "C0FAKE", "ts": ts,
                     "message": {"ts": ts, "text": ""}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.answer(self.rfile.read(length))

    def do_GET(self):
        self.answer(b"")

    def log_message(self, *_):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
