/* Chart drawing for emdpo report; see svg.h. Lengths are in the viewBox's
 * user units (a chart is 720 wide); the page's CSS scales a chart down to
 * the column width. SVG cannot measure text, so labels are laid out with an
 * average glyph advance and cut at MAX_LABEL characters, the full text
 * kept in a tooltip. */
#include "report/svg.h"

#include <math.h>
#include <string.h>

#define W 720.0
#define TITLE_H 40.0       /* the title line above every plot */
#define CHAR_W 7.2         /* advance of a 12-unit sans-serif glyph, on the wide side (DejaVu Sans) */
#define TICK_W 6.6         /* the same for the 11-unit tick labels */
#define TITLE_W 8.6        /* the same for the 14-unit bold titles */
#define MAX_LABEL 28       /* legend, category and row labels */
#define MAX_TITLE 90       /* axis titles */
#define FONT "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"

/* Okabe-Ito without its yellow, which is unreadable on white. */
static const char *const palette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000"};
#define N_COLOURS ((int)(sizeof palette / sizeof palette[0]))
#define N_SHAPES 4

static const char *colour(int i) { return palette[i % N_COLOURS]; }

/* Series past the palette repeat its colours drawn another way: outlined
 * bars, dashed lines. */
static int second_cycle(int i) { return i / N_COLOURS % 2 == 1; }

static void bar_paint(FILE *fp, int i) {
    if (second_cycle(i)) fprintf(fp, " fill=\"#fff\" stroke=\"%s\" stroke-width=\"2\"", colour(i));
    else fprintf(fp, " fill=\"%s\"", colour(i));
}

static const char *dashes(int i) { return second_cycle(i) ? " stroke-dasharray=\"7 4\"" : ""; }

/* ---- text ---- */

/* Bytes in the valid UTF-8 sequence at s (1 to 4), or 0 when invalid. */
static int utf8_len(const unsigned char *s) {
    unsigned c = s[0], cp, min;
    int n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000;
    else return 0;
    cp = c & (0x7Fu >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    return cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ? 0 : n;
}

/* Writes at most max characters of s, escaped; 1 when s was longer. */
static int put_text(FILE *fp, const char *s, size_t max) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t count = 0; *p; count++) {
        if (count == max) return 1;
        int n = utf8_len(p);
        if (n > 1) fwrite(p, 1, (size_t)n, fp);
        else if (n == 0 || (*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7F) fputs("\xEF\xBF\xBD", fp);
        else if (*p == '&') fputs("&amp;", fp);
        else if (*p == '<') fputs("&lt;", fp);
        else if (*p == '>') fputs("&gt;", fp);
        else if (*p == '"') fputs("&quot;", fp);
        else if (*p == '\'') fputs("&#39;", fp);
        else fputc(*p, fp);
        p += n ? n : 1;
    }
    return 0;
}

void emdpo_html_text(FILE *fp, const char *s) { put_text(fp, s ? s : "", (size_t)-1); }

