#!/usr/bin/env node
// Synthetic tokenizer.json files (model BPE) that exercise the pipeline
// components the five real tokenizers do not use, and the expected outputs of
// the official Hugging Face tokenizers (npm `tokenizers`, native bindings;
// pinned in regenerate.sh) for them.
//
// Writes into FIXTURE_DIR/synthetic/:
//   NAME.json            the tokenizer, built here deterministically from JS
//                        objects (tiny BPE trainer over the corpus below)
//   NAME.expected.jsonl  one line per input string:
//                        {"text":s,"plain":ids(add_special_tokens=false),
//                         "special":ids(add_special_tokens=true),
//                         "decoded":decode(plain, skip_special_tokens=false),
//                         "decoded_skip":decode(special, skip_special_tokens=true)}
//                        ("decoded_skip" in added_* and post_* files only)
//                        or {"text":s,"error":true} when HF throws.
//   NAME.decode.jsonl    (decoder-focused files only) {"ids":[...],
//                        "text":decode(ids,false),"text_skip":decode(ids,true)}
//   MANIFEST.md          what each file tests
//
// Usage: node synthetic.js [FIXTURE_DIR]
//   FIXTURE_DIR defaults to <repo>/tests/fixtures/tokenizer_parity
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const FIXDIR = process.argv[2] || path.join(__dirname, '..', '..', 'tests', 'fixtures', 'tokenizer_parity');
const OUT = path.join(FIXDIR, 'synthetic');

function dumps(v) {
  return JSON.stringify(v).replace(/[\u007f-\u009f\u2028\u2029]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

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

function bytesToUnicode() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  const m = new Array(256);
  for (let i = 0; i < bs.length; i++) m[bs[i]] = String.fromCodePoint(cs[i]);
  return m;
}
const B2U = bytesToUnicode();
const hex2 = (b) => '<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>';

// ---------------------------------------------------------------- corpus
const CORPUS = `The quick brown fox jumps over the lazy dog. A tokenizer splits text into
tokens, and the model then maps every token to an id. Byte pair encoding starts
from single characters and merges the most frequent pair again and again, until
the vocabulary is large enough. Hello world! Hello there, how are you today?
It's a fine day; we're going to the park, and they'll meet us at 10:30 or 11:45.
In 2024 there were 365 days, 52 weeks and 12 months; 3.14159 is close to pi.
The cat sat on the mat. The cats sat on the mats. Concatenate the strings, then
print them: print("hello, world") and return 0 when the function is done.
Numbers like 100, 200, 1000 and 123456 appear in tables; prices are $5.99 or 20%.
She said that the weather would be better in the morning than in the evening.
Running, jumping, swimming and reading are things that people enjoy doing.
The United States, the United Kingdom and the European Union signed the treaty.
def tokenize(text): return [token for token in text.split(" ") if token]
for i in range(10): print(i * i)  # squares of the first ten integers
Café, naïve and résumé keep their accents; über and straße are German words.
A state-of-the-art, well-known and self-made plan: call 555-0199 or 555-0100 -- now --- then.
Dates 2024-01-31 and 12-34-56; lists 1, 2, 3, 4, 5, 6, 7, 8, 9, 0 and 10 20 30 40 50 60 70 80 90.
This is the end of the training text, and this is the last line of it.`;

// ----------------------------------------------------------- tiny BPE trainer
// words: array of arrays of symbols (one per occurrence). Returns merges [a,b].
function trainBPE(words, nMerges) {
  const counts = new Map();
  for (const w of words) {
    const k = w.join('\u0000');
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  let ws = Array.from(counts.entries()).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([k, n]) => ({ s: k.split('\u0000'), n }));
  const merges = [];
  while (merges.length < nMerges) {
    const pc = new Map();
    for (const w of ws) for (let i = 0; i + 1 < w.s.length; i++) {
      const k = w.s[i] + '\u0000' + w.s[i + 1];
      pc.set(k, (pc.get(k) || 0) + w.n);
    }
    let best = null, bn = 0;
    for (const [k, n] of pc) if (n > bn || (n === bn && best !== null && k < best)) { best = k; bn = n; }
    if (best === null) break;
    const [a, b] = best.split('\u0000');
    merges.push([a, b]);
    for (const w of ws) {
      const o = [];
      for (let i = 0; i < w.s.length; i++) {
        if (i + 1 < w.s.length && w.s[i] === a && w.s[i + 1] === b) { o.push(a + b); i++; } else o.push(w.s[i]);
      }
      w.s = o;
    }
  }
  return merges;
}

const GPT2_RE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const corpusOneLine = CORPUS.replace(/\n/g, ' ');

function utf8(s) { return Array.from(Buffer.from(s, 'utf8')); }

// Vocabulary from an ordered token list (duplicates skipped), ids contiguous.
function vocabFrom(tokens) {
  const v = {};
  let id = 0;
  for (const t of tokens) if (!(t in v)) v[t] = id++;
  return v;
}

// ---- base 1: byte-level (GPT-2 byte chars), ids 0..255 = byte value
function baseByteLevel(nMerges = 200, extra = []) {
  const words = (CORPUS.match(GPT2_RE) || []).map((p) => utf8(p).map((b) => B2U[b]));
  const merges = trainBPE(words, nMerges);
  const toks = [];
  for (let b = 0; b < 256; b++) toks.push(B2U[b]);
  for (const [a, b] of merges) toks.push(a + b);
  for (const t of extra) toks.push(t);
  return { vocab: vocabFrom(toks), merges };
}

// ---- base 2: SentencePiece style: <unk> <s> </s>, <0x00>..<0xFF>, chars, merges over "▁word"
const ASCII_CHARS = Array.from('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?\'"()[]{}-_/*#$%&+=<>@\\|~^`');
function corpusChars() { return Array.from(new Set(Array.from(CORPUS.replace(/\s/g, '')))).sort(); }
function baseSP({ nMerges = 200, missingBytes = [], dropChars = null, noBytes = false, lower = false, frontMerges = [] } = {}) {
  const keep = (c) => !dropChars || !dropChars.includes(c);
  let text = lower ? corpusOneLine.toLowerCase() : corpusOneLine;
  const words = text.split(' ').filter((w) => w.length).map((w) => ['\u2581', ...Array.from(w)])
    .map((w) => { // split at dropped chars so no merge contains them
      return w;
    }).filter((w) => w.every(keep));
  const merges = [...frontMerges, ...trainBPE(words, nMerges)];
  const toks = ['<unk>', '<s>', '</s>'];
  if (!noBytes) for (let b = 0; b < 256; b++) if (!missingBytes.includes(b)) toks.push(hex2(b));
  toks.push('\u2581');
  for (const c of [...ASCII_CHARS, ...corpusChars()]) if (keep(c)) toks.push(c);
  for (const [a, b] of merges) toks.push(a + b);
  return { vocab: vocabFrom(toks), merges };
}

// ---- base 3: raw characters incl. ' ', '\n', '\t' and '▁', merges over GPT-2 style words (raw spaces)
function baseRaw(nMerges = 200, extraMerges = []) {
  const words = (CORPUS.match(GPT2_RE) || []).map((p) => Array.from(p));
  const merges = trainBPE(words, nMerges);
  for (const m of extraMerges) if (!merges.some((x) => x[0] === m[0] && x[1] === m[1])) merges.push(m);
  const toks = ['<unk>', '<s>', '</s>'];
  for (let b = 0; b < 256; b++) toks.push(hex2(b));
  toks.push(' ', '\n', '\t', '\u2581');
  for (const c of [...ASCII_CHARS, ...corpusChars()]) toks.push(c);
  for (const [a, b] of merges) toks.push(a + b);
  return { vocab: vocabFrom(toks), merges };
}

// --------------------------------------------------------------- builders
function model(base, opts = {}) {
  const arrays = opts.arrays !== undefined ? opts.arrays : false;
  return {
    type: 'BPE',
    dropout: null,
    unk_token: opts.unk === undefined ? null : opts.unk,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: !!opts.fuse_unk,
    byte_fallback: !!opts.byte_fallback,
    ignore_merges: !!opts.ignore_merges,
    vocab: base.vocab,
    merges: arrays ? base.merges.map((m) => [m[0], m[1]]) : base.merges.map((m) => m[0] + ' ' + m[1]),
  };
}
function tokenizer({ added = [], normalizer = null, pre = null, post = null, decoder = null, mdl }) {
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: added, normalizer, pre_tokenizer: pre, post_processor: post, decoder, model: mdl,
  };
}
function at(id, content, f = {}) {
  return {
    id, content,
    single_word: !!f.single_word, lstrip: !!f.lstrip, rstrip: !!f.rstrip,
    normalized: !!f.normalized, special: f.special === undefined ? true : !!f.special,
  };
}
const SPT = (v) => [at(v['<unk>'], '<unk>'), at(v['<s>'], '<s>'), at(v['</s>'], '</s>')];
const N = {
  nfc: { type: 'NFC' }, nfd: { type: 'NFD' }, nfkc: { type: 'NFKC' }, nfkd: { type: 'NFKD' },
  lower: { type: 'Lowercase' },
  strip: (l, r) => ({ type: 'Strip', strip_left: l, strip_right: r }),
  replace: (p, c) => ({ type: 'Replace', pattern: { String: p }, content: c }),
  replaceRe: (p, c) => ({ type: 'Replace', pattern: { Regex: p }, content: c }),
  prepend: (p) => ({ type: 'Prepend', prepend: p }),
  seq: (...n) => ({ type: 'Sequence', normalizers: n }),
};
const P = {
  meta: (scheme, split) => ({ type: 'Metaspace', replacement: '\u2581', prepend_scheme: scheme, split }),
  digits: (ind) => ({ type: 'Digits', individual_digits: ind }),
  split: (pattern, behavior, invert = false) => ({ type: 'Split', pattern, behavior, invert }),
  bl: (aps, re) => ({ type: 'ByteLevel', add_prefix_space: aps, trim_offsets: true, use_regex: re }),
  seq: (...p) => ({ type: 'Sequence', pretokenizers: p }),
};
const D = {
  meta: (scheme, split = true) => ({ type: 'Metaspace', replacement: '\u2581', prepend_scheme: scheme, split }),
  strip: (c, start, stop) => ({ type: 'Strip', content: c, start, stop }),
  replace: (p, c) => ({ type: 'Replace', pattern: { String: p }, content: c }),
  bf: { type: 'ByteFallback' }, fuse: { type: 'Fuse' },
  bl: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  seq: (...d) => ({ type: 'Sequence', decoders: d }),
};
const SPDEC = D.seq(D.replace('\u2581', ' '), D.bf, D.fuse); // llama2 without the Strip
const tmplSeq = (pieces) => pieces.map((p) => (p === '$A' ? { Sequence: { id: 'A', type_id: 0 } }
  : p === '$B' ? { Sequence: { id: 'B', type_id: 1 } } : { SpecialToken: { id: p, type_id: 0 } }));
