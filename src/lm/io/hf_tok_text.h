/* The text transforms of a Hugging Face tokenizers pipeline (hf_tok.h):
 * normalizers, pre-tokenizers and decoders over lists of strings, with
 * PCRE2 for the split regexes and utf8proc for Unicode normalization and
 * character classes: the steps' description, and what runs them. */
#ifndef EMDPO_HF_TOK_TEXT_H
#define EMDPO_HF_TOK_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "emdpo.h"

/* Normalizers, pre-tokenizers and decoders, each a flat list (a Sequence
 * is its members in order). */
typedef enum emdpo_hf_norm_kind {
    EMDPO_HF_NORM_NFC,
    EMDPO_HF_NORM_NFKC,
    EMDPO_HF_NORM_NFD,
    EMDPO_HF_NORM_NFKD,
    EMDPO_HF_NORM_PREPEND,   /* text before a non-empty string */
    EMDPO_HF_NORM_REPLACE,   /* every occurrence of text by content */
    EMDPO_HF_NORM_LOWERCASE,
    EMDPO_HF_NORM_STRIP      /* whitespace: left, right */
} emdpo_hf_norm_kind;

typedef enum emdpo_hf_pre_kind {
    EMDPO_HF_PRE_SPLIT,     /* regex matches, combined by behavior (invert: the gaps) */
    EMDPO_HF_PRE_BYTELEVEL, /* optional prefix space, GPT-2's regex when use_regex, bytes to characters */
    EMDPO_HF_PRE_METASPACE, /* spaces to the replacement, prepended per prepend, split before each */
    EMDPO_HF_PRE_DIGITS     /* runs of digits apart (individual: each digit) */
} emdpo_hf_pre_kind;

typedef enum emdpo_hf_split_behavior {
    EMDPO_HF_SPLIT_REMOVED,
    EMDPO_HF_SPLIT_ISOLATED,
    EMDPO_HF_SPLIT_MERGED_WITH_PREVIOUS,
    EMDPO_HF_SPLIT_MERGED_WITH_NEXT,
    EMDPO_HF_SPLIT_CONTIGUOUS
} emdpo_hf_split_behavior;

/* Metaspace's prepend_scheme. */
typedef enum emdpo_hf_prepend { EMDPO_HF_PREPEND_NEVER, EMDPO_HF_PREPEND_FIRST, EMDPO_HF_PREPEND_ALWAYS } emdpo_hf_prepend;

typedef enum emdpo_hf_dec_kind {
    EMDPO_HF_DEC_BYTELEVEL,    /* characters back to bytes, invalid UTF-8 as U+FFFD */
    EMDPO_HF_DEC_REPLACE,      /* per token: text by content */
    EMDPO_HF_DEC_BYTEFALLBACK, /* runs of <0xHH> tokens to their bytes (U+FFFD per byte when not UTF-8) */
    EMDPO_HF_DEC_FUSE,         /* all tokens into one */
    EMDPO_HF_DEC_STRIP,        /* per token: up to start leading and stop trailing `content` characters */
    EMDPO_HF_DEC_METASPACE     /* the replacement to spaces, the first token's first one dropped unless never */
} emdpo_hf_dec_kind;

/* One step of any of the three lists; the fields its kind uses. */
typedef struct emdpo_hf_step {
    int kind;
    char *text;    /* PREPEND, REPLACE: the prefix or literal pattern; METASPACE: the replacement */
    size_t text_len;
    char *content; /* REPLACE, STRIP (one character) */
    size_t content_len;
    void *re;      /* SPLIT, and REPLACE with a regex: the compiled pattern (pcre2_code) */
    int behavior;  /* SPLIT */
    int invert;    /* SPLIT */
    int a, b;      /* STRIP: left/right or start/stop; BYTELEVEL: add_prefix_space, use_regex;
                      METASPACE: prepend scheme, split; DIGITS: individual */
} emdpo_hf_step;

/* Byte-level BPE's map of byte b to a character (GPT-2's bytes_to_unicode),
 * as UTF-8 in out (room for 2 bytes); returns its length. */
size_t emdpo_hf_byte_char(unsigned b, char *out);

/* A list of strings in one growing buffer. */
typedef struct emdpo_hf_span {
    size_t off, len;
} emdpo_hf_span;

typedef struct emdpo_hf_strs {
    char *buf;
    size_t len, cap;
    emdpo_hf_span *s;
    size_t n, n_cap;
} emdpo_hf_strs;

void emdpo_hf_strs_clear(emdpo_hf_strs *l);
void emdpo_hf_strs_free(emdpo_hf_strs *l);
/* Starts a new string holding s[0..n) (s must not point into l). */
int emdpo_hf_strs_push(emdpo_hf_strs *l, const char *s, size_t n);
/* Appends s[0..n) to the last string (s must not point into l). */
int emdpo_hf_strs_append(emdpo_hf_strs *l, const char *s, size_t n);

/* The next code point of s[0..n) (valid UTF-8) at *i, advancing *i. */
uint32_t emdpo_hf_next_cp(const char *s, size_t n, size_t *i);
/* Rust's char::is_whitespace (the White_Space property). */
int emdpo_hf_is_space(uint32_t cp);
/* Rust's char::is_alphanumeric, or '_': a word character for single_word. */
int emdpo_hf_is_word(uint32_t cp);

/* Applies normalizer step st to s[0..n) into out (cleared first, one
 * string). first: the segment starts the text and Prepend applies to it
 * (no_prefix clears it for the first segment only). EMDPO_ERR_NOMEM. */
int emdpo_hf_normalize(const emdpo_hf_step *st, const char *s, size_t n, int prepend, emdpo_hf_strs *out);

/* Runs pre-tokenizer st over every string of in, writing the pieces to out
 * (cleared first). first: in's first string starts the original text
 * (Metaspace's prepend_scheme "first"). gpt2_re: GPT-2's pattern for
 * ByteLevel's use_regex. EMDPO_ERR_NOMEM, EMDPO_ERR_LIMIT (PCRE2 ran out of
 * its match limits). */
int emdpo_hf_pretokenize(const emdpo_hf_step *st, const void *gpt2_re, const emdpo_hf_strs *in, int first,
                         emdpo_hf_strs *out);

/* Runs decoder st over the tokens of in into out (cleared first). */
int emdpo_hf_decode_step(const emdpo_hf_step *st, const emdpo_hf_strs *in, emdpo_hf_strs *out);

/* Appends s[0..n) to the last string of out as Rust's
 * String::from_utf8_lossy would: each maximal invalid subsequence becomes
 * U+FFFD. */
int emdpo_hf_append_lossy(emdpo_hf_strs *out, const char *s, size_t n);

/* Matches of a compiled pattern, as a list of (start, end) byte offsets in
 * *m (a growing array of 2 * *n entries), non-empty and in order. */
int emdpo_hf_find_all(const void *re, const char *s, size_t n, size_t **m, size_t *n_m, size_t *cap);

#endif
