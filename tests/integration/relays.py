"""Relays that sit between veil proxy (or any client) and veil serve in the
proxy and attested-TLS suites (standard library and python3-cryptography):

- RecordingRelay: a TCP relay that keeps every byte of both directions, to
  show what crossed the wire.
- HostileRelay: an HTTP relay to veil serve that lies in one way, chosen by
  the first path segment (/replay/…, /keychange/…, /plaintext/…,
  /forgedsig/…, /honest/…).
- TlsMitm: a TLS relay with its own certificate in front of veil serve
  --tls, recording the plaintext it sees.
"""
import datetime
import http.client
import json
import os
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _pump(src, dst, sink, lock):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            with lock:
                sink.append(data)
            dst.sendall(data)
    except OSError:
        pass
    for s in (dst, src):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class RecordingRelay:
    """Listens on a free loopback port and relays to (host, port); .seen()
    is every byte that crossed, both ways."""

    def __init__(self, target_port, wrap_client=None, wrap_upstream=None):
        self.target = target_port
        self.chunks = []
        self.lock = threading.Lock()
        self.wrap_client = wrap_client
        self.wrap_upstream = wrap_upstream
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            if self.wrap_client:
                c = self.wrap_client(c)
            u = socket.create_connection(("127.0.0.1", self.target))
            if self.wrap_upstream:
                u = self.wrap_upstream(u)
        except (OSError, ssl.SSLError):
            c.close()
            return
        threading.Thread(target=_pump, args=(c, u, self.chunks, self.lock), daemon=True).start()
        _pump(u, c, self.chunks, self.lock)

    def seen(self):
        with self.lock:
            return b"".join(self.chunks)

    def close(self):
        self.sock.close()


def self_signed_pem(directory, cn="mitm.invalid"):
    """A fresh P-256 key and self-signed certificate for 127.0.0.1 (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(directory, cn + ".crt")
    key_path = os.path.join(directory, cn + ".key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def spki_sha256_of_pem(pem):
    """SHA-256 of a PEM certificate's DER SubjectPublicKeyInfo (python3-cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return h.finalize().hex()


class TlsMitm:
    """Terminates TLS with its own certificate and opens TLS to the real
    server (not verified): a man in the middle that sees the plaintext
    (.seen()). asyncio's TLS streams: an ssl socket cannot be read and
    written from two threads at once."""

    def __init__(self, target_port):
        import asyncio
        self.dir = tempfile.mkdtemp(prefix="veil-mitm-")
        cert, key = self_signed_pem(self.dir)
        self.cert_pem = open(cert).read()
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        self.chunks = []
        self.lock = threading.Lock()
        ready = threading.Event()

        async def pipe(r, w):
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        break
                    with self.lock:
                        self.chunks.append(data)
                    w.write(data)
                    await w.drain()
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
                pass
            finally:
                w.close()

        async def handle(reader, writer):
            try:
                ur, uw = await asyncio.open_connection("127.0.0.1", target_port, ssl=client_ctx)
            except (OSError, ssl.SSLError):
                writer.close()
                return
            await asyncio.gather(pipe(reader, uw), pipe(ur, writer))

        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await server.serve_forever()

        threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
        ready.wait(10)

    def seen(self):
        with self.lock:
            return b"".join(self.chunks)


class HostileRelay:
    """An HTTP relay to veil serve at `port` that lies as its path's first
    segment says. `alt_port`: a second veil serve (another key), where
    /keychange/ sends chat completions."""

    def __init__(self, port, alt_port=None):
        relay = self
        self.port_up, self.alt_port = port, alt_port
        self.first_attestation = {}
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def forward(self, method, body=None, port=None):
                mode, _, rest = self.path[1:].partition("/")
                conn = http.client.HTTPConnection("127.0.0.1", port or relay.port_up, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(method, "/" + rest, body=body, headers=headers)
                return mode, rest, conn, conn.getresponse()

            def reply(self, status, body, ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                mode, rest, conn, r = self.forward("GET")
                body = r.read()
                if mode == "replay" and rest.startswith("api/v1/tee/attestation"):
                    with relay.lock:  # the first attestation ever seen, for every later request
                        body = relay.first_attestation.setdefault("doc", body)
                if mode == "forgedsig" and rest.startswith("api/v1/tee/signature") and r.status == 200:
                    doc = json.loads(body)
                    sig = doc["signature"]
                    # another signature: r's first byte changed, so it recovers to another key or none
                    doc["signature"] = sig[:2] + ("%02x" % (int(sig[2:4], 16) ^ 0x5A)) + sig[4:]
                    body = json.dumps(doc).encode()
                self.reply(r.status, body, r.getheader("Content-Type", "application/json"))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode, _, _ = self.path[1:].partition("/")
                port = relay.alt_port if mode == "keychange" else None
                _, _, conn, r = self.forward("POST", body, port)
                self.send_response(r.status)
                self.send_header("Content-Type", r.getheader("Content-Type", "application/json"))
                self.send_header("Connection", "close")
                self.end_headers()
                n_content = 0
                while True:
                    line = r.readline()
                    if not line:
                        break
                    if mode == "plaintext" and line.startswith(b"data: {"):
                        ev = json.loads(line[6:])
                        delta = (ev.get("choices") or [{}])[0].get("delta", {})
                        if delta.get("content"):
                            n_content += 1
                            if n_content == 2:  # the second piece arrives unsealed
                                delta["content"] = "PWNED-PLAINTEXT"
                                line = b"data: " + json.dumps(ev).encode() + b"\n"
                    self.wfile.write(line)
                    self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client that left mid-answer is no news
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