/* Characters (not bytes) in s. */
static size_t n_chars(const char *s) {
    size_t n = 0;
    for (; s && *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static double label_width(const char *s, double char_w) {
    size_t n = n_chars(s);
    return (double)(n > MAX_LABEL ? MAX_LABEL + 1 : n) * char_w;
}

/* A chart label: cut to max characters with an ellipsis, and then followed
 * by its full text as a tooltip. Call inside the <text> element. */
static void put_label(FILE *fp, const char *s, size_t max) {
    if (!s) return;
    if (put_text(fp, s, max)) {
        fputs("\xE2\x80\xA6<title>", fp);
        emdpo_html_text(fp, s);
        fputs("</title>", fp);
    }
}

const char *emdpo_fmt_num(char *buf, size_t size, double v, int decimals) {
    if (!isfinite(v)) {
        snprintf(buf, size, "\xE2\x80\x93");
        return buf;
    }
    double a = fabs(v);
    if (a >= 1e9 || (decimals < 0 && a != 0 && (a < 1e-3 || a >= 1e7))) {
        snprintf(buf, size, "%.3e", v);
        return buf;
    }
    if (decimals < 0) {
        int d = a == 0 ? 0 : 3 - (int)floor(log10(a));
        snprintf(buf, size, "%.*f", d < 0 ? 0 : d > 6 ? 6 : d, v);
        /* Trailing zeros carry nothing here: 2, not 2.000. */
        if (strchr(buf, '.')) {
            size_t n = strlen(buf);
            while (buf[n - 1] == '0') buf[--n] = 0;
            if (buf[n - 1] == '.') buf[n - 1] = 0;
        }
    } else {
        snprintf(buf, size, "%.*f", decimals, v);
    }
    /* No "-0.000": a value that rounds to zero has no sign. */
    if (buf[0] == '-' && strspn(buf + 1, "0.") == strlen(buf + 1)) memmove(buf, buf + 1, strlen(buf));
    return buf;
}

/* ---- axes ---- */

typedef struct axis {
    double lo, hi, step;
    int n;        /* ticks: lo + i * step for i in 0..n */
    int decimals; /* of the tick labels; -1 for %.3g */
} axis;

static axis make_axis(double lo, double hi, int target, int integer) {
    axis a;
    /* Keeps hi - lo and the tick arithmetic finite for any finite input. */
    lo = fmin(fmax(lo, -1e300), 1e300);
    hi = fmin(fmax(hi, -1e300), 1e300);
    if (!(hi > lo)) {
        double pad = integer ? 1 : lo != 0 ? fabs(lo) * 0.1 : 1;
        lo -= pad;
        hi += pad;
    }
    double raw = (hi - lo) / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    a.step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    if (integer && a.step < 1) a.step = 1;
    a.lo = floor(lo / a.step + 1e-9) * a.step;
    a.hi = ceil(hi / a.step - 1e-9) * a.step;
    double n = (a.hi - a.lo) / a.step;
    a.n = n >= 1 && n <= 100 ? (int)lround(n) : 1;
    a.decimals = a.step >= 1 ? 0 : (int)ceil(-log10(a.step) - 1e-9);
    if (fmax(fabs(a.lo), fabs(a.hi)) >= 1e6 || a.step < 1e-4) a.decimals = -1;
    return a;
}

static double tick(const axis *a, int i) {
    double t = a->lo + i * a->step;
    return fabs(t) < a->step * 1e-6 ? 0 : t;
}

static const char *tick_text(char *buf, size_t size, const axis *a, double t) {
    if (a->decimals < 0) snprintf(buf, size, "%.3g", t);
    else snprintf(buf, size, "%.*f", a->decimals, t);
    return buf;
}

/* The widest tick label of a, in characters. */
static size_t tick_chars(const axis *a) {
    size_t m = 1;
    char buf[48];
    for (int i = 0; i <= a->n; i++) {
        size_t n = strlen(tick_text(buf, sizeof buf, a, tick(a, i)));
        if (n > m) m = n;
    }
    return m;
}

/* The finite range of the series' y (or x) values; 0 when there is none. */
static int range_of(const emdpo_svg_series *s, int ns, int use_x, double *lo, double *hi) {
    int any = 0;
    for (int j = 0; j < ns; j++)
        for (int i = 0; i < s[j].n; i++) {
            double v = use_x ? (s[j].x ? s[j].x[i] : i) : s[j].y[i];
            if (!isfinite(v) || (use_x && !isfinite(s[j].y[i]))) continue;
            if (!any || v < *lo) *lo = v;
            if (!any || v > *hi) *hi = v;
            any = 1;
        }
    return any;
}

/* The plot area and its scales. */
typedef struct frame {
    double x0, y0, w, h; /* top-left corner and size */
    double pad;          /* inner margin of the x scale, so end markers stay clear of the axes */
    axis ax, ay;
} frame;

/* Positions of values; values beyond an axis (only the extremes that
 * make_axis clamps) are pinned to its end. */
static double fx(const frame *f, double x) {
    x = fmin(fmax(x, f->ax.lo), f->ax.hi);
    return f->x0 + f->pad + (x - f->ax.lo) / (f->ax.hi - f->ax.lo) * (f->w - 2 * f->pad);
}
static double fy(const frame *f, double y) {
    y = fmin(fmax(y, f->ay.lo), f->ay.hi);
    return f->y0 + f->h - (y - f->ay.lo) / (f->ay.hi - f->ay.lo) * f->h;
}

/* ---- pieces ---- */

static void open_svg(FILE *fp, const char *id, const char *title, double w, double h) {
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
                "role=\"img\" aria-labelledby=\"", w, h, w, h);
    emdpo_html_text(fp, id);
    fputs("-t ", fp);
    emdpo_html_text(fp, id);
    fputs("-d\" font-family=\"" FONT "\" font-size=\"12\" fill=\"#222\">\n<title id=\"", fp);
    emdpo_html_text(fp, id);
    fputs("-t\">", fp);
    emdpo_html_text(fp, title);
    fputs("</title>\n<desc id=\"", fp);
    emdpo_html_text(fp, id);
    fputs("-d\">", fp);
}

/* Ends the <desc> opened by open_svg and draws the title line, centred
 * on a chart w wide. */
static void end_desc(FILE *fp, const char *title, double w) {
    fprintf(fp, "</desc>\n<text x=\"%.1f\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">",
            w / 2);
    emdpo_html_text(fp, title);
    fputs("</text>\n", fp);
}

static void desc_series(FILE *fp, const emdpo_svg_chart *c) {
    for (int j = 0; j < c->n_series; j++) {
        fputs(j ? ", " : "; series: ", fp);
        emdpo_html_text(fp, c->series[j].label);
    }
    fputs(".", fp);
}

static void no_data(FILE *fp, const frame *f) {
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#666\">no finite values</text>\n",
            f->x0 + f->w / 2, f->y0 + f->h / 2);
}

