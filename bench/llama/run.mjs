// llama.cpp's prefill and decode on a GGUF file, through node-llama-cpp's prebuilt CPU binaries:
// the engine's baseline for bench/llama_cpp.sh. Prints one line of JSON:
// {"prefill_tps", "decode_tps"}, the medians of ROUNDS rounds (each: a fresh sequence, a prompt of
// PROMPT random token ids evaluated without output, then GEN tokens decoded greedily).
// Usage: node bench/llama/run.mjs MODEL.gguf THREADS PROMPT GEN ROUNDS
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [modelPath, threads, nPrompt, nGen, rounds] = [process.argv[2], ...process.argv.slice(3, 7).map(Number)];
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: threads});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const context = await model.createContext({contextSize: nPrompt + nGen + 16, batchSize: Math.max(nPrompt, 32),
    threads: {ideal: threads, min: threads}, sequences: 1});
let seed = 1; // the prompt: ids 3-202, clear of the synthesized vocabularies' special tokens
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const pf = [], dc = [];
for (let r = 0; r < rounds; r++) {
    const prompt = Array.from({length: nPrompt}, () => 3 + (rand() % 200));
    const seq = context.getSequence();
    let t0 = process.hrtime.bigint();
    await seq.evaluateWithoutGeneratingNewTokens(prompt);
    let t1 = process.hrtime.bigint();
    pf.push(nPrompt / (Number(t1 - t0) / 1e9));
    let n = 0;
    t0 = process.hrtime.bigint();
    for await (const token of seq.evaluate([prompt[prompt.length - 1]], {temperature: 0})) {
        void token;
        if (++n >= nGen) break;
    }
    t1 = process.hrtime.bigint();
    dc.push(n / (Number(t1 - t0) / 1e9));
    seq.dispose();
}
console.log(JSON.stringify({prefill_tps: median(pf), decode_tps: median(dc), threads, prompt: nPrompt, gen: nGen}));
await context.dispose();
await model.dispose();
await llama.dispose();
