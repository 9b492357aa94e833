#!/usr/bin/env python3
"""Write tests/fixtures/tokenizer_parity/strings.jsonl: one JSON string per line.

A deterministic (seeded, stdlib only) and deliberately nasty set of inputs for
tokenizer parity tests against the Hugging Face `tokenizers` library.

Usage: python3 tools/tokenizer_parity/make_strings.py [OUT]
"""
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer_parity", "strings.jsonl")

S = []  # the strings, in order


def add(*xs):
    for x in xs:
        S.append(x)


# ---------------------------------------------------------------- basics
add("", " ", "  ", "\t", "\n", "\r\n", "\r", "a", "A", "0", ".", "'", "\u2581", "\u0120", "\u010a",
    "Hello", " Hello", "Hello ", "  Hello  ", "Hello world", "Hello, world!", "hello\nworld",
    "Hello  world", "Hello\tworld", "Hello\r\nworld", "Hello\n\nworld", "\nHello", "Hello\n",
    " \n ", "\n \n", " \t\n\r ", "x ", " x", "  x", "x  ")

# ---------------------------------------------------------------- prose
add("The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, "
    "it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of Darkness.",
    "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014having little or no money in my purse, "
    "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong said: \u201cThat\u2019s one small step for [a] man, one giant leap for mankind.\u201d",
    "Mr. Smith's dog (aged 3.5 years) barked at 7:45 a.m. on Jan. 1st, 2024 -- loudly!!!",
    "Q: What's 2+2?\nA: It's 4. Isn't it obvious? Yes... it is.",
    "I'm sure you'll agree we'd've done it if they'd let us; you're right, we've tried.",
    "THE END. THAT'S ALL FOLKS! WE'RE DONE, WE'VE FINISHED, I'M OUT, YOU'LL SEE, HE'D KNOW.",
    "She said \"no\" -- and then 'maybe' -- and finally \u00abyes\u00bb.",
    "e.g. i.e. etc. vs. Dr. St. U.S.A. U.K. Ph.D.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.",
    )

# ---------------------------------------------------------------- contractions
for c in ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]:
    add("it" + c, "IT" + c.upper(), " " + c, "it\u2019" + c[1:], "It" + c[0] + c[1:].capitalize())
add("don't DON'T Don'T don\u2019t", "'''", "''s", "' s", "rock'n'roll", "'hello'", "'S'T'RE'VE'M'LL'D",
    "y'all'd've", "'tis", "o'clock", "l'homme", "'123", "a'b'c'd'e")

# ---------------------------------------------------------------- code
add('def fib(n):\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(fib(10))\n',
    "class Foo(object):\n\tdef __init__(self, x=None, **kw):\n\t\tself.x = x  # comment\n\t\tsuper().__init__(**kw)\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nassert x.shape == (3, 4), f\"bad {x.shape!r}\"\n",
    "lambda x: [y**2 for y in x if y % 2 == 0 and y != 0] or {k: v for k, v in zip('abc', range(3))}",
    '#include <stdio.h>\n\nint main(int argc, char **argv) {\n    for (int i = 0; i < argc; ++i)\n        printf("%d: %s\\n", i, argv[i]);\n    return 0;\n}\n',
    "static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }",
    "if (p->next != NULL && *q++ == '\\0') { x ^= ~y; z >>= 2; } else { goto fail; }",
    "/* multi\n * line\n * comment */\n#define MAX(a,b) ((a)>(b)?(a):(b))\n",
    '{"name": "emdpo", "version": "1.0.0", "tags": ["a", "b"], "nested": {"x": 1.5e-10, "y": null, "z": true}}',
    '[{"id":1,"text":"caf\\u00e9"},{"id":2,"text":"\\ud83d\\ude00"}]',
    "{\n  \"key\": \"value\",\n  \"list\": [\n    1,\n    2\n  ]\n}\n",
    '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Test &amp; more</title></head>\n<body><p class="x">Hi&nbsp;there</p><br/></body>\n</html>\n',
    "<div><span style='color:red'>&lt;script&gt;alert(1)&lt;/script&gt;</span></div>",
    "#!/bin/sh\nset -eu\nfor f in *.txt; do\n  grep -q 'foo' \"$f\" && echo \"$f\" | sed 's/a/b/g' >> out.log 2>&1\ndone\n",
    "ls -la | awk '{print $9}' | xargs -I{} cp {} /tmp/ && echo $((1+2)) ${HOME:-/root} `date`",
    "SELECT id, name FROM users WHERE age >= 18 AND email LIKE '%@example.com' ORDER BY name DESC LIMIT 10;",
    "fn main() { let v: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", v.iter().map(|x| x * 2).collect::<Vec<_>>()); }",
    "const f = async (a, b = {}) => { await g?.(a ?? b); return `${a}-${b}`; };",
    "x=1;y=2;z=x+y;print(z)",
    "    \n        \n            code\n",
    "\t\t\tif x:\n\t\t\t\treturn\n",
    "-----BEGIN PGP SIGNATURE-----\niQEzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----",
    )

