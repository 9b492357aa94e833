#!/usr/bin/env node
// Writes the expected outputs of the official Hugging Face tokenizers
// (npm `tokenizers`, native bindings; pinned in regenerate.sh) for
// tests/fixtures/tokenizer_parity/strings.jsonl:
//
//   NAME.jsonl         one line per input string, in order:
//                      {"plain":[ids, add_special_tokens=false],
//                       "special":[ids, add_special_tokens=true],
//                       "decoded":decode(plain, skip_special_tokens=false),
//                       "decoded_special":decode(special, skip_special_tokens=false)}
//   NAME.decode.jsonl  {"ids":[...],"text":decode(ids, skip_special_tokens=false)}
//                      for nasty id sequences (seeded PRNG).
//
// Usage: node expected.js [TOKENIZERS_DIR] [FIXTURE_DIR]
//   TOKENIZERS_DIR defaults to $TOKENIZERS_DIR or /work/shared/data/tokenizers
//   FIXTURE_DIR    defaults to <repo>/tests/fixtures/tokenizer_parity
// `tokenizers` is resolved from $NODE_PATH / the current directory as usual.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const NAMES = ['llama2', 'llama3', 'qwen3', 'mistral', 'gpt2-hf'];
const TOKDIR = process.argv[2] || process.env.TOKENIZERS_DIR || '/work/shared/data/tokenizers';
const FIXDIR = process.argv[3] || path.join(__dirname, '..', '..', 'tests', 'fixtures', 'tokenizer_parity');
const N_DECODE = 300;

