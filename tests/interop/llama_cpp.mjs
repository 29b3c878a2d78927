// The built-in engine against llama.cpp (node-llama-cpp 3.22.1's prebuilt CPU build, installed in
// bench/llama by scripts/install-deps) on GGUF files veil synthesizes: the same token ids from
// each tokenizer kind (qwen2 and llama-3 byte-level BPE, qwen3's, SentencePiece) on hard strings,
// and the same greedy tokens from a qwen2 model in each weight type veil loads, where the two may
// part only at a near-tie of veil's own logits (the two runs round differently). Output: TAP lines.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { assert, check, done } from './lib/tap.mjs';

const VEIL = process.env.VEIL || 'build/veil';
const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'veil-llama-'));
const lib = path.join(here, '../../bench/llama/node_modules/node-llama-cpp/dist/index.js');

function veil(args, input) {
  const r = spawnSync(VEIL, args, { input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`veil ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.toString();
}

function synth(name, args) {
  const file = path.join(tmp, `${name}.gguf`);
  veil(['model', 'synth', '--preset', 'tiny', '--seed', '11', '--out', file, ...args]);
  return file;
}

// strings that tokenizers get wrong: contractions, digit runs, whitespace runs and kinds, mixed
// scripts, emoji with joiners, combining marks, punctuation runs, code
const HARD = [
  'Hello, world!', "Don't you've I'm we'll they'd it's", "DON'T SHOUT", '123 4567 89012 3.14159 1,000,000',
  '   leading and trailing   ', 'tabs\tand\nnewlines\r\nand\n\n\nblank lines', 'café naïve résumé Ångström',
  '日本語のテキスト、中文文本。', 'Привет, мир! Γειά σου κόσμε', '😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷', 'e\u0301 a\u0308 combining',
  '...!!!???---___***', 'def f(x):\n    return x**2  # square', '<|im_start|>user not special<|im_end|>',
  'a', ' ', '\n', 'x'.repeat(300), 'The quick brown fox jumps over the lazy dog. '.repeat(5),
];

const TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q5_0', 'q4_k', 'q5_k', 'q6_k', 'q4_k_m'];
const PROMPT = [3, 17, 44, 91, 150, 201, 260, 333, 402, 517, 608, 711];
const GEN = 16;

let llama = null;
try {
  if (!fs.existsSync(lib)) throw new Error('node-llama-cpp is not installed in bench/llama: run scripts/install-deps');
  const { getLlama, LlamaLogLevel } = await import(pathToFileURL(lib).href);
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: 2 });

  const kinds = [
    ['qwen2 byte-level BPE', synth('tok-qwen2', ['--arch', 'qwen2'])],
    ['qwen3 byte-level BPE', synth('tok-qwen3', ['--arch', 'qwen3'])],
    ['llama-3 byte-level BPE', synth('tok-llama', ['--arch', 'llama'])],
    ['SentencePiece (llama, --spm)', synth('tok-spm', ['--arch', 'llama', '--spm'])],
  ];
  for (const [kind, file] of kinds) {
    await check(`tokenizer ${kind}: the same ids as llama.cpp on ${HARD.length} hard strings`, async () => {
      const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      const lines = veil(['model', 'tokenize', file, '--json-lines'], HARD.map((s) => JSON.stringify(s)).join('\n') + '\n')
        .trim().split('\n').map((l) => JSON.parse(l));
      assert(lines.length === HARD.length, `veil gave ${lines.length} lines`);
      const diffs = [];
      HARD.forEach((s, i) => {
        const theirs = Array.from(model.tokenize(s, false));
        if (JSON.stringify(theirs) !== JSON.stringify(lines[i].ids))
          diffs.push(`${JSON.stringify(s).slice(0, 40)}: veil ${JSON.stringify(lines[i].ids).slice(0, 80)} llama.cpp ${JSON.stringify(theirs).slice(0, 80)}`);
      });
      await model.dispose();
      assert(diffs.length === 0, diffs.join('\n'));
    });
  }

  for (const type of TYPES) {
    await check(`greedy decoding, qwen2 ${type}: llama.cpp's ${GEN} tokens, or a parting at a near-tie of veil's logits`, async () => {
      // rows of 256 and 768: K-quant blocks are 256 wide (narrower rows fall back to other types)
      const file = synth(`w-${type}`, ['--arch', 'qwen2', '--type', type, '--dim', '256', '--ff', '768']);
      const info = JSON.parse(veil(['model', 'info', file, '--json']));
      const want = type === 'q4_k_m' ? 'Q4_K' : type.toUpperCase();
      assert(info.main_type === want, `the file's main type is ${info.main_type}, not ${want}`);
      const ours = JSON.parse(veil(['model', 'run', file, '--tokens', PROMPT.join(','), '-n', String(GEN), '--json'])).generated;
      const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      const ctx = await model.createContext({ contextSize: 256, sequences: 1, threads: { ideal: 2, min: 1 } });
      const theirs = [];
      for await (const t of ctx.getSequence().evaluate(PROMPT, { temperature: 0 })) {
        theirs.push(t);
        if (theirs.length >= GEN) break;
      }
      await ctx.dispose();
      await model.dispose();
      const k = ours.findIndex((t, i) => t !== theirs[i]);
      if (k < 0) return; // the same tokens
      // where they part: veil's logits at that step (the last position of prompt + the shared tokens)
      const lf = path.join(tmp, `logits-${type}.bin`);
      veil(['model', 'run', file, '--tokens', [...PROMPT, ...ours.slice(0, k)].join(','), '-n', '1', '--logits-out', lf]);
      const all = new Float32Array(fs.readFileSync(lf).buffer.slice(0));
      const vocab = info.vocab, last = all.subarray(all.length - vocab);
      let hi = -Infinity, lo = Infinity;
      for (const v of last) { hi = Math.max(hi, v); lo = Math.min(lo, v); }
      const gap = last[ours[k]] - last[theirs[k]];
      assert(gap >= 0 && gap <= 0.005 * (hi - lo),
        `parted at step ${k}: veil ${ours[k]} llama.cpp ${theirs[k]}, veil's logits ${last[ours[k]]} and ${last[theirs[k]]} ` +
        `(range ${hi - lo}): not a near-tie`);
      console.log(`# ${type}: parted at step ${k} of ${GEN} at a near-tie (gap ${gap.toExponential(2)}, logit range ${(hi - lo).toFixed(3)})`);
    });
  }
} catch (e) {
  await check('node-llama-cpp loads', async () => { throw e; });
} finally {
  if (llama) await llama.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
}
done();