# ---------------------------------------------------------------- markdown, urls, emails
add("# Title\n\n## Subtitle\n\n- item *one*\n- item **two**\n- `code`\n\n> quote\n\n1. first\n2. second\n",
    "| a | b |\n|---|---|\n| 1 | 2 |\n",
    "```python\nprint('hi')\n```\n",
    "[link](https://example.com/path?q=1&r=2#frag) ![img](a.png)",
    "https://www.example.com/a/b/c.html?x=1&y=%20z#top",
    "http://user:pass@127.0.0.1:8080/~user/file.tar.gz",
    "ftp://ftp.example.org/pub/README mailto:someone@example.com",
    "john.doe+tag@sub.example.co.uk, jane_doe@example.com; <admin@localhost>",
    "www.google.com/search?q=tokenizer+bpe&hl=en",
    "C:\\Users\\Admin\\Documents\\file (1).txt",
    "/usr/local/lib/python3.11/site-packages/__init__.py",
    "@user #hashtag $TICKER 100% 50\u00b0C \u20ac20 \u00a35 \u00a5100 \u20b9500",
    )

# ---------------------------------------------------------------- numbers
add("0", "7", "42", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
    "3.14159265358979323846", "-0.0001", "1e10", "6.022e23", "1,000,000", "1.000.000,00",
    "0x1F 0b1010 0o777", "2024-01-31T23:59:59Z", "192.168.0.1", "+1 (555) 123-4567",
    "\u0661\u0662\u0663 \u0967\u0968\u0969 \u0e51\u0e52\u0e53 \uff11\uff12\uff13", "\u00bd \u00bc \u2153 \u2160\u2161\u2162 \u2460\u2461",
    "1" * 300, "9876543210" * 30, "a1b2c3d4e5", "v1.2.3-rc.4+build.5", "x2 2x 22x x22 2 2",
    )

# ---------------------------------------------------------------- punctuation runs
add("!!!", "???", "...", "!?!?", "......", "---", "___", "***", "===", "~~~", "```", "'''", '"""',
    "!@#$%^&*()_+-=[]{}|;':\",./<>?", "\u2026\u2014\u2013\u00ab\u00bb\u201c\u201d\u2018\u2019\u2039\u203a",
    "..." * 50, "-" * 80, "=" * 64, "#" * 100, "/*/*/*/", "a.b.c.d", "(((nested)))", "[[x]]", "{{y}}",
    ":-) ;-) :D xD <3 ^_^ \u00af\\_(\u30c4)_/\u00af", " !", " .", ". ", " . ", "\n.", ".\n",
    )

