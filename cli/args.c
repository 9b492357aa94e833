#include "args.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int parse_value(const cli_cmd *cmd, cli_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CLI_STR:
        *(const char **)o->dst = v;
        return 0;
    case CLI_INT: {
        long x = strtol(v, &end, 10);
        if (*v && !*end && !errno && x >= -2147483647L && x <= 2147483647L) {
            *(int *)o->dst = (int)x;
            return 0;
        }
        break;
    }
    case CLI_I64: {
        long long x = strtoll(v, &end, 10);
        if (*v && !*end && !errno) {
            *(int64_t *)o->dst = (int64_t)x;
            return 0;
        }
        break;
    }
    case CLI_U64: {
        if (*v == '-') break;
        unsigned long long x = strtoull(v, &end, 10);
        if (*v && !*end && !errno) {
            *(uint64_t *)o->dst = (uint64_t)x;
            return 0;
        }
        break;
    }
    case CLI_DBL: {
        double x = strtod(v, &end);
        if (*v && !*end && !errno && isfinite(x)) {
            *(double *)o->dst = x;
            return 0;
        }
        break;
    }
    case CLI_ENUM:
        for (int k = 0; o->names(k); k++)
            if (strcmp(v, o->names(k)) == 0) {
                *(int *)o->dst = k;
                return 0;
            }
        fprintf(stderr, "emdpo %s: --%s must be ", cmd->name, o->name);
        for (int k = 0; o->names(k); k++)
            fprintf(stderr, "%s%s", k == 0 ? "" : o->names(k + 1) ? ", " : " or ", o->names(k));
        fprintf(stderr, ", not '%s'\n", v);
        return 2;
    case CLI_FLAG:
        break;
    }
    fprintf(stderr, "emdpo %s: --%s: bad value '%s'\n", cmd->name, o->name, v);
    return 2;
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_help(cmd, stdout);
            return -1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "emdpo %s: unexpected argument '%s' (see emdpo %s --help)\n", cmd->name, a, cmd->name);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_opt *o = NULL;
        for (int q = 0; q < cmd->n_opts; q++)
            if (strlen(cmd->opts[q].name) == len && strncmp(cmd->opts[q].name, name, len) == 0) o = &cmd->opts[q];
        if (!o) {
            fprintf(stderr, "emdpo %s: unknown flag '--%.*s' (see emdpo %s --help)\n", cmd->name, (int)len, name,
                    cmd->name);
            return 2;
        }
        if (o->seen) {
            fprintf(stderr, "emdpo %s: --%s given twice\n", cmd->name, o->name);
            return 2;
        }
        o->seen = 1;
        if (o->type == CLI_FLAG) {
            if (eq) {
                fprintf(stderr, "emdpo %s: --%s takes no value\n", cmd->name, o->name);
                return 2;
            }
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "emdpo %s: --%s needs a value (%s)\n", cmd->name, o->name, o->metavar ? o->metavar : "");
            return 2;
        }
        if (parse_value(cmd, o, v)) return 2;
    }
    for (int q = 0; q < cmd->n_opts; q++)
        if (cmd->opts[q].required && !cmd->opts[q].seen) {
            fprintf(stderr, "emdpo %s: missing required flag --%s (see emdpo %s --help)\n", cmd->name,
                    cmd->opts[q].name, cmd->name);
            return 2;
        }
    return 0;
}

/* The flag's value before parsing, as help shows its default; "" when it
 * has none to show. */
static const char *default_text(const cli_opt *o, char *buf, size_t cap) {
    buf[0] = 0;
    if (o->required || strstr(o->help, "(default")) return buf;
    switch (o->type) {
    case CLI_STR:
        if (*(const char **)o->dst) snprintf(buf, cap, "%s", *(const char **)o->dst);
        break;
    case CLI_INT: snprintf(buf, cap, "%d", *(const int *)o->dst); break;
    case CLI_I64: snprintf(buf, cap, "%" PRId64, *(const int64_t *)o->dst); break;
    case CLI_U64: snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)o->dst); break;
    case CLI_DBL: snprintf(buf, cap, "%g", *(const double *)o->dst); break;
    case CLI_ENUM: {
        const char *n = o->names(*(const int *)o->dst);
        if (n) snprintf(buf, cap, "%s", n);
        break;
    }
    case CLI_FLAG: break;
    }
    return buf;
}

void cli_help(const cli_cmd *cmd, FILE *fp) {
    fprintf(fp, "usage: emdpo %s [flags]\n\n%s\n\nflags:\n", cmd->name, cmd->synopsis);
    for (int q = 0; q < cmd->n_opts; q++) {
        const cli_opt *o = &cmd->opts[q];
        char left[64], def[128];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        default_text(o, def, sizeof def);
        fprintf(fp, "  %-24s %s%s%s%s%s\n", left, o->help, def[0] ? " (default: " : "", def, def[0] ? ")" : "",
                o->required ? " (required)" : "");
    }
    fprintf(fp, "  %-24s %s\n", "--help", "show this help");
    if (cmd->details) fprintf(fp, "\n%s\n", cmd->details);
}

int cli_seen(const cli_cmd *cmd, const char *name) {
    for (int q = 0; q < cmd->n_opts; q++)
        if (strcmp(cmd->opts[q].name, name) == 0) return cmd->opts[q].seen;
    return 0;
}

int cli_parse_range(const char *s, int *lo, int *hi) {
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (end == s || errno) return -1;
    long b = a;
    if (strncmp(end, "..", 2) == 0) {
        const char *t = end + 2;
        b = strtol(t, &end, 10);
        if (end == t || errno) return -1;
    }
    if (*end || a < 1 || b < a || b > 1000000) return -1;
    *lo = (int)a;
    *hi = (int)b;
    return 0;
}

int cli_parse_doubles(const char *s, double *out, int cap) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || n == cap) return -1;
        out[n++] = x;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') {
            p++;
            if (!*p) return -1;
        } else if (*p) {
            return -1;
        }
    }
    return n;
}
