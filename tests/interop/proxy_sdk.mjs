// The official OpenAI Node SDK through veil proxy to veil serve (simulated
// TEE, the mock upstream's deterministic answers), changed only in base URL:
// models, non-streaming and streaming completions, and the proxy's refusals
// as the SDK's APIError; a recording relay between the proxy and the server
// shows that no plaintext marker crossed. Then attested TLS checked with
// independent code: the certificate's SPKI hashed by Node's X509Certificate,
// the binding signature recovered with @noble/curves and @noble/hashes, in
// both attestation dialects, and the SDK through a proxy that trusts the
// server's TLS key by its attestation alone. Starts everything itself.
// Output: TAP lines.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import OpenAI from 'openai';
import { assert, check, done, waitFor } from './lib/tap.mjs';

const VEIL = process.env.VEIL || 'build/veil';
const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'veil-proxy-sdk-'));
const procs = [];

// starts `veil ARGS` and waits for "listening on http(s)://127.0.0.1:PORT"
async function startVeil(name, args) {
  const out = path.join(tmp, `${name}.out`);
  const p = spawn(VEIL, args, { stdio: ['ignore', fs.openSync(out, 'w'), fs.openSync(path.join(tmp, `${name}.err`), 'w')],
    env: { ...process.env, VEIL_STATE_DIR: path.join(tmp, name) } });
  procs.push(p);
  return Number(await waitFor(() => {
    const m = fs.existsSync(out) && fs.readFileSync(out, 'utf8').match(/listening on https?:\/\/127\.0\.0\.1:(\d+)\//);
    return m && m[1];
  }));
}

// a TCP relay to `port` that keeps every byte both ways
function recordingRelay(port) {
  const seen = [];
  const server = net.createServer((c) => {
    const u = net.connect(port, '127.0.0.1');
    c.on('data', (d) => { seen.push(d); u.write(d); });
    u.on('data', (d) => { seen.push(d); c.write(d); });
    c.on('close', () => u.destroy());
    u.on('close', () => c.destroy());
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () =>
    resolve({ port: server.address().port, seen: () => Buffer.concat(seen), close: () => server.close() })));
}

// GET over https without CA checks: the JSON body and the server certificate's SPKI SHA-256 (Node's own X.509 code)
function getTls(url) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { rejectUnauthorized: false }, (res) => {
      const cert = res.socket.getPeerCertificate();
      const spki = new crypto.X509Certificate(cert.raw).publicKey.export({ type: 'spki', format: 'der' });
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ doc: JSON.parse(body), spki: crypto.createHash('sha256').update(spki).digest('hex') }));
    });
    req.on('error', reject);
  });
}

// the address that signed `text` (EIP-191 personal_sign), by @noble
function eip191Signer(text, sigHex) {
  const msg = new TextEncoder().encode(text);
  const prefix = new TextEncoder().encode(`\x19Ethereum Signed Message:\n${msg.length}`);
  const digest = keccak_256(new Uint8Array([...prefix, ...msg]));
  const sig = Buffer.from(sigHex.replace(/^0x/, ''), 'hex');
  const recovered = new Uint8Array(65);
  recovered[0] = sig[64] >= 27 ? sig[64] - 27 : sig[64];
  recovered.set(sig.subarray(0, 64), 1);
  const pub = secp256k1.Point.fromBytes(secp256k1.recoverPublicKey(recovered, digest, { prehash: false })).toBytes(false);
  return '0x' + Buffer.from(keccak_256(pub.subarray(1))).subarray(12).toString('hex');
}

const MARK = 'marker' + crypto.randomBytes(8).toString('hex');