# ---------------------------------------------------------------- scripts
scripts = [
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade co\u00f6perate \u00c5ngstr\u00f6m \u00fcber Stra\u00dfe \u0141\u00f3d\u017a \u010ce\u0161ky \u0219i \u0163",
    "Ol\u00e1, como est\u00e1? \u00bfQu\u00e9 tal? \u00a1Muy bien! Ma\u00f1ana ser\u00e1 otro d\u00eda.",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u03ba\u03cc\u03c3\u03bc\u03b5! \u0391\u03b8\u03ae\u03bd\u03b1, \u03a9\u03c1\u03b1\u03af\u03b1 \u03bc\u03ad\u03c1\u03b1.",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430? \u0401\u043b\u043a\u0430 \u0438 \u0449\u0438.",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645! \u0643\u064a\u0641 \u062d\u0627\u0644\u0643\u061f \u0627\u0644\u0633\u064e\u0651\u0644\u0627\u0645\u064f \u0639\u064e\u0644\u064e\u064a\u0652\u0643\u064f\u0645\u0652",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd! \u05de\u05d4 \u05e9\u05dc\u05d5\u05de\u05da? \u05d1\u05bc\u05b0\u05e8\u05b5\u05d0\u05e9\u05b4\u05c1\u05d9\u05ea",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e! \u0906\u092a \u0915\u0948\u0938\u0947 \u0939\u0948\u0902? \u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01 \u0e04\u0e38\u0e13\u0e2a\u0e1a\u0e32\u0e22\u0e14\u0e35\u0e44\u0e2b\u0e21\u0e04\u0e23\u0e31\u0e1a",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002\u6211\u4eec\u53bb\u516c\u56ed\u5427\u3002",
    "\u7e41\u9ad4\u4e2d\u6587\u6e2c\u8a66\uff1a\u9f8d\u9f9c\u9b31\u9f49\u7c72",
    "\uc548\ub155\ud558\uc138\uc694, \uc138\uacc4! \ud55c\uad6d\uc5b4 \ud14c\uc2a4\ud2b8\uc785\ub2c8\ub2e4.",
    "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\uff01\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3002\uff8a\uff9d\uff76\uff78\uff76\uff80\uff76\uff85",
    "\u1230\u120b\u121d \u12d3\u1208\u121d! \u12a5\u1295\u12f4\u1275 \u1290\u1205?",
    "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0 \u10db\u10e1\u10dd\u10e4\u10da\u10d8\u10dd!",
    "\u0532\u0561\u0580\u0565\u0582 \u0561\u0577\u056d\u0561\u0580\u0570! \u0540\u0561\u0575\u0565\u0580\u0565\u0576",
    "\u0bb5\u0ba3\u0b95\u0bcd\u0b95\u0bae\u0bcd \u0b89\u0bb2\u0b95\u0bae\u0bcd! \u0ba4\u0bae\u0bbf\u0bb4\u0bcd",
    "\u09b9\u09cd\u09af\u09be\u09b2\u09cb \u09ac\u09bf\u09b6\u09cd\u09ac! \u0986\u09ae\u09bf \u09ac\u09be\u0982\u09b2\u09be\u09af\u09bc \u0995\u09a5\u09be \u09ac\u09b2\u09bf\u0964",
    "\u0c39\u0c32\u0c4b \u0c2a\u0c4d\u0c30\u0c2a\u0c02\u0c1a\u0c02 \u0ca8\u0cae\u0cb8\u0ccd\u0c95\u0cbe\u0cb0 \u0d28\u0d2e\u0d38\u0d4d\u0d15\u0d3e\u0d30\u0d02 \u0a38\u0a24 \u0a38\u0a4d\u0a30\u0a40 \u0a85\u0a95\u0abe\u0ab2",
    "\u0dc3\u0dd2\u0d82\u0dc4\u0dbd \u0f56\u0f7c\u0f51\u0f0b\u0f61\u0f72\u0f42 \u1019\u103c\u1014\u103a\u1019\u102c \u1781\u17d2\u1798\u17c2\u179a \u0ea5\u0eb2\u0ea7",
    "\u1828\u1823\u1829\u182d\u1823\u182f \u13e3\u13b3\u13a9 \u1403\u14c4\u1483\u144e\u1450\u1466 \u2d5c\u2d30\u2d4e\u2d30\u2d63\u2d49\u2d56\u2d5c",
    "Ti\u1ebfng Vi\u1ec7t c\u00f3 nhi\u1ec1u d\u1ea5u: \u0111\u01b0\u1eddng ph\u1ed1 H\u00e0 N\u1ed9i.",
    "T\u00fcrk\u00e7e: \u0130stanbul \u0131\u015f\u0131k \u011f\u00fc\u015f \u00c7\u00d6\u015e",
    "\u00de\u00e6tta er \u00edslenska: \u00f0\u00fa \u00feekkir \u00e6gir. Dansk: \u00f8l \u00e5 \u00c6\u00d8\u00c5",
    "\u0423\u043a\u0440\u0430\u0457\u043d\u0441\u044c\u043a\u0430: \u0457\u0436\u0430\u043a \u0491\u0430\u043d\u043e\u043a \u0404\u0432\u0440\u043e\u043f\u0430. \u0421\u0440\u043f\u0441\u043a\u0438: \u0452\u0430\u0447\u0438 \u045b",
    "\u0641\u0627\u0631\u0633\u06cc: \u0633\u0644\u0627\u0645 \u062f\u0646\u06cc\u0627 \u06af\u0686\u067e\u0698\u06a9\u06cc \u0627\u0631\u062f\u0648: \u06c1\u06d2",
    "\U0001d400\U0001d401\U0001d402 \U0001d552\U0001d553 \U0001d4d0 mathematical alphanumerics",
    "\u2200x\u2208\u211d: x\u00b2 \u2265 0 \u2227 \u221a4 = 2 \u2260 3 \u2248 \u03c0 \u221e \u2211 \u222b \u2202",
    "\u2190\u2191\u2192\u2193 \u2500\u2502\u250c\u2510\u2514\u2518 \u2588\u2593\u2592\u2591 \u25a0\u25a1\u25b2\u25bc \u2660\u2663\u2665\u2666 \u266a\u266b",
    "\U00013000\U00013001 \U00010330\U00010331 \U0001f000\U0001f0a1 \U00010900 cuneiform \U00012000\U00012001",
]
add(*scripts)
add(" ".join(scripts[:8]), "".join(scripts[8:14]))