/* Grid lines, tick labels, the axis line and the rotated axis title. */
static void y_axis(FILE *fp, const frame *f, const char *label) {
    char buf[48];
    fputs("<g font-size=\"11\">\n", fp);
    for (int i = 0; i <= f->ay.n; i++) {
        double t = tick(&f->ay, i), y = fy(f, t);
        fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e2e2e2\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                f->x0, y, f->x0 + f->w, y, f->x0 - 6, y + 4, tick_text(buf, sizeof buf, &f->ay, t));
    }
    fputs("</g>\n", fp);
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\"/>\n", f->x0, f->y0, f->x0,
            f->y0 + f->h);
    if (label && *label) {
        fprintf(fp, "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">", f->y0 + f->h / 2);
        put_label(fp, label, MAX_TITLE);
        fputs("</text>\n", fp);
    }
}

static void x_title(FILE *fp, const frame *f, double y, const char *label) {
    if (!label || !*label) return;
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", f->x0 + f->w / 2, y);
    put_label(fp, label, MAX_TITLE);
    fputs("</text>\n", fp);
}

/* A numeric x axis along the bottom of the plot. */
static void x_axis(FILE *fp, const frame *f, const char *label) {
    char buf[48];
    double yb = f->y0 + f->h;
    fputs("<g font-size=\"11\">\n", fp);
    for (int i = 0; i <= f->ax.n; i++) {
        double t = tick(&f->ax, i), x = fx(f, t);
        fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                x, yb, x, yb + 5, x, yb + 18, tick_text(buf, sizeof buf, &f->ax, t));
    }
    fputs("</g>\n", fp);
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\"/>\n", f->x0, yb, f->x0 + f->w,
            yb);
    x_title(fp, f, yb + 38, label);
}

static void marker(FILE *fp, int shape, double x, double y, const char *fill) {
    switch (shape % N_SHAPES) {
    case 0:
        fprintf(fp, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.8\" fill=\"%s\"/>", x, y, fill);
        break;
    case 1:
        fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"7\" height=\"7\" fill=\"%s\"/>", x - 3.5, y - 3.5, fill);
        break;
    case 2:
        fprintf(fp, "<path d=\"M%.1f %.1fl4.5 4.5l-4.5 4.5l-4.5 -4.5z\" fill=\"%s\"/>", x, y - 4.5, fill);
        break;
    default:
        fprintf(fp, "<path d=\"M%.1f %.1fl4.5 8l-9 0z\" fill=\"%s\"/>", x, y - 5, fill);
        break;
    }
}

/* The legend's width for these labels (0 without labels). */
static double legend_width(const emdpo_svg_series *s, int ns) {
    double m = 0;
    for (int j = 0; j < ns; j++) m = fmax(m, label_width(s[j].label, CHAR_W));
    return m > 0 ? m + 60 : 0; /* gap, swatch, gap, text, margin */
}