function template(single, pair, specials) {
  const st = {};
  for (const [name, ids, tokens] of specials) st[name] = { id: name, ids, tokens };
  return { type: 'TemplateProcessing', single: tmplSeq(single), pair: tmplSeq(pair), special_tokens: st };
}

// ------------------------------------------------------------- test strings
const COMMON = [
  '', ' ', '  ', '   ', '\t', '\n', ' \n ', '\r\n', 'x', ' x', 'x ', ' x ',
  'Hello world', ' Hello world ', 'hello  world', 'Hello, World! HELLO world.',
  'the quick brown fox jumps over the lazy dog', 'The Quick Brown Fox', 'a b c',
  '12345', '3.14159 and 2,718', 'abc123def 456', '007 0.5 1e10 -42', 'phone: 555-0199',
  'café naïve', 'cafe\u0301', 'ﬁ ﬃ Ａ１２ Ⅻ', 'x² H₂O ½ ①', 'İstanbul ΣΑΣ straße ǅ', '日本語 テスト',
  '😀 👍🏽', '\u2581', '\u2581\u2581x', 'a\u2581b', 'tab\tand\nnewline\r\n', '\u00a0nbsp\u3000ideo',
  '<s>', '</s>', '<s> hello </s>', '<unk>', '<0x41>', "don't won't it's", '  leading and trailing  ',
  'multiple   spaces   here', 'ALLCAPS lowercase MiXeD', '--- dashes -- and - single', 'a1b2c3', '0',
  'hello\u200bworld', '\u0000nul', '\ufeffbom', 'The cat sat on the mat.',
];
const GROUP = {
  norm: [
    'ﬁ', 'Ａ', '①', '㎏', '™', '…', '½', 'ｶﾀｶﾅ', 'ﾊﾟ', 'Å', 'A\u030a', 'Ω', 'é', 'e\u0301', '가', '\u1100\u1161\u11a8',
    'ǆ', 'ﷺ', 'ẞ', 'İ', 'Σ final ς', 'ΑΣ ΟΔΟΣ', 'Ǆ', 'ﬀ', 'K', 'Ⅷ', 'fi FI Fi', 'STRASSE Straße',
    '\u2003em space', 'x\u00a0y', '\u3000', '\u0345', 'ＨＥＬＬＯ ｗｏｒｌｄ', '\u1e9b\u0323',
    'hello', 'llama ll lll llll', 'fooooo', 'ab ab', 'Ll LL', 'a  b   c', '\u2581hello',
    '   ', ' a ', '\t a \n', '\u00a0a\u00a0', '\u3000x\u3000', '\u200bx\u200b', 'x\n', '\n\nx\n\n',
    '\u2028x\u2029', '\u0085x\u0085', '\u000bx\u000c', ' <s> ', '<s>x</s>', 'A<s>B',
  ],
  pre: [
    '1', '12', '123 456', 'a1', '1a', 'x12y34z', '3.14', '1,000,000', '١٢٣ arabic', '²³', '①②', '۴', '๒',
    '𝟙𝟚', 'Ⅻ', '1 2  3', ' 42 ', '2024-01-31', 'a  b', 'a   b', ' a', '  a', 'a ', 'a  ', '\ta', 'a\n\nb',
    'a-b', 'a--b', 'a---b', '----', '-----', '-', ' - ', 'a - b', '-a-', 'x, y; z.', 'hello,world', 'end.',
    '...', '?!', 'word1 word2', '\u2581', '\u2581a', 'a\u2581b', '\u2581 \u2581', 'Hello\u2581world',
    ' \u2581 ', 'x <s> y', '<s>', ' <s>', '<s> ', 'a<s>b', '<s><s>', '<x>', 'x <x> y', ' <x>', '<x> ',
    'Hello <s> world <x> again',
  ],
  added: [
    '<s>', '<s><s>', ' <s> ', 'a<s>b', 'a <s> b', '<l>', 'x <l> y', 'x<l>y', 'x  <l>  y', '\n<l>\n', '<l> ',
    '<r>', 'x <r> y', 'x<r>  y', ' <r>', 'x <lr> y', 'x\t<lr>\ty', '  <lr>  ', 'cat', ' cat ', 'cats', 'concat',
    'cat.', '(cat)', 'cat cat', '_cat_', 'catcat', 'the cat sat', '<a>', '<a><b>', '<a><b><a>', '<a> <b>',
    '<a><a><b>', '<a><b', '<a>b>', 'Hello', 'HELLO', 'hello', 'HeLLo world', 'WORLD', 'world', 'World',
    'WORLDWORLD', 'he', 'hehe', 'the', 'then', 'she he', '<new>', '<New>', 'x<new>y', 'ö<new>ö', '<s>\n',
    '<gap>', 'a<gap>b', '<gap><gap>', '<é\u2581>', 'x <é\u2581> y', '<l><r><lr>', '<r><l>',
  ],
  post: [
    '<s>', '</s>', '<s> x </s>', '[CLS]', '[SEP]', '[CLS] x [SEP]', '<x1>', '<x2>', 'a<x1>b', '<s></s>',
  ],
  model: [
    'ABC', 'xyz', 'Zebra 999 QQQ', 'ééé', '日日', 'héllo wörld', '😀😀', '\u0080', '\u00ff', 'ÿ', '€', 'ü',
    '𝄞', 'a€b€€c', 'UNKNOWN 789', '~~~', 'NOPQ', 'nopq', 'zzz', '56789', 'n1o2p3', 'XyZ', 'Ñ', 'ñandú',
    'a\u00a0b', '\u0300', 'Ⓐ', '你好', '\u4e00\u4e01', 'Привет', 'ü€😀日', 'hello world tokenizer 12345',
    ' hello', 'Hello', 'Ġhello', 'tokenizer', ' tokenizer', ' world', 'world', '12345', ' 12345',
    '😀日', '😀€😀', '😀😀€', 'x😀€y', '€😀€ 😀', 'Z😀Z',
  ],
};
function loadStringsSubset() {
  const p = path.join(FIXDIR, 'strings.jsonl');
  const lines = fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.length > 0);
  const out = [];
  lines.forEach((l, i) => { const s = JSON.parse(l); if (i % 40 === 0 && Array.from(s).length <= 100) out.push(s); });
  return out;
}

