#!/usr/bin/python3
"""A mock OpenAI-compatible upstream for veil serve's tests (standard library
only). It streams a deterministic answer derived from the last user message:
"echo:" followed by its words, one chunk per word, then usage and [DONE].
Magic words in the prompt pick behaviours: FAIL400 (a 400 with an OpenAI
error), FAIL500, SLOW (0.2 s between chunks, for disconnect tests), HANG (no
answer), MIDERROR (an error event after the first chunk), REASON (a
reasoning_content chunk first), FAST <n> (n chunks as fast as possible, for
the benchmark), SHAPES (the events of shape_events: content events in the
many spellings upstreams use, for veil's event-shape cache). GET /stats reports requests seen and streams cut by the client.
Usage: mock_upstream.py PORTFILE  (binds a free port and writes it there)"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def shape_events(model):
    """Content events that share their bytes around the content (which veil
    learns and then only decodes the string) and events that break that shape
    in every way found: escapes, non-ASCII, the content's spelling elsewhere
    in the event, fields that change per event, extra members after the
    content, whitespace, null. Objects are sent with json.dumps, strings as
    they are."""
    base = {"id": "chatcmpl-shape", "object": "chat.completion.chunk", "created": 7, "model": model}

    def ev(content=None, reasoning=None, finish=None, **extra):
        delta = {}
        if content is not None:
            delta["content"] = content
        if reasoning is not None:
            delta["reasoning_content"] = reasoning
        return dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}], **extra)

    out = [ev("plain"), ev(" words"), ev(" again"), ev(' "quoted"'), ev(" back\\slash"), ev(" new\nline"),
           ev(" tab\t"), ev(" caf\u00e9"), ev(" \U0001F600"), ev(" ctl\u0001"), ev(" slash/"), ev(" again")]
    out += [dict(ev(" moving"), created=8 + i) for i in range(3)]
    # the content spelled as the id first: a cache taking the first spelling would relay the next id
    out += [ev("chatcmpl-shape"), dict(ev("chatcmpl-shape"), id="other-id"), ev("x"), ev("x"), ev("y"), ev(" x")]
    out += [ev(reasoning="think"), ev(" both", reasoning=" r"), ev(None), ev(""), ev(" end", finish=None, logprobs=None)]
    raw = ('{"id":"r","object":"chat.completion.chunk","created":1,"model":"m",'
           '"choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}]}')
    for middle in ['"a"', '"b"', '"a"', '"c","reasoning_content":"d"', '"e" ', '"f\\u00e9"', 'null', '""', '"g\\n"',
                   '"h"}},{"index":1,"delta":{"content":"i"', '"j\\""', '"k"']:
        out.append(raw % middle)
    out.append(ev(" last", finish=None))
    return out


stats = {"requests": 0, "cancelled": 0, "last_body": None}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/stats":
            with lock:
                self.send_json(200, stats)
        else:
            self.send_json(404, {"error": {"message": "no such route"}})

    def event(self, obj):
        data = obj if isinstance(obj, str) else json.dumps(obj)
        chunk = ("data: %s\n\n" % data).encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.flush()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(length) or b"{}")
        with lock:
            stats["requests"] += 1
            stats["last_body"] = req
        prompt = ""
        for m in req.get("messages", []):
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                prompt = m["content"]
        if "FAIL400" in prompt:
            return self.send_json(400, {"error": {"message": "upstream says: prompt rejected", "type": "invalid_request_error"}})
        if "FAIL500" in prompt:
            return self.send_json(500, {"error": {"message": "upstream crashed"}})
        if "HANG" in prompt:
            time.sleep(30)
            return
        words = ["echo:"] + prompt.split()
        if "FAST" in prompt:
            n = int(prompt.split()[-1])
            words = ["tok"] * n
        max_tokens = req.get("max_tokens") or req.get("max_completion_tokens") or 10**9
        finish = "stop"
        if len(words) > max_tokens:
            words, finish = words[:max_tokens], "length"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": req.get("model")}
        try:
            self.event(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
            if "SHAPES" in prompt:
                for e in shape_events(req.get("model")):
                    self.event(e)
                words = []
            if "REASON" in prompt:
                self.event(dict(base, choices=[{"index": 0, "delta": {"reasoning_content": "thinking..."}, "finish_reason": None}]))
            for i, w in enumerate(words):
                text = w if i == 0 else " " + w
                self.event(dict(base, choices=[{"index": 0, "delta": {"content": text}, "finish_reason": None}]))
                if "MIDERROR" in prompt:
                    self.event({"error": {"message": "upstream broke mid-stream"}})
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if "SLOW" in prompt:
                    time.sleep(0.2)
            self.event(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
            self.event(dict(base, choices=[], usage={"prompt_tokens": len(prompt.split()), "completion_tokens": len(words), "total_tokens": len(prompt.split()) + len(words)}))
            self.event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            with lock:
                stats["cancelled"] += 1


def main():
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # clients that hang up are part of the tests
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