/* One entry per series to the right of the plot: a swatch (line and marker,
 * or a block) and the label. */
static void legend(FILE *fp, const frame *f, const emdpo_svg_series *s, int ns, int lines) {
    double x = f->x0 + f->w + 16;
    for (int j = 0; j < ns; j++) {
        double y = f->y0 + 10 + 20 * j;
        if (lines) {
            fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>",
                    x, y, x + 22, y, colour(j), dashes(j));
            marker(fp, j, x + 11, y, colour(j));
        } else {
            fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"12\"", x + 4, y - 6);
            bar_paint(fp, j);
            fputs("/>", fp);
        }
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\">", x + 28, y + 4);
        put_label(fp, s[j].label, MAX_LABEL);
        fputs("</text>\n", fp);
    }
}

/* ---- line chart ---- */

static void draw_line(FILE *fp, const frame *f, const emdpo_svg_series *s, int j) {
    char bx[48], by[48];
    int pen = 0;
    fprintf(fp, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-linejoin=\"round\"%s d=\"", colour(j),
            dashes(j));
    for (int i = 0; i < s->n; i++) {
        double x = s->x ? s->x[i] : i, y = s->y[i];
        if (!isfinite(x) || !isfinite(y)) {
            pen = 0;
            continue;
        }
        fprintf(fp, "%s%.1f %.1f", pen ? "L" : "M", fx(f, x), fy(f, y));
        pen = 1;
    }
    fputs("\"/>\n", fp);
    for (int i = 0; i < s->n; i++) {
        double x = s->x ? s->x[i] : i, y = s->y[i];
        if (!isfinite(x) || !isfinite(y)) continue;
        fputs("<g><title>", fp);
        emdpo_html_text(fp, s->label);
        fprintf(fp, ": %s, %s</title>", emdpo_fmt_num(bx, sizeof bx, x, -1), emdpo_fmt_num(by, sizeof by, y, -1));
        marker(fp, j, fx(f, x), fy(f, y), colour(j));
        fputs("</g>", fp);
    }
    fputc('\n', fp);
}

static void draw_mark(FILE *fp, const frame *f, double x, const char *label) {
    double px = fx(f, x);
    int right = px > f->x0 + f->w * 0.7;
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\" stroke-dasharray=\"5 4\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-weight=\"bold\">",
            px, f->y0, px, f->y0 + f->h, right ? px - 5 : px + 5, f->y0 + 14, right ? "end" : "start");
    put_label(fp, label ? label : "", MAX_TITLE);
    fputs("</text>\n", fp);
}

void emdpo_svg_lines(FILE *fp, const emdpo_svg_chart *c) {
    double ylo = 0, yhi = 1, xlo = 0, xhi = 1;
    int any = range_of(c->series, c->n_series, 0, &ylo, &yhi) && range_of(c->series, c->n_series, 1, &xlo, &xhi);
    if (c->has_mark && isfinite(c->mark_x)) xlo = fmin(xlo, c->mark_x), xhi = fmax(xhi, c->mark_x);
    frame f = {.y0 = TITLE_H + 8, .h = 240, .pad = 12};
    f.ay = make_axis(ylo, yhi, 5, 0);
    f.ax = make_axis(xlo, xhi, 8, c->x_integer);
    f.x0 = 28 + (double)tick_chars(&f.ay) * TICK_W + 8;
    f.w = W - f.x0 - (c->n_series > 1 ? fmax(16, legend_width(c->series, c->n_series)) : 16);
    open_svg(fp, c->id, c->title, W, f.y0 + f.h + 52);
    fputs("Line chart of ", fp);
    emdpo_html_text(fp, c->y_label);
    fputs(" against ", fp);
    emdpo_html_text(fp, c->x_label);
    desc_series(fp, c);
    end_desc(fp, c->title, W);
    y_axis(fp, &f, c->y_label);
    x_axis(fp, &f, c->x_label);
    if (!any) no_data(fp, &f);
    for (int j = 0; any && j < c->n_series; j++) draw_line(fp, &f, &c->series[j], j);
    if (c->has_mark && isfinite(c->mark_x)) draw_mark(fp, &f, c->mark_x, c->mark_label);
    if (c->n_series > 1) legend(fp, &f, c->series, c->n_series, 1);
    fputs("</svg>\n", fp);
}

