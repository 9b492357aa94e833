/* Inline SVG charts for emdpo report, and the markup helpers they share
 * with it. Everything written is XHTML-compatible (every element closed,
 * attributes quoted), every string is escaped, and each chart carries a
 * <title> and <desc> for screen readers. Non-finite values never reach the
 * drawing: a line breaks, a bar is left out, a cell shows "–", and the axes
 * are scaled on the finite values only. Series colours come from the
 * Okabe-Ito palette, distinct under the common colour-vision deficiencies;
 * lines also differ by marker shape, so they survive a grey-scale print. */
#ifndef EMDPO_SVG_H
#define EMDPO_SVG_H

#include <stddef.h>
#include <stdio.h>

/* One line of a line chart, or one bar per category of a bar chart. */
typedef struct emdpo_svg_series {
    const char *label;
    const double *y; /* (n) */
    const double *x; /* (n) line charts only; NULL means 0, 1, ..., n - 1 */
    int n;           /* bar charts: the chart's n_cats */
} emdpo_svg_series;

typedef struct emdpo_svg_chart {
    const char *id; /* unique in the page; the chart's element ids start with it */
    const char *title;
    const char *x_label, *y_label;
    const emdpo_svg_series *series;
    int n_series;
    const char *const *cats; /* bar charts: (n_cats) category labels */
    int n_cats;
    int x_integer;            /* line charts: x ticks only at whole numbers */
    int has_mark;             /* line charts: a dashed vertical marker at mark_x */
    double mark_x;
    const char *mark_label;
    int decimals;             /* bar value labels (single-series bar charts) */
    const char *value_suffix; /* appended to bar value labels, e.g. " s"; may be NULL */
} emdpo_svg_chart;

/* Lines over x, with markers at the points; a legend when there are two
 * or more. */
void emdpo_svg_lines(FILE *fp, const emdpo_svg_chart *c);
/* Vertical bars grouped by category, one bar per series, from zero (values
 * may be negative); two or more series get a legend, a single one value
 * labels ("–" at zero for a missing value). */
void emdpo_svg_bars(FILE *fp, const emdpo_svg_chart *c);
/* The first series as horizontal bars from zero, one row per category,
 * each labelled with its value. */
void emdpo_svg_hbars(FILE *fp, const emdpo_svg_chart *c);

typedef struct emdpo_svg_heat {
    const char *id, *title;
    const char *row_title, *col_title;
    const char *const *rows; /* (n_rows) labels */
    const char *const *cols; /* (n_cols) labels */
    const char *const *col_notes; /* (n_cols) second header line, or NULL */
    const double *v;         /* (n_rows, n_cols) in [0, 1] */
    int n_rows, n_cols;
} emdpo_svg_heat;

/* A table of shaded cells with their values written in them. */
void emdpo_svg_heatmap(FILE *fp, const emdpo_svg_heat *h);

/* s as HTML/XML text or attribute content: & < > " ' escaped; invalid
 * UTF-8 and control characters other than tab and newline become U+FFFD. */
void emdpo_html_text(FILE *fp, const char *s);
/* v with the given decimals, or "–" when v is not finite; returns buf.
 * decimals < 0 picks about four significant digits. Magnitudes from 1e9
 * (1e7 for decimals < 0) and below 1e-3 (decimals < 0) take an exponent. */
const char *emdpo_fmt_num(char *buf, size_t size, double v, int decimals);

#endif
