// The peer of `emdpo tokenize`: HF tokenizers (npm tokenizers@0.23.2) doing
// the same whole job: load the tokenizer.json, encodeBatch every line of
// standard input (all cores, as the library's Rust thread pool does), print
// the ids one JSON array per line.
// usage: node bench/tokenize_hf.js TOKENIZER.json [--special] < in.jsonl
const { Tokenizer } = require(process.env.TOKENIZERS_NPM || 'tokenizers');
const fs = require('fs');
(async () => {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const special = process.argv.includes('--special');
  const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
  const enc = await tok.encodeBatch(lines, { addSpecialTokens: special });
  fs.writeSync(1, enc.map((e) => JSON.stringify(Array.from(e.getIds()))).join('\n') + '\n');
})();
