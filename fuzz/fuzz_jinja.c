/* libFuzzer target: the Jinja interpreter of chat templates
 * (src/data/jinja.c) and src/data/chat_template.c. The input is a
 * template; it is parsed and, when it parses, rendered over a fixed
 * conversation with add_generation_prompt false and true, under small
 * limits (so that a loop or a recursion ends quickly). Rendering may fail
 * with any status but NOMEM; a success must be NUL-terminated at its
 * length and valid UTF-8. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/json.h"
#include "base/utf8.h"
#include "data/jinja.h"
#include "emdpo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char k_vars[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \" Be brief. \"}, {\"role\": \"user\", \"content\": "
    "\"Hi \\ud83d\\ude00 {{ x }}\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nr\\n</think>\\n\\nHello\"}, "
    "{\"role\": \"tool\", \"content\": null}], \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", "
    "\"add_generation_prompt\": false, \"n\": [1, 2.5, -3], \"d\": {\"k\": \"v\", \"e\": {}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static emdpo_json_doc *doc;
    static const emdpo_json *vars;
    if (!doc) {
        emdpo_json_error err;
        if (emdpo_json_doc_create(&doc) || emdpo_json_parse(doc, k_vars, sizeof k_vars - 1, &vars, &err)) abort();
    }
    emdpo_jinja *t = NULL;
    emdpo_diag diag;
    int rc = emdpo_jinja_parse((const char *)data, size, "fuzz.jinja", &t, &diag);
    if (rc == EMDPO_ERR_NOMEM) abort();
    if (rc) {
        if (t) abort();
        return 0;
    }
    emdpo_jinja_limits lim;
    emdpo_jinja_limits_init(&lim);
    lim.max_output = 1 << 16;
    lim.max_memory = 8 << 20;
    lim.max_steps = 20000;
    lim.max_depth = 64;
    for (int pass = 0; pass < 2; pass++) {
        char *out = NULL;
        size_t len = 0;
        rc = emdpo_jinja_render(t, vars, &lim, &out, &len, &diag);
        if (rc == EMDPO_ERR_NOMEM) abort();
        if (rc == 0) {
            if (!out || out[len] != 0) abort();
            if (emdpo_utf8_invalid_at(out, len) != len) abort();
            emdpo_free(out, len + 1);
        } else if (out || !diag.msg[0]) {
            abort();
        }
    }
    emdpo_jinja_free(t);
    return 0;
}