/* ---- bar charts ---- */

/* The y range of bars: the values' range widened to include zero, with
 * room beyond the longest bars for their value labels. */
static axis bar_axis(const emdpo_svg_chart *c, int *any, int target) {
    double lo = 0, hi = 0;
    *any = range_of(c->series, c->n_series, 0, &lo, &hi);
    lo = fmin(fmax(lo, -1e300), 0);
    hi = fmax(fmin(hi, 1e300), 0);
    double room = (hi - lo) * 0.06;
    return make_axis(lo < 0 ? lo - room : 0, hi > 0 ? hi + room : 0, target, 0);
}

static void bar_tooltip(FILE *fp, const char *series, const char *cat, double v) {
    char buf[48];
    fputs("<title>", fp);
    if (series) {
        emdpo_html_text(fp, series);
        fputs(", ", fp);
    }
    emdpo_html_text(fp, cat);
    fprintf(fp, ": %s</title>", emdpo_fmt_num(buf, sizeof buf, v, -1));
}

/* Category labels are turned by 35 degrees when level ones would run into
 * each other; they then hang down and to the left of their group. */
static double widest_cat(const emdpo_svg_chart *c) {
    double widest = 0;
    for (int i = 0; i < c->n_cats; i++) widest = fmax(widest, label_width(c->cats[i], CHAR_W));
    return widest;
}

static void cat_labels(FILE *fp, const frame *f, const emdpo_svg_chart *c, double gw, int turn) {
    for (int i = 0; i < c->n_cats; i++) {
        double x = f->x0 + gw * (i + 0.5), y = f->y0 + f->h + 16;
        if (turn)
            fprintf(fp, "<text transform=\"translate(%.1f %.1f) rotate(-35)\" text-anchor=\"end\">", x + 4, y - 2);
        else fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x, y);
        put_label(fp, c->cats[i], MAX_LABEL);
        fputs("</text>\n", fp);
    }
}

void emdpo_svg_bars(FILE *fp, const emdpo_svg_chart *c) {
    int any;
    frame f = {.y0 = TITLE_H + 8, .h = 240};
    f.ay = bar_axis(c, &any, 5);
    f.x0 = 28 + (double)tick_chars(&f.ay) * TICK_W + 8;
    double right = c->n_series > 1 ? fmax(16, legend_width(c->series, c->n_series)) : 16;
    int n_cats = c->n_cats > 0 ? c->n_cats : 1;
    double widest = widest_cat(c), gw = (W - f.x0 - right) / n_cats;
    int turn = widest > gw - 6;
    /* The first turned label reaches left of its group by its width's
     * horizontal part; the plot moves right to keep it in the picture. */
    double first = turn && c->n_cats > 0 ? label_width(c->cats[0], CHAR_W) * 0.82 - gw / 2 + 8 : 0;
    if (first > f.x0) {
        f.x0 = fmin(first, W / 3);
        gw = (W - f.x0 - right) / n_cats;
    }
    f.w = W - f.x0 - right;
    double bw = gw * 0.8 / (c->n_series > 0 ? c->n_series : 1);
    double below = turn ? widest * 0.57 + 18 : 20;
    open_svg(fp, c->id, c->title, W, f.y0 + f.h + below + (c->x_label ? 30 : 10));
    fputs("Bar chart of ", fp);
    emdpo_html_text(fp, c->y_label);
    fputs(" by ", fp);
    emdpo_html_text(fp, c->x_label);
    desc_series(fp, c);
    end_desc(fp, c->title, W);
    y_axis(fp, &f, c->y_label);
    if (!any) no_data(fp, &f);
    double y0 = fy(&f, 0);
    char buf[48];
    for (int i = 0; i < c->n_cats; i++)
        for (int j = 0; j < c->n_series; j++) {
            double v = c->series[j].y[i], x = f.x0 + gw * (i + 0.1) + bw * j;
            double top = isfinite(v) ? fy(&f, fmax(v, 0)) : y0, bottom = isfinite(v) ? fy(&f, fmin(v, 0)) : y0;
            if (isfinite(v)) {
                fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"", x + 1, top, bw - 2,
                        fmax(bottom - top, 0.5));
                bar_paint(fp, j);
                fputc('>', fp);
                bar_tooltip(fp, c->n_series > 1 ? c->series[j].label : NULL, c->cats[i], v);
                fputs("</rect>\n", fp);
            }
            if (c->n_series > 1) continue;
            /* A missing value is labelled "–" at zero, so it does not read as 0. */
            fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">", x + bw / 2,
                    !(v < 0) ? top - 4 : bottom + 13);
            emdpo_html_text(fp, emdpo_fmt_num(buf, sizeof buf, v, c->decimals));
            if (isfinite(v)) emdpo_html_text(fp, c->value_suffix);
            fputs("</text>\n", fp);
        }
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\"/>\n", f.x0, y0, f.x0 + f.w, y0);
    cat_labels(fp, &f, c, gw, turn);
    x_title(fp, &f, f.y0 + f.h + below + 18, c->x_label);
    if (c->n_series > 1) legend(fp, &f, c->series, c->n_series, 0);
    fputs("</svg>\n", fp);
}