# ---------------------------------------------------------------- emoji
add("\U0001f600", "\U0001f600\U0001f601\U0001f602\U0001f923", "I \u2764\ufe0f NY \U0001f5fd",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", "\U0001f469\u200d\U0001f4bb \U0001f3f3\ufe0f\u200d\U0001f308 \U0001f3f4\u200d\u2620\ufe0f",
    "\U0001f44d\U0001f3fb\U0001f44d\U0001f3fc\U0001f44d\U0001f3fd\U0001f44d\U0001f3fe\U0001f44d\U0001f3ff",
    "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5\U0001f1e9\U0001f1ea\U0001f1eb\U0001f1f7 \U0001f1fa",
    "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "1\ufe0f\u20e3 #\ufe0f\u20e3 *\ufe0f\u20e3 0\u20e3", "\u263a \u263a\ufe0f \u263a\ufe0e",
    "\U0001f9d1\U0001f3fd\u200d\U0001f91d\u200d\U0001f9d1\U0001f3ff", "Hello \U0001f30d! Great job \U0001f389\U0001f389\U0001f389",
    "\U0001f600" * 40, "\u2764\ufe0f\u200d\U0001f525 \U0001faf6\U0001f3fe \U0001fae0 \U0001f9cc",
    )

# ---------------------------------------------------------------- normalization-sensitive
add("e\u0301", "caf\u00e9 cafe\u0301", "\u00c5 \u212b A\u030a", "\u00c5\u212bA\u030a", "n\u0303 \u00f1", "a\u0308\u0301\u0323",
    "\u1e9b\u0323", "\u0041\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308\u0309\u030a",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
    "\ufb01 \ufb02 \ufb00 \ufb03 \ufb04 \ufb05 \ufb06", "\uff21\uff22\uff23\uff41\uff42\uff43\uff10\uff11\uff12\uff01\uff1f\uff08\uff09",
    "x\u00b2 y\u00b3 \u2074\u2075\u2076 H\u2082O \u2081\u2082\u2083", "\u2122 \u00a9 \u00ae \u2120 \u2116 \u2103 \u2109",
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af \uac01 \ud55c\uae00", "\u3131\u314f \u3164 \uffa1",
    "\u00e9\u00e8\u00ea\u00eb e\u0301e\u0300e\u0302e\u0308", "\u0065\u0301\u0065\u0301\u0065\u0301\u0065\u0301",
    "\u0301", "\u0301\u0301\u0301", " \u0301", "\u0915\u093c \u0958", "\u3099\u304b\u3099 \u304c", "\u2126 \u03a9 \u212a K",
    "\u1e0b\u0323 \u1e0d\u0307", "\u03d3 \u03d2\u0301", "\u0390 \u03b9\u0308\u0301", "\uff76\uff9e \u30ac \u30ab\u3099",
    "\u2460\u2461\u2462 \u2474 \u2488 \u24b6", "\u00aa \u00ba \u00b5 \u03bc", "\u017f \u1e9e \u00df SS", "\u2028\u2029", "\u00ad soft\u00adhyphen",
    )