// JSON on one physical line whatever the line splitter: also escape DEL, the
// C1 controls (U+0085 NEL among them) and U+2028/U+2029.
function dumps(v) {
  return JSON.stringify(v).replace(/[\u007f-\u009f\u2028\u2029]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

// mulberry32: small deterministic PRNG
function prng(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// GPT-2 bytes_to_unicode: byte -> the character that stands for it in byte-level vocabularies
function bytesToUnicode() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  }
  const m = new Array(256);
  for (let i = 0; i < bs.length; i++) m[bs[i]] = String.fromCodePoint(cs[i]);
  return m;
}

// Byte patterns, valid and broken UTF-8.
const BYTE_PATTERNS = [
  [0x41], [0x00], [0x0a], [0x20], [0x7f], [0x80], [0xbf], [0xc0], [0xc1], [0xc3], [0xe2], [0xf0], [0xf4], [0xf5], [0xff],
  [0xc3, 0xa9],                    // é, valid
  [0xe2, 0x96, 0x81],              // ▁, valid
  [0xf0, 0x9f, 0x98, 0x80],        // 😀, valid
  [0xc3],                          // truncated 2-byte
  [0xe2, 0x96],                    // truncated 3-byte
  [0xf0, 0x9f, 0x98],              // truncated 4-byte
  [0xf0, 0x9f],                    // truncated 4-byte, 2 bytes
  [0xc3, 0x41],                    // lead then ASCII
  [0xe2, 0x41, 0x96],              // broken in the middle
  [0x80, 0x80, 0x80],              // lone continuations
  [0xc0, 0xaf],                    // overlong '/'
  [0xe0, 0x80, 0xaf],              // overlong 3-byte
  [0xf0, 0x80, 0x80, 0xaf],        // overlong 4-byte
  [0xed, 0xa0, 0x80],              // UTF-16 surrogate D800
  [0xed, 0xbf, 0xbf],              // surrogate DFFF
  [0xf4, 0x90, 0x80, 0x80],        // > U+10FFFF
  [0xf4, 0x8f, 0xbf, 0xbf],        // U+10FFFF, valid
  [0xf8, 0x88, 0x80, 0x80, 0x80],  // 5-byte form
  [0xfe, 0xff],                    // BOM-ish invalid bytes
  [0xef, 0xbb, 0xbf],              // BOM, valid
  [0xc3, 0xa9, 0xc3],              // valid then truncated
  [0xe2, 0x96, 0x81, 0xe2, 0x96],  // valid then truncated
  [0xc3, 0xc3, 0xa9],              // lead, lead+cont
  [0xe2, 0x82, 0xe2, 0x82, 0xac],  // truncated then € valid
  [0xf0, 0x9f, 0x98, 0x41, 0x80],  // truncated 4-byte, ASCII, continuation
  [0x20, 0xe2, 0x96, 0x81, 0x20],  // space ▁ space
];

function collectSpecials(tok, vocabSize) {
  // added tokens: those whose ids are at the top, plus known names
  const out = [];
  for (const s of ['<unk>', '<s>', '</s>', '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>',
    '<|start_header_id|>', '<|end_header_id|>', '<|reserved_special_token_5|>', '<|endoftext|>',
    '<|im_start|>', '<|im_end|>', '<think>', '</think>', '<tool_call>', '<|fim_prefix|>']) {
    const id = tok.tokenToId(s);
    if (id !== null && id !== undefined) out.push(id);
  }
  const base = tok.getVocabSize(false);
  for (let id = base; id < vocabSize; id++) out.push(id);
  return Array.from(new Set(out));
}

async function decodeCases(name, tok, rnd) {
  const V = tok.getVocabSize(true);
  const ri = (n) => Math.floor(rnd() * n);
  const pick = (a) => a[ri(a.length)];
  const specials = collectSpecials(tok, V);
  const cases = [];
  const add = (ids) => cases.push(ids);

  const spm = tok.idToToken(3) === '<0x00>';
  let byteId; // byte -> id of the token for that single byte
  if (spm) {
    byteId = (b) => 3 + b;
  } else {
    const b2u = bytesToUnicode();
    byteId = (b) => tok.tokenToId(b2u[b]);
  }
  const spaceTok = spm ? tok.tokenToId('\u2581') : tok.tokenToId('\u0120');
  const nlTok = spm ? byteId(0x0a) : tok.tokenToId('\u010a');
  const bos = specials[0];
  const enc = async (s) => (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
  const hello = await enc('Hello');
  const sHello = await enc(' Hello');
  const world = await enc(' world');
  const cafe = await enc('café 😀 ▁ 你好');

  // fixed cases
  add([]);
  add([spaceTok]);
  add([spaceTok, spaceTok]);
  add([spaceTok, spaceTok, spaceTok]);
  add([spaceTok, ...hello]);
  add([...sHello]);
  add([...sHello, ...world]);
  add([...hello, spaceTok]);
  add([nlTok, spaceTok, nlTok]);
  add([...cafe]);
  for (const s of specials.slice(0, 12)) {
    add([s]);
    add([s, spaceTok]);
    add([s, spaceTok, ...hello]);
    add([s, ...sHello, ...world]);
    add([spaceTok, s, spaceTok]);
    add([...hello, s, ...sHello]);
  }
  add(specials.slice(0, 20));
  add([bos, bos, bos]);
  // every special/added token on its own (bounded)
  for (const s of specials.slice(12, 60)) add([s]);
  // byte-level / byte-fallback: each byte pattern alone, after text, after a space, after a special
  for (const p of BYTE_PATTERNS) {
    const ids = p.map(byteId);
    if (ids.some((x) => x === null || x === undefined)) throw new Error(name + ': no token for a byte');
    add(ids);
    add([...hello, ...ids, ...world]);
    add([spaceTok, ...ids]);
    add([bos, ...ids, spaceTok]);
  }
  // all 256 single bytes, in chunks
  for (let b = 0; b < 256; b += 32) {
    const ids = [];
    for (let k = b; k < b + 32; k++) ids.push(byteId(k));
    add(ids);
  }
  // random byte tokens
  while (cases.length < 200) {
    const n = 1 + ri(8);
    const ids = [];
    for (let k = 0; k < n; k++) ids.push(rnd() < 0.7 ? byteId(0x80 + ri(128)) : byteId(ri(128)));
    if (rnd() < 0.3) ids.unshift(spaceTok);
    add(ids);
  }
  // random ids over the whole vocabulary, added/special tokens included
  while (cases.length < N_DECODE) {
    const n = ri(25);
    const ids = [];
    for (let k = 0; k < n; k++) {
      const r = rnd();
      if (r < 0.1) ids.push(pick(specials));
      else if (r < 0.2) ids.push(V - 1 - ri(Math.min(300, V)));
      else if (r < 0.3) ids.push(spm ? 3 + ri(256) : byteId(ri(256)));
      else if (r < 0.35) ids.push(spaceTok);
      else ids.push(ri(V));
    }
    add(ids);
  }
  const lines = [];
  for (const ids of cases) {
    const text = await tok.decode(ids, false);
    lines.push(dumps({ ids, text }));
  }
  return lines;
}

async function main() {
  const strings = fs.readFileSync(path.join(FIXDIR, 'strings.jsonl'), 'utf8')
    .split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
  for (let ni = 0; ni < NAMES.length; ni++) {
    const name = NAMES[ni];
    const tok = Tokenizer.fromFile(path.join(TOKDIR, name, 'tokenizer.json'));
    const lines = [];
    for (const s of strings) {
      const plain = (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
      const special = (await tok.encode(s, null, { addSpecialTokens: true })).getIds();
      const decoded = await tok.decode(plain, false);
      const decodedSpecial = await tok.decode(special, false);
      lines.push(dumps({ plain, special, decoded, decoded_special: decodedSpecial }));
    }
    fs.writeFileSync(path.join(FIXDIR, name + '.jsonl'), lines.join('\n') + '\n');
    const dl = await decodeCases(name, tok, prng(0x5eed + ni));
    fs.writeFileSync(path.join(FIXDIR, name + '.decode.jsonl'), dl.join('\n') + '\n');
    process.stderr.write(`${name}: ${lines.length} encode lines, ${dl.length} decode lines\n`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