void emdpo_svg_hbars(FILE *fp, const emdpo_svg_chart *c) {
    const emdpo_svg_series *s = c->series;
    double lo = 0, hi = 0, widest = 0;
    int any = c->n_series > 0 && range_of(s, 1, 0, &lo, &hi);
    for (int i = 0; i < c->n_cats; i++) widest = fmax(widest, label_width(c->cats[i], CHAR_W));
    frame f = {.y0 = TITLE_H + 4, .h = 26.0 * (c->n_cats > 0 ? c->n_cats : 1)};
    f.ax = make_axis(fmin(lo, 0), fmax(hi, 0), 6, 0);
    f.x0 = widest + 16;
    f.w = W - f.x0 - 90;
    open_svg(fp, c->id, c->title, W, f.y0 + f.h + 52);
    fputs("Horizontal bar chart of ", fp);
    emdpo_html_text(fp, c->x_label);
    fputs(" by ", fp);
    emdpo_html_text(fp, c->y_label);
    fputs(".", fp);
    end_desc(fp, c->title, W);
    fputs("<g font-size=\"11\">\n", fp);
    char buf[48];
    for (int i = 0; i <= f.ax.n; i++) {
        double t = tick(&f.ax, i), x = fx(&f, t);
        fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e2e2e2\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                x, f.y0, x, f.y0 + f.h + 5, x, f.y0 + f.h + 18, tick_text(buf, sizeof buf, &f.ax, t));
    }
    fputs("</g>\n", fp);
    for (int i = 0; i < c->n_cats; i++) {
        double v = any ? s->y[i] : NAN, yc = f.y0 + 26.0 * i + 13;
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", f.x0 - 8, yc + 4);
        put_label(fp, c->cats[i], MAX_LABEL);
        fputs("</text>\n", fp);
        double end = fx(&f, isfinite(v) ? v : 0), zero = fx(&f, 0);
        if (isfinite(v)) {
            fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"18\" fill=\"%s\">", fmin(zero, end),
                    yc - 9, fmax(fabs(end - zero), 0.5), colour(0));
            bar_tooltip(fp, NULL, c->cats[i], v);
            fputs("</rect>\n", fp);
        }
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">", fmax(zero, end) + 5, yc + 4);
        emdpo_html_text(fp, emdpo_fmt_num(buf, sizeof buf, v, c->decimals));
        if (isfinite(v)) emdpo_html_text(fp, c->value_suffix);
        fputs("</text>\n", fp);
    }
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\"/>\n", fx(&f, 0), f.y0,
            fx(&f, 0), f.y0 + f.h);
    x_title(fp, &f, f.y0 + f.h + 40, c->x_label);
    fputs("</svg>\n", fp);
}

/* ---- heat map ---- */

/* ColorBrewer "Blues": sequential, so order reads without hue. */
static const unsigned char blues[5][3] = {
    {247, 251, 255}, {198, 219, 239}, {107, 174, 214}, {33, 113, 181}, {8, 48, 107}};

static void shade(char *buf, size_t size, double v) {
    double t = fmin(fmax(v, 0), 1) * 4;
    int i = t >= 4 ? 3 : (int)t;
    double u = t - i;
    unsigned char c[3];
    for (int k = 0; k < 3; k++) c[k] = (unsigned char)lround(blues[i][k] + u * (blues[i + 1][k] - blues[i][k]));
    snprintf(buf, size, "#%02x%02x%02x", c[0], c[1], c[2]);
}

