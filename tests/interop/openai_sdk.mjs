// The official OpenAI Node SDK against veil serve, changed only in base URL
// and key: non-streaming and streaming completions, usage, stop by length,
// and errors surfacing as the SDK's APIError with veil's status and message.
// Then the Venice page's complete JavaScript E2EE example (page/). Starts the
// mock upstream and veil serve itself. Output: TAP lines.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { assert, check, done, waitFor } from './lib/tap.mjs';

const VEIL = process.env.VEIL || 'build/veil';
const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'veil-sdk-'));
const procs = [];

try {
  const portfile = path.join(tmp, 'up.port');
  procs.push(spawn('/usr/bin/python3', [path.join(here, '../integration/mock_upstream.py'), portfile], { stdio: 'ignore' }));
  const up = await waitFor(() => fs.existsSync(portfile) && fs.readFileSync(portfile, 'utf8'));
  const out = path.join(tmp, 'serve.out');
  const serve = spawn(VEIL, ['serve', '--port', '0', '--api-key', 'sdk-key', '--upstream', `http://127.0.0.1:${up}/v1`,
    '--upstream-model', 'mock', '--model-id', 'e2ee-mock', '--tee', 'sim'], { stdio: ['ignore', fs.openSync(out, 'w'), 'ignore'],
    env: { ...process.env, VEIL_STATE_DIR: tmp } });
  procs.push(serve);
  const port = await waitFor(() => {
    const m = fs.existsSync(out) && fs.readFileSync(out, 'utf8').match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    return m && m[1];
  });
  const client = new OpenAI({ apiKey: 'sdk-key', baseURL: `http://127.0.0.1:${port}/api/v1`, maxRetries: 0 });

  await check('models.list', async () => {
    const page = await client.models.list();
    assert(page.data.map((m) => m.id).join() === 'e2ee-mock', JSON.stringify(page.data));
  });
  await check('chat.completions.create, non-streaming', async () => {
    const r = await client.chat.completions.create({ model: 'e2ee-mock', messages: [{ role: 'user', content: 'hi sdk' }] });
    assert(r.choices[0].message.content === 'echo: hi sdk', JSON.stringify(r));
    assert(r.usage.total_tokens === 5, JSON.stringify(r.usage));
  });
  await check('chat.completions.create, streaming with usage', async () => {
    const stream = await client.chat.completions.create({ model: 'e2ee-mock', stream: true,
      stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'stream me please' }] });
    let text = '', usage = null, finish = null;
    for await (const chunk of stream) {
      if (chunk.choices.length) {
        text += chunk.choices[0].delta.content || '';
        finish = chunk.choices[0].finish_reason || finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert(text === 'echo: stream me please', text);
    assert(finish === 'stop' && usage && usage.completion_tokens === 4, JSON.stringify({ finish, usage }));
  });
  await check('max_tokens gives finish_reason length', async () => {
    const r = await client.chat.completions.create({ model: 'e2ee-mock', max_tokens: 1,
      messages: [{ role: 'user', content: 'a b' }] });
    assert(r.choices[0].finish_reason === 'length', JSON.stringify(r));
  });
  await check('errors surface as APIError with status and message', async () => {
    try {
      await client.chat.completions.create({ model: 'missing', messages: [{ role: 'user', content: 'x' }] });
      throw new Error('no error');
    } catch (e) {
      assert(e instanceof OpenAI.APIError && e.status === 404 && /Model not found/.test(e.message), String(e));
    }
    const bad = new OpenAI({ apiKey: 'wrong', baseURL: `http://127.0.0.1:${port}/api/v1`, maxRetries: 0 });
    try {
      await bad.chat.completions.create({ model: 'e2ee-mock', messages: [{ role: 'user', content: 'x' }] });
      throw new Error('no error');
    } catch (e) {
      assert(e instanceof OpenAI.AuthenticationError && e.status === 401, String(e));
    }
  });
  await check("the page's complete JavaScript E2EE example prints the decrypted answer", async () => {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync('node', [path.join(here, 'page', 'e2ee_example.mjs')], {
      env: { ...process.env, API_KEY_VENICE: 'sdk-key', VEIL_BASE_URL: `http://127.0.0.1:${port}/api/v1`,
        VEIL_MODEL: 'e2ee-mock' }, encoding: 'utf8', timeout: 60000 });
    assert(out.includes('echo: What is 2+2? Answer briefly.'), out);
    assert(out.includes('Response decrypted end-to-end'), out);
  });
} finally {
  for (const p of procs) p.kill('SIGTERM');
}
done();
