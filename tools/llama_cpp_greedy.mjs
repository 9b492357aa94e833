// Greedy generation (temperature 0) with llama.cpp, through the npm package
// node-llama-cpp (its prebuilt CPU build): the reference emdpo's GGUF tests
// compare against. For each prompt, one JSON line {"prompt", "prompt_ids",
// "ids"}: the prompt tokenized as llama.cpp does (BOS when the vocabulary
// asks for it, special-token text not parsed) and the generated ids, up to
// max_tokens or the end-of-generation token. The KV cache is kept in F32 so
// that llama.cpp's arithmetic is as close to emdpo's float32 as it goes.
//
//   npm install node-llama-cpp   (in a scratch folder; NODE_PATH pointing at its node_modules)
//   node tools/llama_cpp_greedy.mjs MODEL.gguf MAX_TOKENS PROMPT...
import {createRequire} from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || process.cwd(), "x.js"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

const [modelPath, maxTokensArg, ...prompts] = process.argv.slice(2);
if (!modelPath || !maxTokensArg || prompts.length === 0) {
    console.error("usage: node tools/llama_cpp_greedy.mjs MODEL.gguf MAX_TOKENS PROMPT...");
    process.exit(2);
}
const maxTokens = Number(maxTokensArg);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath});
for (const prompt of prompts) {
    const context = await model.createContext({
        contextSize: 512, sequences: 1, flashAttention: false,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    });
    const sequence = context.getSequence();
    let promptIds = model.tokenize(prompt, false);
    if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) promptIds = [model.tokens.bos, ...promptIds];
    const ids = [];
    if (maxTokens > 0) {
        for await (const token of sequence.evaluate(promptIds, {temperature: 0})) {
            if (model.isEogToken(token)) break;
            ids.push(token);
            if (ids.length >= maxTokens) break;
        }
    }
    console.log(JSON.stringify({prompt, prompt_ids: promptIds, ids}));
    await context.dispose();
}
await model.dispose();
await llama.dispose();