// ------------------------------------------------------------ the files
function defs() {
  const files = [];
  const add = (name, group, desc, build, decode = false, strip = null) => files.push({ name, group, desc, build, decode, strip });

  // 1. normalizers: raw-char base (merges as arrays: they contain ' '), no pre-tokenizer
  const rawFile = (norm, dec = D.seq(D.bf, D.fuse)) => () => {
    const b = baseRaw();
    return tokenizer({ added: SPT(b.vocab), normalizer: norm, decoder: dec,
      post: template(['<s>', '$A'], ['<s>', '$A', '$B'], [['<s>', [1], ['<s>']]]),
      mdl: model(b, { arrays: true, byte_fallback: true, unk: '<unk>', fuse_unk: true }) });
  };
  add('norm_nfkc', 'norm', 'normalizer NFKC', rawFile(N.nfkc));
  add('norm_nfd', 'norm', 'normalizer NFD', rawFile(N.nfd));
  add('norm_nfkd', 'norm', 'normalizer NFKD', rawFile(N.nfkd));
  add('norm_lowercase', 'norm', 'normalizer Lowercase (Unicode lowercasing: İ, Σ, ẞ, ǅ...)', rawFile(N.lower));
  add('norm_strip_left', 'norm', 'normalizer Strip left=true right=false', rawFile(N.strip(true, false)));
  add('norm_strip_right', 'norm', 'normalizer Strip left=false right=true', rawFile(N.strip(false, true)));
  add('norm_strip_both', 'norm', 'normalizer Strip left=true right=true', rawFile(N.strip(true, true)));
  add('norm_replace_string', 'norm', 'normalizer Replace String "ll" -> "L" (shrinks text; "lll" -> "Ll")', rawFile(N.replace('ll', 'L')));
  add('norm_replace_regex', 'norm', 'normalizer Replace Regex "\\s+" -> " " (collapses whitespace runs)', rawFile(N.replaceRe('\\s+', ' ')));
  add('norm_prepend', 'norm', 'normalizer Prepend "▁" alone (no Replace): spaces stay raw spaces', rawFile(N.prepend('\u2581')));
  add('norm_sequence', 'norm', 'normalizer Sequence[NFKC, Lowercase, Prepend "▁", Replace " "->"▁"]; decoder Seq[Replace ▁->" ", ByteFallback, Fuse, Strip " " 1 0]',
    rawFile(N.seq(N.nfkc, N.lower, N.prepend('\u2581'), N.replace(' ', '\u2581')),
      D.seq(D.replace('\u2581', ' '), D.bf, D.fuse, D.strip(' ', 1, 0))));

  // 2. pre-tokenizers
  const spFile = (pre, dec, extra = {}) => () => {
    const b = baseSP({ frontMerges: extra.frontMerges || [] });
    const added = [...SPT(b.vocab), at(Object.keys(b.vocab).length, '<x>', { special: false })];
    return tokenizer({ added, normalizer: extra.normalizer || null, pre, decoder: dec,
      post: template(['<s>', '$A'], ['<s>', '$A', '$B'], [['<s>', [1], ['<s>']]]),
      mdl: model(b, { byte_fallback: true, unk: '<unk>', fuse_unk: true }) });
  };
  // first-rank merges across "▁" so that split=false (one word) differs from split=true
  const META_MERGES = [['\u2581', '\u2581'], ['o', '\u2581'], ['e', '\u2581'], ['d', '\u2581'], ['x', '\u2581'], ['\u2581\u2581', '\u2581']];
  for (const scheme of ['always', 'first', 'never']) {
    for (const split of [true, false]) {
      add(`pre_metaspace_${scheme}_${split ? 'split' : 'nosplit'}`, 'pre',
        `pre_tokenizer Metaspace prepend_scheme=${scheme} split=${split}; decoder Metaspace prepend_scheme=${scheme}; added special <s>, non-special <x>`,
        spFile(P.meta(scheme, split), D.seq(D.bf, D.meta(scheme, split)), { frontMerges: META_MERGES }), true);
    }
  }
  const spBF = D.seq(D.bf, D.fuse);
  // extra merges so that pieces ending in a delimiter ("e-", "t ", "5-"...) can be one token
  const SPLIT_MERGES = [['e', '-'], ['f', '-'], ['t', ' '], ['s', ' '], ['w', ' '], ['d', ' '], ['5', '-'], ['0', ' '],
    ['-', ' '], [' ', ' '], ['1', '0'], ['2', '0'], ['5', '5']];
  const rawPre = (pre) => () => {
    const b = baseRaw(200, SPLIT_MERGES);
    const added = [...SPT(b.vocab), at(Object.keys(b.vocab).length, '<x>', { special: false })];
    return tokenizer({ added, pre, decoder: spBF,
      post: template(['<s>', '$A'], ['<s>', '$A', '$B'], [['<s>', [1], ['<s>']]]),
      mdl: model(b, { arrays: true, byte_fallback: true, unk: '<unk>', fuse_unk: true }) });
  };
  add('pre_digits_individual', 'pre', 'pre_tokenizer Digits individual_digits=true (RAW vocab)', rawPre(P.digits(true)));
  add('pre_digits_grouped', 'pre', 'pre_tokenizer Digits individual_digits=false', rawPre(P.digits(false)));
  const RE = { Regex: '\\s|[0-9]|-' };
  for (const beh of ['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous']) {
    add(`pre_split_regex_${beh.toLowerCase()}`, 'pre', `pre_tokenizer Split Regex "\\s|[0-9]|-" behavior=${beh} invert=false`, rawPre(P.split(RE, beh)));
  }
  add('pre_split_regex_invert_removed', 'pre', 'pre_tokenizer Split Regex "\\p{L}+" behavior=Removed invert=true (keeps only the letter runs)',
    rawPre(P.split({ Regex: '\\p{L}+' }, 'Removed', true)));
  add('pre_split_regex_invert_mergedwithnext', 'pre', 'pre_tokenizer Split Regex "\\p{L}+" behavior=MergedWithNext invert=true',
    rawPre(P.split({ Regex: '\\p{L}+' }, 'MergedWithNext', true)));
  add('pre_split_string_contiguous', 'pre', 'pre_tokenizer Split String "--" behavior=Contiguous (literal pattern, non-overlapping matches)',
    rawPre(P.split({ String: '--' }, 'Contiguous')));
  add('pre_split_string_removed_space', 'pre', 'pre_tokenizer Split String " " behavior=Removed',
    rawPre(P.split({ String: ' ' }, 'Removed')));
  const blFile = (pre, opts = {}) => () => {
    const b = baseByteLevel(300, opts.extraVocab || []);
    const V = Object.keys(b.vocab).length;
    const added = opts.added ? opts.added(b.vocab, V) : [at(V, '<|endoftext|>')];
    return tokenizer({ added, normalizer: opts.normalizer || null, pre,
      post: opts.post === undefined ? { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true } : opts.post,
      decoder: opts.decoder === undefined ? D.bl : opts.decoder,
      mdl: model(b, { ignore_merges: !!opts.ignore_merges }) });
  };
  add('pre_bytelevel_prefix', 'pre', 'pre_tokenizer ByteLevel add_prefix_space=true use_regex=true (GPT-2 regex); decoder ByteLevel; post ByteLevel',
    blFile(P.bl(true, true)), true);
  add('pre_bytelevel_prefix_noregex', 'pre', 'pre_tokenizer ByteLevel add_prefix_space=true use_regex=false (whole text is one word)',
    blFile(P.bl(true, false)));
  add('pre_seq_digits_bytelevel', 'pre', 'pre_tokenizer Sequence[Digits individual=true, ByteLevel add_prefix_space=false use_regex=true]',
    blFile(P.seq(P.digits(true), P.bl(false, true))));

  // 3. decoders (SP base, Metaspace always pre-tokenizer unless said otherwise)
  const M = P.meta('always', true);
  add('dec_strip_per_token', 'dec', 'decoder Strip content="▁" start=3 stop=0 alone (applied to each token; byte tokens stay "<0xHH>" text); Metaspace always split=false so "▁▁▁x" tokens occur',
    spFile(P.meta('always', false), D.strip('\u2581', 3, 0)), true, { content: '\u2581', start: 3, stop: 0, before: null });
  add('dec_strip_per_token_stop', 'dec', 'decoder Strip content="x" start=2 stop=2 alone (per token; panics in HF for tokens made only of 1-3 "x": recorded as *_panic)',
    spFile(M, D.strip('x', 2, 2)), true, { content: 'x', start: 2, stop: 2, before: null });
  add('dec_strip_after_fuse', 'dec', 'decoder Sequence[Replace ▁->" ", ByteFallback, Fuse, Strip " " start=2 stop=2] (Strip after Fuse = on the whole text; HF panics when that text is empty or only 1-3 spaces: recorded as *_panic)',
    spFile(M, D.seq(D.replace('\u2581', ' '), D.bf, D.fuse, D.strip(' ', 2, 2))), true,
    { content: ' ', start: 2, stop: 2, before: D.seq(D.replace('\u2581', ' '), D.bf, D.fuse) });
  add('dec_replace', 'dec', 'decoder Replace String "▁" -> "_-" alone (no ByteFallback: "<0xHH>" tokens kept as text)',
    spFile(M, D.replace('\u2581', '_-')), true);
  add('dec_bytefallback_fuse', 'dec', 'decoder Sequence[ByteFallback, Fuse] (no ▁ replacement)',
    spFile(M, D.seq(D.bf, D.fuse)), true);
  add('dec_bytefallback_only', 'dec', 'decoder ByteFallback alone (no Fuse)', spFile(M, D.bf), true);
  add('dec_none', 'dec', 'no decoder: decode joins the tokens with single spaces', spFile(M, null), true);

  // 4. added tokens
  const addedSet = (v, V, gapFirst) => [
    at(v['<unk>'] !== undefined ? v['<unk>'] : V, '<unk>'),
    ...(v['<s>'] !== undefined ? [at(v['<s>'], '<s>'), at(v['</s>'], '</s>')] : []),
    at(V + 1, '<l>', { lstrip: true }),
    at(V + 2, '<r>', { rstrip: true }),
    at(V + 3, '<lr>', { lstrip: true, rstrip: true }),
    at(V + 4, 'cat', { single_word: true, special: false }),
    at(V + 5, '<a>', { special: false }),
    at(V + 6, '<a><b>', { special: false }),
    at(V + 7, 'Hello', { normalized: true, special: false }),
    at(V + 8, 'WORLD', { normalized: false, special: false }),
    at(v.he, 'he', { special: false }),
    at(V + 9, '<new>', { special: false }),
    at(V + 10, '<é\u2581>'),
    at(gapFirst, '<gap>'),
  ];
  add('added_flags_metaspace', 'added', 'added tokens lstrip/rstrip/single_word/overlap("<a>" vs "<a><b>")/in-vocab ("he")/beyond vocab (ids V.., and "<gap>" at V+100); SP base, normalizer Seq[Prepend ▁, Replace " "->▁] (llama style), decoder llama2 style',
    () => {
      const b = baseSP();
      const V = Object.keys(b.vocab).length;
      return tokenizer({ added: addedSet(b.vocab, V, V + 100), normalizer: N.seq(N.prepend('\u2581'), N.replace(' ', '\u2581')),
        post: template(['<s>', '$A'], ['<s>', '$A', '$B'], [['<s>', [1], ['<s>']]]),
        decoder: D.seq(D.replace('\u2581', ' '), D.bf, D.fuse, D.strip(' ', 1, 0)),
        mdl: model(b, { byte_fallback: true, unk: '<unk>', fuse_unk: true }) });
    });
  add('added_flags_bytelevel', 'added', 'same added tokens on a byte-level BPE (ByteLevel pre-tokenizer no prefix space, ByteLevel decoder); "<unk>" is an added special token beyond the vocab',
    blFile(P.bl(false, true), { added: (v, V) => addedSet(v, V, V + 100) }));
  add('added_normalized_lowercase', 'added', 'normalizer Lowercase; "Hello" normalized=true (matches hello/HELLO), "WORLD" normalized=false (matches only raw WORLD); plus the other flags; Metaspace always',
    () => {
      const b = baseSP({ lower: true });
      const V = Object.keys(b.vocab).length;
      return tokenizer({ added: addedSet(b.vocab, V, V + 100), normalizer: N.lower, pre: P.meta('always', true),
        decoder: D.seq(D.bf, D.fuse, D.meta('always', true)),
        mdl: model(b, { byte_fallback: true, unk: '<unk>', fuse_unk: true }) });
    });
  add('added_normalized_nfkc', 'added', 'normalizer NFKC; same added tokens ("Hello" normalized=true also matches "Ｈｅｌｌｏ"); no pre-tokenizer; decoder ByteFallback+Fuse',
    () => {
      const b = baseSP();
      const V = Object.keys(b.vocab).length;
      return tokenizer({ added: addedSet(b.vocab, V, V + 100), normalizer: N.nfkc,
        decoder: D.seq(D.bf, D.fuse),
        mdl: model(b, { byte_fallback: true, unk: '<unk>', fuse_unk: true }) });
    });

  // 5. post-processors
  const postSP = (post, extraAdded = []) => () => {
    const b = baseSP();
    const V = Object.keys(b.vocab).length;
    return tokenizer({ added: [...SPT(b.vocab), ...extraAdded.map(([c, k]) => at(V + k, c))],
      normalizer: N.seq(N.prepend('\u2581'), N.replace(' ', '\u2581')), post: post(V),
      decoder: D.seq(D.replace('\u2581', ' '), D.bf, D.fuse, D.strip(' ', 1, 0)),
      mdl: model(b, { byte_fallback: true, unk: '<unk>', fuse_unk: true }) });
  };
  add('post_template_bos_eos', 'post', 'post TemplateProcessing single "<s> $A </s>", pair "<s> $A </s> $B </s>" (llama style otherwise)',
    postSP(() => template(['<s>', '$A', '</s>'], ['<s>', '$A', '</s>', '$B', '</s>'], [['<s>', [1], ['<s>']], ['</s>', [2], ['</s>']]])));
  add('post_template_multi_id', 'post', 'post TemplateProcessing single "[X] $A </s>" where special "[X]" maps to 2 ids (<x1>,<x2> added specials) and </s>',
    postSP((V) => template(['[X]', '$A', '</s>'], ['[X]', '$A', '</s>', '$B'], [['[X]', [V, V + 1], ['<x1>', '<x2>']], ['</s>', [2], ['</s>']]]),
      [['<x1>', 0], ['<x2>', 1]]));
  add('post_bert', 'post', 'post BertProcessing cls=[CLS] sep=[SEP] (added specials beyond vocab)',
    postSP((V) => ({ type: 'BertProcessing', sep: ['[SEP]', V + 1], cls: ['[CLS]', V] }), [['[CLS]', 0], ['[SEP]', 1]]));
  add('post_roberta', 'post', 'post RobertaProcessing cls=<s> sep=</s> on byte-level BPE (ByteLevel pre add_prefix_space=true)',
    blFile(P.bl(true, true), {
      added: (v, V) => [at(V, '<s>'), at(V + 1, '</s>'), at(V + 2, '<pad>')],
      post: (() => ({ type: 'RobertaProcessing', sep: ['</s>', -1], cls: ['<s>', -1], trim_offsets: true, add_prefix_space: true }))(),
    }));
  add('post_seq_bytelevel_template', 'post', 'post Sequence[ByteLevel, TemplateProcessing "<|bos|> $A <|eos|>"] on byte-level BPE',
    blFile(P.bl(false, true), {
      added: (v, V) => [at(V, '<|bos|>'), at(V + 1, '<|eos|>')],
      post: null,
    }));

  // 6. model options
  const chFile = (fuse) => () => {
    const drop = Array.from('NOPQRSTUVWXYZ56789éüï~^');
    const b = baseSP({ noBytes: true, dropChars: drop });
    return tokenizer({ added: SPT(b.vocab), pre: P.meta('always', true), decoder: D.meta('always', true),
      mdl: model(b, { unk: '<unk>', fuse_unk: fuse }) });
  };
  add('model_unk_fuse', 'model', 'model unk_token <unk> fuse_unk=true byte_fallback=false; vocab lacks N-Z, 5-9, é, ü, ~, ^ and all non-ASCII', chFile(true));
  add('model_unk_nofuse', 'model', 'same vocab, fuse_unk=false', chFile(false));
  const MISSING = [0x80, 0x81, 0x9f, 0xa4, 0xe4, 0xf0, 0xff];
  add('model_bytefallback_missing_unk', 'model', 'byte_fallback=true, unk <unk>, fuse_unk=false; <0x80>,<0x81>,<0x9F>,<0xA4>,<0xE4>,<0xF0>,<0xFF> missing from the vocab',
    () => { const b = baseSP({ missingBytes: MISSING }); return tokenizer({ added: SPT(b.vocab), pre: M, decoder: D.seq(D.bf, D.fuse, D.meta('always', true)), mdl: model(b, { byte_fallback: true, unk: '<unk>', fuse_unk: false }) }); }, true);
  add('model_bytefallback_missing_unk_fuse', 'model', 'same, fuse_unk=true',
    () => { const b = baseSP({ missingBytes: MISSING }); return tokenizer({ added: SPT(b.vocab), pre: M, decoder: D.seq(D.bf, D.fuse, D.meta('always', true)), mdl: model(b, { byte_fallback: true, unk: '<unk>', fuse_unk: true }) }); });
  add('model_bytefallback_missing_nounk', 'model', 'same missing bytes, unk_token=null',
    () => { const b = baseSP({ missingBytes: MISSING }); return tokenizer({ added: [], pre: M, decoder: D.seq(D.bf, D.fuse, D.meta('always', true)), mdl: model(b, { byte_fallback: true, unk: null }) }); });
  const ORPHANS = ['\u0120hello', '\u0120world', 'Hello', '\u0120tokenizer', 'tokenizer', '12345', '\u012012345', '\u0120Hello'];
  add('model_ignore_merges_true', 'model', 'byte-level BPE with ignore_merges=true; vocab has whole words the merges never build (Ġhello, Ġworld, Hello, Ġtokenizer, tokenizer, 12345, Ġ12345, ĠHello, if absent)',
    blFile(P.bl(false, true), { extraVocab: ORPHANS, ignore_merges: true }));
  add('model_ignore_merges_false', 'model', 'same vocab/merges, ignore_merges=false', blFile(P.bl(false, true), { extraVocab: ORPHANS }));
  const mergeFmt = (arrays) => () => { const b = baseSP(); return tokenizer({ added: SPT(b.vocab), normalizer: N.seq(N.prepend('\u2581'), N.replace(' ', '\u2581')), decoder: D.seq(D.replace('\u2581', ' '), D.bf, D.fuse, D.strip(' ', 1, 0)), mdl: model(b, { arrays, byte_fallback: true, unk: '<unk>', fuse_unk: true }) }); };
  add('model_merges_strings', 'model', 'merges as "a b" strings (llama2-like pipeline); expected output identical to model_merges_arrays', mergeFmt(false));
  add('model_merges_arrays', 'model', 'same tokenizer, merges as ["a","b"] arrays', mergeFmt(true));
  add('model_merges_arrays_with_spaces', 'model', 'raw-char vocab where merges contain " " (only expressible as arrays), no normalizer/pre-tokenizer, dropout null',
    rawFile(null));
  return files;
}

