#!/usr/bin/env node
// The small experiments behind NOTES.md. Usage: node notes_experiments.js [TOKENIZERS_DIR]
'use strict';
const path = require('path');
const { Tokenizer } = require('tokenizers');
const DIR = process.argv[2] || process.env.TOKENIZERS_DIR || '/work/shared/data/tokenizers';
const T = {};
for (const n of ['llama2', 'llama3', 'qwen3', 'mistral', 'gpt2-hf']) T[n] = Tokenizer.fromFile(path.join(DIR, n, 'tokenizer.json'));
const J = (x) => JSON.stringify(x);
async function enc(n, s, sp = false) {
  const e = await T[n].encode(s, null, { addSpecialTokens: sp });
  console.log(`${n} encode(${J(s)}, add_special_tokens=${sp}) -> ids ${J(e.getIds())} tokens ${J(e.getTokens())}`);
  return e.getIds();
}
async function dec(n, ids, skip = false) {
  let r;
  try { r = J(await T[n].decode(ids, skip)); } catch (e) { r = 'ERROR ' + e.message; }
  console.log(`${n} decode(${J(ids)}, skip_special_tokens=${skip}) -> ${r}`);
}
const b2u = (() => { const bs = []; for (let b = 0x21; b <= 0x7e; b++) bs.push(b); for (let b = 0xa1; b <= 0xac; b++) bs.push(b); for (let b = 0xae; b <= 0xff; b++) bs.push(b); const cs = bs.slice(); let n = 0; for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); } const m = []; bs.forEach((b, i) => { m[b] = String.fromCodePoint(cs[i]); }); return m; })();
const bl = (n, bytes) => bytes.map((b) => T[n].tokenToId(b2u[b]));