# ---------------------------------------------------------------- whitespace
WS = [" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2000", "\u2001", "\u2002", "\u2003", "\u2004", "\u2005", "\u2006",
      "\u2007", "\u2008", "\u2009", "\u200a", "\u200b", "\u3000", "\u0085", "\u2028", "\u2029", "\u000b", "\u000c",
      "\u1680", "\u202f", "\u205f", "\ufeff", "\u180e", "\u200c", "\u200d", "\u2060"]
for w in WS:
    add("a" + w + "b", w * 3 + "x" + w)
for n in [2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 40, 64]:
    add(" " * n, "a" + " " * n + "b", " " * n + "x")
add("\t" * 12, "\n" * 10, "\r\n" * 6, "\n\n\n\nx\n\n\n", " \n" * 8, "\n " * 8, "\t \t \t", " \t\n\r\u00a0\u3000" * 5,
    "a \nb", "a\n b", "a \n b", "a  \n  b", "a\t\nb", "a\n\tb", "x \r\n y", "  \n\n  x", "x  \n\n  ",
    "end with spaces   ", "   start with spaces", "  both  ", "\n\nboth\n\n", "a" + "\u3000" * 5 + "b",
    "word\u00a0word\u00a0\u00a0word", "line1\u2028line2\u2029line3\u0085line4", "1\u2009000\u202f000")

# ---------------------------------------------------------------- special tokens as text
SPECIALS = ["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
            "<|reserved_special_token_5|>", "<|reserved_special_token_250|>", "<tool_call>", "</tool_call>",
            "<|fim_prefix|>", "<|vision_start|>", "<pad>", "<mask>", "[INST]", "[/INST]", "<<SYS>>"]
PARTIAL = ["<|im_start", "im_start|>", "<s >", "< s>", "<S>", "<s", "s>", "</s", "<|endoftext", "<|endoftext|",
           "<|eot_id", "<|reserved_special_token_|>", "<|reserved_special_token_999|>", "<think", "<|", "|>",
           "<<s>>", "<s><s>", "<|im_start|><|im_start|>", "<</s>/s>", "<|im_start|im_end|>"]
for t in SPECIALS:
    add(t, " " + t, t + " ", "\n" + t + "\n", "x" + t + "y")
    if t in ("<s>", "</s>", "<|im_start|>", "<|endoftext|>", "<|eot_id|>", "<think>", "<tool_call>"):
        add(" " + t + " ", "Hello " + t + " world", "Hello" + t + "world", t + t)
for t in PARTIAL:
    add(t, "a " + t + " b")