function fixPost(name, tok) {
  // post_seq_bytelevel_template needs the ids of its added tokens
  if (name === 'post_seq_bytelevel_template') {
    const V = Object.keys(tok.model.vocab).length;
    tok.post_processor = { type: 'Sequence', processors: [
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      template(['<|bos|>', '$A', '<|eos|>'], ['<|bos|>', '$A', '<|eos|>', '$B', '<|eos|>'], [['<|bos|>', [V], ['<|bos|>']], ['<|eos|>', [V + 1], ['<|eos|>']]]),
    ] };
  }
  if (name === 'post_roberta') {
    const V = Object.keys(tok.model.vocab).length;
    tok.post_processor.cls[1] = V; tok.post_processor.sep[1] = V + 1;
  }
  return tok;
}


// HF's Strip decoder (decoders/strip.rs) panics -- and a panic in the native
// binding aborts the whole process -- when `stop` reaches past the start of a
// token (chars.len() - i - 1 underflows) or when start_cut > stop_cut (a token
// made only of `content` chars with start,stop >= 1). Mirror of its loop:
function stripPanics(chars, content, start, stop) {
  let startCut = 0;
  for (let i = 0; i < Math.min(start, chars.length); i++) { if (chars[i] === content) startCut = i + 1; else break; }
  let stopCut = chars.length;
  for (let i = 0; i < stop; i++) {
    const index = chars.length - i - 1;
    if (index < 0) return true;
    if (chars[index] === content) stopCut = index; else break;
  }
  return startCut > stopCut;
}
const { spawnSync } = require('child_process');
function childPanics(file, ids, skip) {
  const code = `const {Tokenizer}=require('tokenizers');Tokenizer.fromFile(${JSON.stringify(file)}).decode(${JSON.stringify(ids)},${skip}).then(()=>process.exit(0),()=>process.exit(3));`;
  const r = spawnSync(process.execPath, ['-e', code], { env: process.env, encoding: 'utf8' });
  return r.status !== 0 && r.status !== 3;
}
// decode(ids, skip), or null where HF panics (predicted, then confirmed in a child process)
function makeDecoder(tok, f, obj, file) {
  if (!f.strip) return (ids, skip) => tok.decode(ids, skip);
  const st = f.strip;
  let helper = null;
  if (st.before) {
    const h = JSON.parse(JSON.stringify(obj));
    h.decoder = st.before;
    const hp = file + '.tmp';
    fs.writeFileSync(hp, JSON.stringify(h));
    helper = Tokenizer.fromFile(hp);
    fs.unlinkSync(hp);
  }
  const V = tok.getVocabSize(true);
  const specials = new Set(obj.added_tokens.filter((t) => t.special).map((t) => t.id));
  return async (ids, skip) => {
    let pieces;
    if (helper) pieces = [Array.from(await helper.decode(ids, skip))];
    else pieces = ids.filter((i) => i < V && !(skip && specials.has(i))).map((i) => Array.from(tok.idToToken(i) || ''));
    const panics = pieces.some((c) => stripPanics(c, st.content, st.start, st.stop));
    if (!panics) return tok.decode(ids, skip);
    if (!childPanics(file, ids, skip)) throw new Error(f.name + ': Strip panic predicted but decode succeeded for ' + JSON.stringify(ids));
    return null;
  };
}

