#!/usr/bin/python3
"""An upstream that misbehaves on purpose, for veil serve's reliability
suite (standard library only). It answers close-delimited HTTP/1.0 event
streams, so that ending early is ending the body. The last user message
picks the behaviour:
  TRUNCATE  two content events, then the connection closes: no [DONE]
  GARBAGE   lines that are not JSON and one content event, then it closes
  FLOOD     500000 content events of ten bytes, then [DONE] (whatever max_tokens said): about
            17 MB relayed, more than the 4 MiB veil lets wait for a client plus what the kernel
            buffers (a 4 MiB send buffer at most, by default)
  HANG      reads the request and says nothing for 30 s
  anything else: three content events, a finish, usage and [DONE]
Usage: hostile_upstream.py PORTFILE  (binds a free port and writes it there)"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def event(self, obj):
        data = obj if isinstance(obj, str) else json.dumps(obj)
        self.wfile.write(("data: " + data + "\n\n").encode())
        self.wfile.flush()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(length) or b"{}")
        prompt = ""
        for m in req.get("messages", []):
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                prompt = m["content"]
        if "HANG" in prompt:
            time.sleep(30)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": req.get("model")}

        def content(text):
            self.event(dict(base, choices=[{"index": 0, "delta": {"content": text}, "finish_reason": None}]))

        try:
            self.event(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
            if "TRUNCATE" in prompt:
                content("half an")
                content(" answer")
                return  # the handler returns and HTTP/1.0 closes: the body ends here
            if "GARBAGE" in prompt:
                self.wfile.write(b"data: this is not json\n\ndata: {\"also\": [broken\n\n")
                content("one piece")
                self.wfile.write(b"data: \x00\xff\xfe\n\n")
                return
            n = 500000 if "FLOOD" in prompt else 3
            for i in range(n):
                content("abcdefghij" if "FLOOD" in prompt else " word%d" % i)
            self.event(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
            self.event(dict(base, choices=[], usage={"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}))
            self.event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