add("<s>Hello</s>", "<s> Hello</s>", "<s>\nHello\n</s>", "<s>  x", "  <s>x", " <s>x", "Hello <s> world",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHi!<|im_end|>",
    "<s>[INST] <<SYS>>\nBe nice.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4 </s><s>[INST] thanks [/INST]",
    "<|endoftext|><|endoftext|><|endoftext|>", "text<|endoftext|>text", "\n\n<|endoftext|>\n\n",
    "<unk><unk> <unk>", "</s></s>", "<s> </s>", "\t<s>\t", "\u00a0<s>\u00a0", "\u2581<s>\u2581", "<|eot_id|>\u2581",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>", "<think>reasoning</think>answer",
    "<|im_start|>" + " " * 31 + "<|im_end|>")

# ---------------------------------------------------------------- literal byte-level / metaspace chars
add("\u2581", "\u2581\u2581", "\u2581Hello", "Hello\u2581world", "\u2581 \u2581", " \u2581", "\u2581 ",
    "\u0120", "\u0120Hello", "\u010a", "\u0120\u010a\u0109", "\u00c4\u0142\u00c3\u00a9", "\u00e2\u0122\u013b",
    "\u0100\u0101\u0102\u0143", "<0x41>", "<0xFF>", "<0x0A>", "<0xE2><0x96><0x81>", "\u2581\u2581\u2581x\u2581\u2581\u2581")

# ---------------------------------------------------------------- control, private use, unassigned, rare
add("".join(chr(i) for i in range(0, 32)), "a\u0000b", "\u0000", "\u0000\u0000\u0000", "\u007f", "x\u007fy",
    "\u001b[31mred\u001b[0m", "bell\u0007", "back\bspace", "\u0001\u0002\u0003 abc \u001e\u001f",
    "\u0080\u0081\u009f", "\u00a0\u00ad\u034f", "\ue000\ue001\uf8ff", "\U000f0000\U0010fffd", "\U0010ffff",
    "x\U0010ffffy", "\U000e0001\U000e0020", "\u0378\u0379\u05ff\u0e7f", "\U0002fffe\U0003ffff", "\uffff\ufffe",
    "\ufffd", "\ufffd\ufffd", "\U00030000\U00030001", "\U00020000\U0002a6d6\U0002b734", "\u9fa5\u9fff\u3400\u4dbf",
    "\u20000", "\U0001f9ff\U0001fa70", "\u2e80\u2fd5\u31c0", "\uff5f\uff60", "\u0e3f\u20bf",
    "\U00016fe0\U0001b000", "\U0001e900\U0001e943", "\u16a0\u16a1\u16a2 runes",
    "\u202e reversed \u202c", "\u200e\u200f\u061c", "\u034f\u180b\ufe00\ufe0f\U000e0100")

# ---------------------------------------------------------------- long repeats
add(" " * 1000, "a" * 500, "1234567890" * 30, "ab" * 300, "\n" * 200, "\t" * 200, "\u00e9" * 300, "\u4e00" * 300,
    "\U0001f600" * 100, "x" * 1500, "\u2581" * 200, "Hello " * 100, "hello" * 100,
    "z" + "\u0301" * 100)
add("Pneumonoultramicroscopicsilicovolcanoconiosis" * 10,
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "".join(chr(0x4e00 + (i * 7919) % 20000) for i in range(200)))

# ---------------------------------------------------------------- random mixtures (seeded)
rng = random.Random(20240531)