(async () => {
  console.log('## (a) llama2 segments around special tokens');
  for (const s of ['Hello <s> world', ' <s>x', '<s>x', 'x<s>', 'x <s> ', 'Hello', ' Hello', '', ' ', '<s>', ' <s>', '<s> ']) await enc('llama2', s);
  await enc('llama2', 'Hello <s> world', true);
  await enc('llama2', '', true);
  console.log('## (b) decode');
  await dec('llama3', [128000, 9906]);
  await dec('llama3', [128000, 9906], true);
  await dec('llama3', [9906, 128009, 9906]);
  await dec('llama2', [1, 29871]);
  await dec('llama2', [29871, 29871]);
  await dec('llama2', [29871]);
  await dec('llama2', [1, 15043]);
  await dec('llama2', [15043, 1, 15043]);
  await dec('llama2', [1, 29871, 15043]);
  await dec('llama2', [1, 15043], true);
  await dec('llama2', [29871, 1, 29871, 15043]);
  await dec('llama2', [3 + 0x20, 15043]);
  // non-ASCII added token content: add one on the fly (none of the 5 files has one)
  const t3 = Tokenizer.fromFile(path.join(DIR, 'llama3', 'tokenizer.json'));
  const { AddedToken } = require('tokenizers');
  t3.addAddedTokens([new AddedToken('<|é▁ĠÃ|>', true)]);
  const nid = t3.tokenToId('<|é▁ĠÃ|>');
  console.log(`llama3 + added special "<|é▁ĠÃ|>" id ${nid}: decode([${nid}]) -> ${J(await t3.decode([nid], false))}; decode([9906, ${nid}, 9906]) -> ${J(await t3.decode([9906, nid, 9906], false))}`);
  const t1 = Tokenizer.fromFile(path.join(DIR, 'llama2', 'tokenizer.json'));
  t1.addAddedTokens([new AddedToken('<é▁x>', true)]);
  const nid1 = t1.tokenToId('<é▁x>');
  console.log(`llama2 + added special "<é▁x>" id ${nid1}: decode([${nid1}]) -> ${J(await t1.decode([nid1], false))}; decode([29871, ${nid1}]) -> ${J(await t1.decode([29871, nid1], false))}`);
  // qwen3 special tokens through ByteLevel decoder
  await dec('qwen3', [151644, 872, 198, 151645]);
  // out of range
  await dec('llama2', [15043, 32000, 15043]);
  await dec('llama2', [15043, 999999, 15043]);
  await dec('llama3', [9906, 128256, 9906]);
  await dec('llama3', [9906, 200000, 9906]);
  await dec('gpt2-hf', [15496, 50295, 15496]);
  // invalid UTF-8 through byte-level (llama3)
  for (const bytes of [[0xc3], [0xc3, 0x41], [0xe2, 0x96], [0xf0, 0x9f, 0x98], [0xe2, 0x41, 0x96], [0x80, 0x80, 0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe0, 0x80, 0xaf], [0xf0, 0x9f, 0x98, 0x41, 0x80]]) {
    const hx = bytes.map((b) => b.toString(16)).join(' ');
    const a = J(await T.llama3.decode(bl('llama3', bytes), false));
    const ids2 = bytes.map((b) => 3 + b);
    const b = J(await T.llama2.decode(ids2, false));
    console.log(`bytes [${hx}]: llama3 ByteLevel -> ${a} | llama2 ByteFallback -> ${b}`);
  }
  await dec('llama2', [3 + 0xc3, 15043, 3 + 0xa9]);
  await dec('llama2', [3 + 0xc3, 3 + 0xa9, 3 + 0xc3]);
  await dec('llama3', [9906, bl('llama3', [0xc3])[0], 128000, bl('llama3', [0xa9])[0]]);
  console.log('## (c) gpt2-hf added space tokens');
  await enc('gpt2-hf', ' '.repeat(40));
  await enc('gpt2-hf', 'a' + ' '.repeat(31) + 'b');
  await enc('gpt2-hf', 'a' + ' '.repeat(2) + 'b');
  await enc('gpt2-hf', ' '.repeat(2));
  await enc('gpt2-hf', 'x' + ' '.repeat(5));
  await enc('gpt2-hf', '\n' + ' '.repeat(8) + 'return');
  await enc('gpt2-hf', 'a' + ' '.repeat(31) + 'b', true);
  await dec('gpt2-hf', [50257]);
  await dec('gpt2-hf', [50257], true);
  await enc('gpt2-hf', '\t\t\tx');
  await enc('gpt2-hf', '\t'.repeat(12));
  await enc('gpt2-hf', 'a  \n  b');
  console.log('## (d) qwen3 NFC');
  await enc('qwen3', '\uff21\uff11 \u00b2');
  await enc('qwen3', 'e\u0301');
  await enc('qwen3', '\u00e9');
  await enc('qwen3', '\u212b A\u030a \ufb01');
  await enc('llama3', 'e\u0301');
  console.log('## (e) llama3 ignore_merges');
  // find a vocab word that BPE merges would not produce
  await enc('llama3', ' Hello');
  await enc('llama3', 'Ġ');
  for (const s of [' jeho', 'lardan', ' nhanh', 'iyordu']) { await enc('llama3', s); await enc('qwen3', s); }
  console.log('## (b2) added tokens whose content is all byte-map chars go through ByteLevel; skip_special_tokens');
  const t3b = Tokenizer.fromFile(path.join(DIR, 'llama3', 'tokenizer.json'));
  t3b.addAddedTokens([new AddedToken('<|\u0120x\u0120|>', true), new AddedToken('<|\u00c3|>', true)]);
  for (const s of ['<|\u0120x\u0120|>', '<|\u00c3|>']) {
    const id = t3b.tokenToId(s);
    console.log(`llama3 + added special ${J(s)} id ${id}: decode([${id}]) -> ${J(await t3b.decode([id], false))}; decode([127, ${id}, 102]) -> ${J(await t3b.decode([127, id, 102], false))}`);
  }
  await dec('llama3', [127, 1717, 102]);
  await dec('llama3', [22691]);
  await dec('llama3', [220]);
  await dec('llama2', [198, 1, 172]);
  await dec('llama2', [198, 1, 172], true);
  await dec('llama2', [0]);
  await dec('llama2', [0], true);
  await dec('qwen3', [151657], true);
  await dec('qwen3', [151644], true);
  await enc('gpt2-hf', '  Hello');
  await enc('gpt2-hf', ' '.repeat(64));
  await enc('gpt2-hf', 'x <|endoftext|> y');
  await enc('llama3', 'x <|eot_id|> y');
  await enc('qwen3', 'a<tool_call>b');
  console.log('## (f) mistral vs llama2');
  for (const s of ['Hello <s> world', ' <s>x', 'Hello world', '  x', '1234567', '你好', 'e\u0301']) { await enc('mistral', s); await enc('llama2', s); }
  await dec('mistral', [1, 28705]);
  await dec('mistral', [28705, 28705]);
  console.log('## (g) add_special_tokens=true');
  for (const n of Object.keys(T)) { await enc(n, 'Hi', true); await enc(n, '', true); }
})();