static void heat_legend(FILE *fp, const char *id, double x, double y) {
    char buf[16];
    fputs("<defs><linearGradient id=\"", fp);
    emdpo_html_text(fp, id);
    fputs("-g\">", fp);
    for (int i = 0; i <= 4; i++) {
        shade(buf, sizeof buf, i / 4.0);
        fprintf(fp, "<stop offset=\"%d%%\" stop-color=\"%s\"/>", 25 * i, buf);
    }
    fprintf(fp, "</linearGradient></defs>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">0</text>"
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"160\" height=\"12\" stroke=\"#999\" fill=\"url(#",
            x - 6, y + 10, x, y);
    emdpo_html_text(fp, id);
    fprintf(fp, "-g)\"/><text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">1 (mean posterior probability)</text>\n", x + 166,
            y + 10);
}

void emdpo_svg_heatmap(FILE *fp, const emdpo_svg_heat *h) {
    double widest = label_width(h->row_title, CHAR_W);
    for (int r = 0; r < h->n_rows; r++) widest = fmax(widest, label_width(h->rows[r], CHAR_W));
    double x0 = widest + 20, top = TITLE_H + 46, ch = 30;
    double cw = fmin(100, (W - x0 - 16) / (h->n_cols > 0 ? h->n_cols : 1));
    int numbers = cw >= 34;
    /* As wide as the grid, the colour legend or the title, so the title is
     * centred on what it names. */
    double w = fmin(W, fmax(fmax(x0 + cw * h->n_cols, x0 + 166 + 31 * TICK_W), n_chars(h->title) * TITLE_W) + 16);
    open_svg(fp, h->id, h->title, w, top + ch * h->n_rows + 44);
    fputs("Heat map; rows: ", fp);
    emdpo_html_text(fp, h->row_title);
    fputs(", columns: ", fp);
    emdpo_html_text(fp, h->col_title);
    fputs(".", fp);
    end_desc(fp, h->title, w);
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#555\">", x0 + cw * h->n_cols / 2, top - 36);
    put_label(fp, h->col_title, MAX_TITLE);
    fprintf(fp, "</text>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\">", x0 - 8, top - 8);
    put_label(fp, h->row_title, MAX_LABEL);
    fputs("</text>\n", fp);
    for (int k = 0; k < h->n_cols; k++) {
        double x = x0 + cw * (k + 0.5);
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-weight=\"bold\">", x, top - 20);
        put_label(fp, h->cols[k], MAX_LABEL);
        fputs("</text>", fp);
        if (h->col_notes) {
            fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\" fill=\"#555\">", x,
                    top - 6);
            put_label(fp, h->col_notes[k], MAX_LABEL);
            fputs("</text>", fp);
        }
        fputc('\n', fp);
    }
    char fill[16], num[48];
    for (int r = 0; r < h->n_rows; r++) {
        double y = top + ch * r;
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", x0 - 8, y + ch / 2 + 4);
        put_label(fp, h->rows[r], MAX_LABEL);
        fputs("</text>\n", fp);
        for (int k = 0; k < h->n_cols; k++) {
            double v = h->v[(size_t)r * h->n_cols + k], x = x0 + cw * k;
            if (isfinite(v)) shade(fill, sizeof fill, v);
            else snprintf(fill, sizeof fill, "#eeeeee");
            fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"#fff\">"
                        "<title>", x, y, cw, ch, fill);
            emdpo_html_text(fp, h->rows[r]);
            fputs(", ", fp);
            emdpo_html_text(fp, h->cols[k]);
            fprintf(fp, ": %s</title></rect>", emdpo_fmt_num(num, sizeof num, v, 3));
            if (numbers)
                fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"%s\">%s</text>", x + cw / 2,
                        y + ch / 2 + 4, isfinite(v) && v > 0.65 ? "#fff" : "#111", emdpo_fmt_num(num, sizeof num, v, 2));
            fputc('\n', fp);
        }
    }
    heat_legend(fp, h->id, x0, top + ch * h->n_rows + 16);
    fputs("</svg>\n", fp);
}