POOLS = [
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    list("0123456789"),
    list(" \t\n\r") + [" ", " ", " ", "\r\n", "  ", "\u00a0", "\u3000", "\u2009", "\u200b", "\u0085", "\u2028"],
    list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "\u2019s", "\u2019t"],
    list("\u00e0\u00e1\u00e2\u00e3\u00e4\u00e5\u00e6\u00e7\u00e8\u00e9\u00ea\u00eb\u00f1\u00f6\u00f8\u00fc\u00df\u0142\u0161\u017e\u0103\u0219"),
    [chr(c) for c in range(0x391, 0x3ca)] + [chr(c) for c in range(0x410, 0x450)],
    [chr(c) for c in range(0x621, 0x64b)] + [chr(c) for c in range(0x5d0, 0x5eb)],
    [chr(c) for c in range(0x905, 0x94e)] + [chr(c) for c in range(0xe01, 0xe3b)],
    [chr(c) for c in range(0x4e00, 0x9fa5, 97)] + [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30a1, 0x30fb)],
    [chr(c) for c in range(0xac00, 0xd7a3, 131)],
    [chr(c) for c in range(0x1200, 0x1250)] + [chr(c) for c in range(0x10d0, 0x10f0)] + [chr(c) for c in range(0x531, 0x556)]
    + [chr(c) for c in range(0xb85, 0xbb9)] + [chr(c) for c in range(0x985, 0x9b9)],
    ["\U0001f600", "\U0001f44d\U0001f3fd", "\u2764\ufe0f", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1fa\U0001f1f8",
     "1\ufe0f\u20e3", "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f525", "\u2728", "\U0001f914"],
    ["\u0301", "\u0300", "\u0308", "\u0323", "\u030a", "\u0303", "e\u0301", "A\u030a", "\ufb01", "\uff21", "\u00b2", "\u212b",
     "\u1100\u1161", "\u3099"],
    [chr(c) for c in range(0, 32)] + ["\u007f", "\ue000", "\U0010ffff", "\U000f0001", "\u0378", "\U0002a6d6", "\uffff"],
    ["\u2581", "\u0120", "\u010a", "\u00c3", "\u00a9", "<0x41>"],
    SPECIALS + PARTIAL,
    ["the", " the", "and", " of", "Hello", " world", "function", "return", "     ", "\n\n", "http://", ".com", "1234",
     "don't", "I'm", " you're", "    def", "\t}", "();", "=>", "::"],
]
WEIGHTS = [10, 4, 8, 5, 2, 3, 2, 2, 2, 3, 2, 2, 2, 2, 1, 1, 2, 8]


def rand_string(maxlen):
    n = rng.randint(1, maxlen)
    out = []
    for _ in range(n):
        pool = rng.choices(POOLS, WEIGHTS)[0]
        piece = rng.choice(pool)
        if rng.random() < 0.1:
            piece = piece * rng.randint(2, 6)
        out.append(piece)
    return "".join(out)


for i in range(90):
    add(rand_string(8 if i < 40 else (40 if i < 75 else 150)))

# random single code points across planes (valid scalar values, no surrogates)
for i in range(20):
    while True:
        c = rng.choice([rng.randint(0x20, 0x7ff), rng.randint(0x800, 0xffff), rng.randint(0x10000, 0x10ffff)])
        if not (0xd800 <= c <= 0xdfff):
            break
    add(chr(c), "x" + chr(c) + " " + chr(c) + "y")

# ---------------------------------------------------------------- a handful of long ones (<= 20 KB)
para = S[40:60]
long1 = "\n\n".join(x for x in para if x)
add((long1 + "\n") * 2)
add("".join(rand_string(150) for _ in range(8)))
add(" ".join(scripts))
add(("<|im_start|>user\n" + scripts[8] + "<|im_end|>\n<s> x </s>" + "<|endoftext|> ") * 12)

# ---------------------------------------------------------------- write
# drop exact duplicates, keeping the first occurrence (order stays deterministic)
_seen = set()
S = [s for s in S if not (s in _seen or _seen.add(s))]

out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
os.makedirs(os.path.dirname(out), exist_ok=True)
for s in S:
    assert isinstance(s, str)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in s), "lone surrogate"
    assert len(s.encode("utf-8")) <= 20000, (len(s.encode("utf-8")), s[:40])
with open(out, "w", encoding="utf-8", newline="\n") as f:
    for s in S:
        line = json.dumps(s, ensure_ascii=False)
        # keep every record on one physical line for any line splitter: escape
        # the C1 controls and U+2028/U+2029 too (json.dumps escapes only < 0x20)
        line = re.sub("[\u007f-\u009f\u2028\u2029]", lambda m: "\\u%04x" % ord(m.group()), line)
        f.write(line + "\n")
print("wrote %d strings (%d bytes of text) to %s" % (len(S), sum(len(s.encode("utf-8")) for s in S), out),
      file=sys.stderr)