const BYTE_PATTERNS = [
  [0x41], [0x20], [0x0a], [0x80], [0xc3], [0xe2], [0xf0], [0xff], [0xc3, 0xa9], [0xe2, 0x96, 0x81],
  [0xf0, 0x9f, 0x98, 0x80], [0xe2, 0x96], [0xf0, 0x9f, 0x98], [0xc3, 0x41], [0x80, 0x80], [0xc0, 0xaf],
  [0xed, 0xa0, 0x80], [0xc3, 0xa9, 0xc3], [0x20, 0xe2, 0x96, 0x81, 0x20],
];
async function decodeCases(tok, seed, dec) {
  const rnd = prng(seed);
  const ri = (n) => Math.floor(rnd() * n);
  const V = tok.getVocabSize(true);
  const idOf = (t) => tok.tokenToId(t);
  const bl = idOf('<0x41>') === null || idOf('<0x41>') === undefined;
  const sp = bl ? idOf(B2U[0x20]) : idOf('\u2581');
  const ids0 = [idOf('<s>'), idOf('</s>'), idOf('<unk>'), idOf('<x>'), idOf('<|endoftext|>')].filter((x) => x !== null && x !== undefined);
  const byteId = (b) => idOf(bl ? B2U[b] : hex2(b));
  const enc = async (s) => (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
  const cases = [[]];
  const hello = await enc('Hello'), world = await enc(' world'), two = await enc('  two  spaces ');
  cases.push(hello, world, [...hello, ...world], two, [sp], [sp, sp], [sp, sp, sp], [sp, ...hello], [...hello, sp]);
  for (const s of ids0) cases.push([s], [s, sp], [sp, s, sp], [s, ...hello], [...hello, s, ...world], [sp, s, sp, ...hello]);
  for (const p of BYTE_PATTERNS) {
    const ids = p.map(byteId);
    if (ids.some((x) => x === null || x === undefined)) continue;
    cases.push(ids, [...hello, ...ids, ...world], [sp, ...ids]);
    if (ids0.length) cases.push([ids0[0], ...ids, sp]);
  }
  while (cases.length < 50) {
    const n = 1 + ri(10);
    const ids = [];
    for (let k = 0; k < n; k++) {
      const r = rnd();
      if (r < 0.15 && ids0.length) ids.push(ids0[ri(ids0.length)]);
      else if (r < 0.3) ids.push(sp);
      else ids.push(ri(V));
    }
    cases.push(ids);
  }
  const out = [];
  for (const ids of cases) {
    const r = { ids, text: await dec(ids, false), text_skip: await dec(ids, true) };
    if (r.text === null) r.text_panic = true;
    if (r.text_skip === null) r.text_skip_panic = true;
    out.push(dumps(r));
  }
  return out;
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const sub = loadStringsSubset();
  const files = defs();
  const manifest = ['# Synthetic tokenizer parity fixtures', '',
    'Written by `tools/tokenizer_parity/synthetic.js` (deterministic) and checked against npm',
    '`tokenizers@0.23.2` (native bindings). Every `NAME.json` is a hand-built `tokenizer.json` (model BPE,',
    '`dropout: null`, vocabularies of a few hundred entries with merges from a tiny BPE trainer over a',
    'built-in English paragraph). Vocabulary bases:', '',
    '- **SP**: `<unk>`=0 `<s>`=1 `</s>`=2, `<0x00>`..`<0xFF>`=3..258, `▁`, ASCII + corpus chars, 200 merges over `▁word` (the Metaspace files put 6 merges across `▁` first: `▁ ▁`, `o ▁`, `e ▁`, `d ▁`, `x ▁`, `▁▁ ▁`, so that split=false differs from split=true); merges as `"a b"` strings.',
    '- **RAW**: like SP plus the raw characters (split/digits files add 13 hand-written merges such as `["e","-"]`, `["t"," "]` at the end so that pieces ending in a delimiter can become one token) `" "`, `"\\n"`, `"\\t"`; merges trained on GPT-2-style words with raw leading spaces, so merges contain `" "` and are written as `["a","b"]` arrays.',
    '- **BL**: byte-level, ids 0..255 = the GPT-2 byte characters of bytes 0..255, then 200 merges; merges as strings.', '',
    'Files per tokenizer: `NAME.expected.jsonl`, one line per input string:',
    '`{"text":s,"plain":ids(add_special_tokens=false),"special":ids(add_special_tokens=true),"decoded":decode(plain,skip_special_tokens=false),"decoded_skip":decode(special,skip_special_tokens=true)}`',
    '(`decoded_skip` only in the `added_*` and `post_*` files)',
    '(`{"text":s,"error":true}` if HF threw). Inputs: a common list (57 strings), a list for the component group',
    '(norm/pre/added/post/model; dec files use the pre list), and every 40th line of `../strings.jsonl` up to 100 code points.',
    'Files marked (decode) also have `NAME.decode.jsonl`: `{"ids":[...],"text":decode(ids,false),"text_skip":decode(ids,true)}`',
    'for 50-100 id sequences (byte tokens forming valid/invalid UTF-8, ▁ tokens, specials, seeded random ids).',
    'JSON escaping as in `../` (U+007F–U+009F, U+2028/9 as `\\uXXXX`).', '',
    '| file | group | tests |', '|---|---|---|'];
  let total = 0;
  for (let fi = 0; fi < files.length; fi++) {
    const f = files[fi];
    const obj = fixPost(f.name, f.build());
    const jp = path.join(OUT, f.name + '.json');
    fs.writeFileSync(jp, JSON.stringify(obj) + '\n');
    let tok;
    try { tok = Tokenizer.fromFile(jp); } catch (e) { throw new Error(f.name + ': HF refused: ' + e.message); }
    const dec = makeDecoder(tok, f, obj, jp);
    const grp = f.group === 'dec' ? 'pre' : f.group;
    const strings = Array.from(new Set([...COMMON, ...(GROUP[grp] || []), ...sub]));
    const lines = [];
    const withSkip = f.group === 'added' || f.group === 'post';
    let nerr = 0;
    for (const s of strings) {
      try {
        const plain = (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
        const special = (await tok.encode(s, null, { addSpecialTokens: true })).getIds();
        const decoded = await dec(plain, false);
        const r = { text: s, plain, special, decoded };
        if (decoded === null) r.decoded_panic = true;
        if (withSkip) {
          r.decoded_skip = await dec(special, true);
          if (r.decoded_skip === null) r.decoded_skip_panic = true;
        }
        lines.push(dumps(r));
      } catch (e) {
        nerr++;
        lines.push(dumps({ text: s, error: true }));
      }
    }
    const ep = path.join(OUT, f.name + '.expected.jsonl');
    fs.writeFileSync(ep, lines.join('\n') + '\n');
    let sz = fs.statSync(jp).size + fs.statSync(ep).size;
    if (f.decode) {
      const dl = await decodeCases(tok, 0xd0c0 + fi, dec);
      const dp = path.join(OUT, f.name + '.decode.jsonl');
      fs.writeFileSync(dp, dl.join('\n') + '\n');
      sz += fs.statSync(dp).size;
    }
    total += sz;
    manifest.push(`| \`${f.name}\`${f.decode ? ' (decode)' : ''} | ${f.group} | ${f.desc.replace(/\|/g, '\\|')} |`);
    process.stderr.write(`${f.name}: vocab ${tok.getVocabSize(false)}, ${lines.length} strings, ${nerr} errors, ${sz} bytes\n`);
  }
  manifest.push('', ...MANIFEST_NOTES);
  fs.writeFileSync(path.join(OUT, 'MANIFEST.md'), manifest.join('\n') + '\n');
  process.stderr.write(`total ${total} bytes\n`);
}
const MANIFEST_NOTES = [
  '## HF behaviours worth knowing (tokenizers 0.23.2)', '',
  '- Every file loaded; no combination was refused, so nothing was dropped.',
  '- **The ids in `added_tokens` are ignored on load.** A token whose content is already in the model vocab',
  '  gets the vocab id; every other one gets the next free id from the vocab size on, in file order. E.g. in',
  '  `added_flags_metaspace` (vocab 558, `<unk>`/`<s>`/`</s>` in the vocab) the file says `<l>`=559 ... `<gap>`=658',
  '  but HF uses `<l>`=558 ... `<gap>`=567 (and `Hello`, listed as 565, is the vocab entry 451). Listing `<b>`=V+1',
  '  before `<a>`=V gives `<b>`=V, `<a>`=V+1. The expected ids in the fixtures are HF\'s.',
  '- **The Strip decoder panics** (Rust index out of bounds in decoders/strip.rs, which aborts the node process) when',
  '  `stop` walks past the start of a token (a token of only `content` chars shorter than `stop`, or the empty',
  '  string) or when start_cut > stop_cut (e.g. token "x" with start=stop=1). After Fuse this means decode([])',
  '  panics whenever stop >= 1. Such decodes are recorded as `"decoded":null,"decoded_panic":true` (`text_panic`',
  '  in decode files); each one was confirmed in a child process. llama2-style Strip(start=1, stop=0) never panics.',
  '- Lowercase is per character: no final-sigma rule (`"ΑΣ ΟΔΟΣ"` -> "ασ οδοσ"), `"İ"` -> "i̇" (i + U+0307).',
  '- Added tokens with normalized=true are matched in the normalized text and their content is normalized too:',
  '  with Prepend("▁") `"Hello"` becomes "▁Hello" (`added_flags_metaspace`: "Hello" -> [451] whose token',
  '  string is "▁Hello"). normalized=false tokens are split out of the raw text first, so in',
  '  `added_normalized_lowercase` "hello" -> ["he","▁","ll","o"] (the raw "he" wins over "Hello"), while',
  '  "HELLO" -> the "Hello" token. With NFKC, "Ｈｅｌｌｏ" -> the "Hello" token.',
  '- Metaspace prepend_scheme "first" prepends only to the section at offset 0 of the input: "<s>x" -> ["<s>","x"],',
  '  "x<x>y" -> ["▁","x","<x>","y"]; "always" gives ["<s>","▁","x"]. The Metaspace decoder (always/first) drops',
  '  the leading space of the first token only: decode of "<s>x" ids -> "<s> x".',
  '- byte_fallback with a missing `<0xHH>` token: the whole character becomes unk (😀 needs the missing <0xF0>);',
  '  with unk_token null it is silently dropped (`model_bytefallback_missing_nounk`: "ü€😀日" -> ids of ▁ ü € 日 only).',
  '  **A pending unk is only emitted when the next character found directly in the vocab arrives (or at the end of',
  '  the word); characters emitted as byte-fallback tokens do not flush it**, so the unk moves after them:',
  '  `model_bytefallback_missing_unk` "😀日" -> ["▁","<0xE6>","<0x97>","<0xA5>","<unk>"] (decoded "日<unk>"),',
  '  "€😀€" -> ["▁",€ bytes,€ bytes,"<unk>"], "x😀y" -> ["▁","x","<unk>","y"]; with fuse_unk=true the unks on both',
  '  sides of byte-fallback characters are fused into one: "😀😀€" -> ["▁",€ bytes,"<unk>"], "😀€😀" likewise.',
  '- fuse_unk fuses consecutive unk characters only (" NOPQ" -> ["▁","<unk>"] vs four "<unk>").',
  '- Added tokens are split out before the normalizer, so Strip/Prepend apply to each remaining segment:',
  '  `norm_strip_both` " <s> " -> [1]; `norm_prepend` "<s>a" -> ["<s>","▁","a"].',
];

main().catch((e) => { console.error(e); process.exit(1); });
