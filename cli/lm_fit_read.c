/* Reading an LM fit's fit.json (emdpo fit --policy llama): what the
 * commands that evaluate or aggregate its types need. */
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "base/json.h"
#include "cli.h"
#include "cli_lm.h"
#include "lm/engine/optim.h"

/* path's fit.json (path a directory) or path itself; the directory the
 * fit's relative paths start from goes to dir. */
static void fit_paths(const char *path, char *file, size_t cap, char *dir) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(file, cap, "%s/fit.json", path);
        snprintf(dir, 4096, "%s", path);
    } else {
        snprintf(file, cap, "%s", path);
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(dir, 4096, "%.*s", (int)(slash - path), path);
        else
            snprintf(dir, 4096, ".");
    }
}

static int copy_str(const emdpo_json *v, char *dst, size_t cap) {
    if (!v || v->type != EMDPO_JSON_STRING || v->len >= cap) return -1;
    memcpy(dst, v->u.str, v->len + 1);
    return 0;
}

static int int_field(const emdpo_json *obj, const char *key, int *out) {
    const emdpo_json *v = emdpo_json_get(obj, key);
    if (!v || !v->is_int || v->inum < 0 || v->inum > INT_MAX) return -1;
    *out = (int)v->inum;
    return 0;
}

/* 0 with *root parsed, or -1; the caller frees doc and text. */
static int parse_fit(const char *file, char **text, size_t *len, emdpo_json_doc **doc, const emdpo_json **root) {
    emdpo_json_error err;
    *doc = NULL;
    if (!(*text = cli_read_file(file, len))) return -1;
    if (emdpo_json_doc_create(doc) || emdpo_json_parse(*doc, *text, *len, root, &err)) return -1;
    return (*root)->type == EMDPO_JSON_OBJECT ? 0 : -1;
}

static void parse_free(char *text, size_t len, emdpo_json_doc *doc) {
    emdpo_json_doc_free(doc);
    if (text) emdpo_free(text, len + 1);
}

/* The M-step's optimizer settings; the paper's where fit.json lacks one. */
static void mstep_settings(const emdpo_json *ms, cli_lm_fit *f) {
    const emdpo_json *lr = emdpo_json_get(ms, "lr"), *clip = emdpo_json_get(ms, "clip");
    if (copy_str(emdpo_json_get(ms, "optimizer"), f->optimizer, sizeof f->optimizer) ||
        emdpo_optim_parse(f->optimizer) < 0)
        snprintf(f->optimizer, sizeof f->optimizer, "rmsprop");
    f->lr = lr && lr->type == EMDPO_JSON_NUMBER && lr->num >= 0 ? lr->num : 5e-7;
    f->clip = clip && clip->type == EMDPO_JSON_NUMBER && clip->num >= 0 ? clip->num : 10.0;
    if (int_field(ms, "batch", &f->batch) || f->batch < 1) f->batch = 4;
    if (int_field(ms, "accum", &f->accum) || f->accum < 1) f->accum = 1;
}

int cli_lm_fit_read(const char *cmd, const char *path, cli_lm_fit *f) {
    memset(f, 0, sizeof *f);
    char file[4200], *text = NULL;
    size_t len = 0;
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    fit_paths(path, file, sizeof file, f->dir);
    const char *why = NULL;
    if (parse_fit(file, &text, &len, &doc, &root)) {
        why = "cannot read it as a JSON object";
    } else {
        const emdpo_json *fam = emdpo_json_get(root, "family"), *beta = emdpo_json_get(root, "beta");
        const emdpo_json *pol = emdpo_json_get(root, "policies"), *ms = emdpo_json_get(root, "mstep");
        if (!fam || fam->type != EMDPO_JSON_STRING || strcmp(fam->u.str, "llama"))
            why = "\"family\" is not \"llama\"";
        else if (int_field(root, "k", &f->K) || f->K < 1 || f->K > EMDPO_MAX_K)
            why = "\"k\" must be in 1..64";
        else if (!beta || beta->type != EMDPO_JSON_NUMBER || !(beta->num > 0))
            why = "\"beta\" must be positive";
        else if (copy_str(emdpo_json_get(root, "model"), f->model, sizeof f->model) ||
                 copy_str(emdpo_json_get(root, "tokenizer"), f->tokenizer, sizeof f->tokenizer))
            why = "\"model\" and \"tokenizer\" must be paths";
        else if (!pol || pol->type != EMDPO_JSON_ARRAY || (int)pol->len != f->K)
            why = "\"policies\" must name k checkpoints";
        else if (!ms || int_field(ms, "max_length", &f->max_length) ||
                 int_field(ms, "max_prompt_length", &f->max_prompt_length))
            why = "\"mstep\" lacks max_length and max_prompt_length";
        for (int k = 0; !why && k < f->K; k++)
            if (copy_str(&pol->u.elems[k], f->policy[k], sizeof f->policy[k]) || strchr(f->policy[k], '/'))
                why = "each \"policies\" entry must be a directory name in the fit";
        if (!why) {
            f->beta = beta->num;
            copy_str(emdpo_json_get(root, "data"), f->data, sizeof f->data);
            mstep_settings(ms, f);
        }
    }
    parse_free(text, len, doc);
    return why ? cli_usage_error(cmd, "%s: %s", file, why) : 0;
}

int cli_lm_fit_is_llama(const char *path) {
    char file[4200], dir[4096], *text = NULL;
    size_t len = 0;
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    fit_paths(path, file, sizeof file, dir);
    int llama = 0;
    if (!parse_fit(file, &text, &len, &doc, &root)) {
        const emdpo_json *fam = emdpo_json_get(root, "family");
        llama = fam && fam->type == EMDPO_JSON_STRING && strcmp(fam->u.str, "llama") == 0;
    }
    parse_free(text, len, doc);
    return llama;
}