try {
  const portfile = path.join(tmp, 'up.port');
  procs.push(spawn('/usr/bin/python3', [path.join(here, '../integration/mock_upstream.py'), portfile], { stdio: 'ignore' }));
  const up = await waitFor(() => fs.existsSync(portfile) && fs.readFileSync(portfile, 'utf8'));
  const serveArgs = ['--api-key', 'sdk-key', '--upstream', `http://127.0.0.1:${up}/v1`, '--upstream-model', 'mock',
    '--model-id', 'e2ee-mock', '--tee', 'sim', '--tee-rate-limit', '100000'];
  const serve = await startVeil('serve', ['serve', '--port', '0', ...serveArgs]);
  const relay = await recordingRelay(serve);
  const proxy = await startVeil('proxy', ['proxy', '--listen', '127.0.0.1:0', '--base-url',
    `http://127.0.0.1:${relay.port}/api/v1`, '--api-key', 'sdk-key', '--allow-simulated']);
  const client = new OpenAI({ apiKey: 'unused', baseURL: `http://127.0.0.1:${proxy}/v1`, maxRetries: 0 });

  await check('models.list through the proxy', async () => {
    const page = await client.models.list();
    assert(page.data.map((m) => m.id).join() === 'e2ee-mock', JSON.stringify(page.data));
  });

  await check('chat.completions.create (not streamed): the verified answer and usage; no plaintext on the wire', async () => {
    const before = relay.seen().length;
    const r = await client.chat.completions.create({ model: 'e2ee-mock',
      messages: [{ role: 'user', content: `sdk ${MARK}` }] });
    assert(r.choices[0].message.content === `echo: sdk ${MARK}`, JSON.stringify(r));
    assert(r.object === 'chat.completion' && r.usage.total_tokens > 0, JSON.stringify(r));
    const wire = relay.seen().subarray(before).toString('latin1');
    assert(wire.includes('X-Venice-TEE-Client-Pub-Key'), 'the upstream request was not E2EE');
    assert(!wire.includes(MARK) && !wire.includes('echo:'), 'plaintext crossed the wire');
  });

  await check('chat.completions.create (streamed): every delta, then the end; no plaintext on the wire', async () => {
    const before = relay.seen().length;
    const stream = await client.chat.completions.create({ model: 'e2ee-mock', stream: true,
      messages: [{ role: 'system', content: 'terse' }, { role: 'user', content: `streamed ${MARK} words` }] });
    let text = '', finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content || '';
      finish = chunk.choices[0]?.finish_reason || finish;
    }
    assert(text === `echo: streamed ${MARK} words`, text);
    assert(finish === 'stop', finish);
    const wire = relay.seen().subarray(before).toString('latin1');
    assert(!wire.includes(MARK) && !wire.includes('terse'), 'plaintext crossed the wire');
  });

  await check('the proxy refuses tools as an APIError 400 that says why', async () => {
    try {
      await client.chat.completions.create({ model: 'e2ee-mock', messages: [{ role: 'user', content: 'x' }],
        tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }] });
      throw new Error('no error');
    } catch (e) {
      assert(e instanceof OpenAI.APIError && e.status === 400, String(e));
      assert(e.message.includes('Function calling is not supported with E2EE'), e.message);
    }
  });

  // attested TLS
  const tls = await startVeil('serve-tls', ['serve', '--port', '0', '--tls', ...serveArgs]);
  await check('attested TLS: tls_spki_sha256 is the SPKI of the certificate served (Node X509Certificate)', async () => {
    const nonce = crypto.randomBytes(32).toString('hex');
    const { doc, spki } = await getTls(`https://127.0.0.1:${tls}/api/v1/tee/attestation?model=e2ee-mock&nonce=${nonce}`);
    assert(doc.tls_spki_sha256 === spki, `${doc.tls_spki_sha256} != ${spki}`);
    assert(doc.tls_key_origin === 'enclave', doc.tls_key_origin);
  });

  await check('attested TLS: the binding signature recovers to the attested address (@noble), both dialects', async () => {
    const nonce = crypto.randomBytes(32).toString('hex');
    const v = (await getTls(`https://127.0.0.1:${tls}/api/v1/tee/attestation?model=e2ee-mock&nonce=${nonce}`)).doc;
    const near = (await getTls(`https://127.0.0.1:${tls}/v1/attestation/report?model=e2ee-mock&nonce=${nonce}&signing_algo=ecdsa`)).doc;
    for (const d of [v, near]) {
      const signer = eip191Signer(`veil-tls-spki:${d.tls_spki_sha256}`, d.tls_binding_signature);
      assert(signer === d.signing_address.toLowerCase(), `${signer} != ${d.signing_address}`);
    }
    assert(near.tls_spki_sha256 === v.tls_spki_sha256, 'the dialects bind different keys');
    // a binding over another key does not recover to the attested address
    const other = eip191Signer(`veil-tls-spki:${'00'.repeat(32)}`, v.tls_binding_signature);
    assert(other !== v.signing_address.toLowerCase(), 'the binding signature is not specific to the key');
  });

  await check('the SDK through a proxy that trusts the TLS key by its attestation (--tls-attested)', async () => {
    const p = await startVeil('proxy-tls', ['proxy', '--listen', '127.0.0.1:0', '--base-url',
      `https://127.0.0.1:${tls}/api/v1`, '--api-key', 'sdk-key', '--allow-simulated', '--tls-attested']);
    const c = new OpenAI({ apiKey: 'unused', baseURL: `http://127.0.0.1:${p}/v1`, maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'e2ee-mock', messages: [{ role: 'user', content: 'over tls' }] });
    assert(r.choices[0].message.content === 'echo: over tls', JSON.stringify(r));
    const st = await (await fetch(`http://127.0.0.1:${p}/veil/status`)).json();
    const { spki } = await getTls(`https://127.0.0.1:${tls}/api/v1/models`);
    assert(st.tls_pin === spki, `pinned ${st.tls_pin}, served ${spki}`);
  });
  relay.close();
} finally {
  for (const p of procs) p.kill('SIGTERM');
}
done();
