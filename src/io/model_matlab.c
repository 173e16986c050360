/* MATLAB code written by genFunction(net, ...) for the shallow-network toolbox (feedforwardnet,
 * fitnet, patternnet, newff): the route MATLAB users have, since these networks cannot be exported
 * to ONNX and a saved network object cannot be read outside MATLAB.
 *
 * The file is a MATLAB function in three parts, which genFunction marks with comments:
 *   % ===== NEURAL NETWORK CONSTANTS =====   x1_step1.xoffset = [...]; b1 = [...]; IW1_1 = [...]; ...
 *   % ===== SIMULATION ========              Xp1 = mapminmax_apply(X{1,ts},x1_step1);
 *                                           a1 = tansig_apply(repmat(b1,1,Q) + IW1_1*Xp1); ...
 *   % ===== MODULE FUNCTIONS ========        function y = mapminmax_apply(x,settings) ...
 * Constants are read from any assignment of a numeric literal to a recognised name: struct style
 * (x1_step1.gain) and the older flat style (x1_step1_gain) both normalise to "x1_step1.gain".
 * The network's structure is read from the simulation statements only: the order of the input
 * steps (x1_step1, x1_step2, ... as the *_apply calls use them), the layers aK = f_apply(bK +
 * W*src) in the order they are computed, and the output steps (*_reverse calls, last step first).
 * Control flow, cell handling and the transposes that make samples rows or columns do not change
 * the mathematical map and are ignored, so the cell, MatrixOnly, row and column forms give one net.
 *
 * MATLAB's removeconstantrows settings of an input hold only `keep`; the raw input length then
 * comes from the header comment genFunction writes ("x1 = 13xQ matrix, input #1", or Qx13) or an
 * `xrows` field. Indices in the file are 1-based and become 0-based.
 *
 * Numbers follow MATLAB's literal syntax: [a b; c d], commas or blanks between columns, semicolons
 * or newlines between rows, "..." continuations, % comments, a trailing ' transposes; exponents
 * with e, E, d or D; any number of digits (strtod rounds correctly). Inf and NaN are refused. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"
#include "io/model_import.h"

#define NAME_MAX_LEN 64
/* genFunction numbers layers, inputs and steps from 1; anything larger is not from it. */
#define INDEX_MAX 1000000u
/* The longest number literal accepted (digits beyond 17 do not change a double, but are legal). */
#define NUMBER_MAX_LEN 400

typedef struct {
    char name[NAME_MAX_LEN]; /* normalised: "b1", "IW1_1", "LW2_1", "x1_step1.gain" */
    size_t rows, cols;
    double *v; /* rows x cols, row-major */
    size_t line;
} mconst;

typedef struct {
    nnd_proc_type type;
    size_t step; /* the N of x1_stepN / y1_stepN */
    size_t line;
} mstep;

typedef struct {
    int act;
    int has_bias;
    size_t line;
} mlayer;

typedef struct {
    const char *name;
    const char *p, *end;
    size_t line;
    char *buf; /* the current statement, comments and continuations removed */
    size_t stmt_line;
    const char *scan_error;
    mconst *c;
    size_t nc, capc;
    mstep in[64], out[64];
    size_t n_in_steps, n_out_steps;
    mlayer *layers;
    size_t nl, capl;
    size_t n_in_hint; /* from the header comment "13xQ matrix, input #1"; 0 if none */
} mctx;

/* ---------------------------------------------------------------- messages */

typedef struct {
    char s[72];
} quoted;

/* A piece of the file made safe for a one-line message. */
static quoted qs(const char *text, size_t len)
{
    quoted r;
    size_t i = 0, max = 60;
    for (; i < len && i < max && text[i]; i++)
        r.s[i] = (unsigned char)text[i] < 0x20 || (unsigned char)text[i] >= 0x7f ? '?' : text[i];
    r.s[i] = '\0';
    if (i < len && text[i])
        memcpy(r.s + i, "...", 4);
    return r;
}

static quoted q(const char *text) { return qs(text, strlen(text)); }

static nnd_status bad(nnd_status s, const mctx *c, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static nnd_status bad(nnd_status s, const mctx *c, size_t line, const char *fmt, ...)
{
    char detail[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (line)
        return nnd__fail(s, "%s: line %zu: %s", c->name, line, detail);
    return nnd__fail(s, "%s: %s", c->name, detail);
}

static nnd_status builder_failed(nnd_status s, const mctx *c, const char *what)
{
    char msg[256];
    s = nnd__builder_status(s, msg, sizeof msg);
    return bad(s, c, 0, "%s: %s", what, msg);
}

static const char *pl(size_t n) { return n == 1 ? "" : "s"; }

/* ---------------------------------------------------------------- small lexical helpers */

static int is_alpha(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_'; }
static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static int is_alnum(char ch) { return is_alpha(ch) || is_digit(ch); }
static int is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v'; }

/* A decimal index 1..INDEX_MAX at *s; advances *s. 0 when there is none. */
static size_t read_index(const char **s)
{
    size_t v = 0;
    const char *p = *s;
    if (!is_digit(*p) || *p == '0')
        return 0;
    while (is_digit(*p)) {
        v = v * 10 + (size_t)(*p - '0');
        if (v > INDEX_MAX)
            return 0;
        p++;
    }
    *s = p;
    return v;
}

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* "function" followed by a blank or '[' (or the end). */
static int is_function_kw(const char *s)
{
    return starts(s, "function") && (s[8] == '\0' || is_blank(s[8]) || s[8] == '[');
}

/* The sniffer: the first code after blank lines and % comments is the keyword "function". */
int nnd__sniff_matlab(const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (;;) {
        while (i < n && (is_blank((char)p[i]) || p[i] == '\n'))
            i++;
        if (i < n && p[i] == '%') {
            while (i < n && p[i] != '\n')
                i++;
            continue;
        }
        break;
    }
    if (n - i < 8 || memcmp(p + i, "function", 8) != 0)
        return 0;
    return n - i == 8 || is_blank((char)p[i + 8]) || p[i + 8] == '[' || p[i + 8] == '\n';
}

/* ---------------------------------------------------------------- statements */

enum { ST_EOF, ST_STMT, ST_MARK_SIM, ST_MARK_MODULE };

/* The header comment's "NxQ matrix, input #1" or "QxN matrix, input #1". */
static void header_hint(mctx *c, const char *s, const char *e)
{
    const char *hit = NULL;
    for (const char *t = s; t + 8 <= e; t++)
        if (memcmp(t, "input #1", 8) == 0 && (t + 8 == e || !is_digit(t[8]))) {
            hit = t;
            break;
        }
    if (!hit)
        return;
    for (const char *t = s; t < hit; t++) {
        const char *u = t;
        size_t v;
        if (t[0] == 'Q' && t + 1 < hit && t[1] == 'x' && (t == s || !is_alnum(t[-1]))) {
            u = t + 2;
            if ((v = read_index(&u)) && (u >= hit || !is_alnum(*u))) {
                c->n_in_hint = v;
                return;
            }
        } else if (is_digit(t[0]) && (t == s || !is_alnum(t[-1]))) {
            if ((v = read_index(&u)) && u + 1 < hit && u[0] == 'x' && u[1] == 'Q' && (u + 2 >= hit || !is_alnum(u[2]))) {
                c->n_in_hint = v;
                return;
            }
        }
    }
}

static int contains(const char *s, const char *e, const char *what)
{
    size_t n = strlen(what);
    for (const char *t = s; t + n <= e; t++)
        if (memcmp(t, what, n) == 0)
            return 1;
    return 0;
}

/* The next statement into c->buf: comments and "..." continuations removed, runs of blanks as one
 * blank, newlines inside brackets as ';' (a row break, as MATLAB reads them). Statements end at a
 * newline, ';' or ',' outside brackets. genFunction's section comments come back as markers. */
static int scan(mctx *c)
{
    size_t n = 0;
    int depth = 0;
    char prev = 0; /* the last character emitted other than a blank */
    c->stmt_line = c->line;
    while (c->p < c->end) {
        char ch = *c->p;
        if (ch == '%') {
            const char *s = c->p, *e = memchr(s, '\n', (size_t)(c->end - s));
            if (!e)
                e = c->end;
            if (depth == 0 && n == 0 && e - s >= 2 && s[1] == '{') {
                /* %{ ... %} block comment (the opening line holds only "%{") */
                const char *t = s + 2;
                while (t < e && is_blank(*t))
                    t++;
                if (t == e) {
                    int level = 0;
                    const char *line = s;
                    while (line < c->end) {
                        const char *le = memchr(line, '\n', (size_t)(c->end - line));
                        const char *a = line;
                        if (!le)
                            le = c->end;
                        while (a < le && is_blank(*a))
                            a++;
                        if (le - a >= 2 && a[0] == '%' && (a[1] == '{' || a[1] == '}')) {
                            const char *z = a + 2;
                            while (z < le && is_blank(*z))
                                z++;
                            if (z == le)
                                level += a[1] == '{' ? 1 : -1;
                        }
                        line = le < c->end ? le + 1 : le;
                        if (le < c->end)
                            c->line++;
                        if (level == 0)
                            break;
                    }
                    c->p = line;
                    c->stmt_line = c->line;
                    continue;
                }
            }
            if (depth == 0 && n == 0) {
                c->p = e;
                if (contains(s, e, "===== SIMULATION"))
                    return ST_MARK_SIM;
                if (contains(s, e, "===== MODULE FUNCTIONS"))
                    return ST_MARK_MODULE;
                header_hint(c, s, e);
            }
            c->p = e;
            continue;
        }
        if (ch == '.' && c->end - c->p >= 3 && c->p[1] == '.' && c->p[2] == '.') {
            const char *e = memchr(c->p, '\n', (size_t)(c->end - c->p));
            c->p = e ? e + 1 : c->end;
            if (e)
                c->line++;
            if (n && c->buf[n - 1] != ' ')
                c->buf[n++] = ' ';
            continue;
        }
        if (ch == '\n') {
            c->p++;
            c->line++;
            if (depth > 0) {
                c->buf[n++] = ';';
                prev = ';';
                continue;
            }
            if (n > 0)
                break;
            c->stmt_line = c->line;
            continue;
        }
        if (is_blank(ch)) {
            c->p++;
            if (n && c->buf[n - 1] != ' ')
                c->buf[n++] = ' ';
            continue;
        }
        if (depth == 0 && (ch == ';' || ch == ',')) {
            c->p++;
            if (n > 0)
                break;
            continue;
        }
        if (ch == '"' || (ch == '\'' && !(is_alnum(prev) || prev == ')' || prev == ']' || prev == '}' ||
                                          prev == '\'' || prev == '.'))) {
            /* a string: copied as it is, '' and "" inside are the quote itself */
            c->buf[n++] = *c->p++;
            for (;;) {
                if (c->p == c->end || *c->p == '\n') {
                    c->scan_error = "unterminated string";
                    c->buf[n] = '\0';
                    return ST_STMT;
                }
                char d = *c->p++;
                c->buf[n++] = d;
                if (d == ch) {
                    if (c->p < c->end && *c->p == ch) {
                        c->buf[n++] = *c->p++;
                        continue;
                    }
                    break;
                }
            }
            prev = ch;
            continue;
        }
        if (ch == '[' || ch == '(' || ch == '{')
            depth++;
        else if (ch == ']' || ch == ')' || ch == '}') {
            if (depth == 0) {
                c->scan_error = "unbalanced brackets";
                c->buf[n] = '\0';
                return ST_STMT;
            }
            depth--;
        }
        c->buf[n++] = ch;
        prev = ch;
        c->p++;
    }
    if (depth > 0) {
        c->scan_error = "unbalanced brackets (the file ends inside [ ], ( ) or { })";
        c->buf[n] = '\0';
        return ST_STMT;
    }
    while (n && c->buf[n - 1] == ' ')
        n--;
    c->buf[n] = '\0';
    return n ? ST_STMT : ST_EOF;
}

/* Split "LHS = RHS" at the '=' outside brackets that is not part of ==, ~=, <=, >=. */
static int split_assign(char *s, char **lhs, char **rhs)
{
    int depth = 0;
    for (char *t = s; *t; t++) {
        if (*t == '\'' || *t == '"')
            return 0; /* no assignment we need has a string before its '=' */
        if (*t == '[' || *t == '(' || *t == '{')
            depth++;
        else if (*t == ']' || *t == ')' || *t == '}')
            depth--;
        else if (*t == '=' && depth == 0) {
            if (t[1] == '=' || (t > s && (t[-1] == '~' || t[-1] == '<' || t[-1] == '>' || t[-1] == '=')))
                return 0;
            char *e = t;
            while (e > s && e[-1] == ' ')
                e--;
            *e = '\0';
            *lhs = s;
            t++;
            while (*t == ' ')
                t++;
            *rhs = t;
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- names */

/* Normalise a constant's name: "b1", "IW1_1", "LW2_1", "x1_step1.gain" (from x1_step1.gain or the
 * flat x1_step1_gain). 0 when `s` is not the name of a genFunction constant. */
static int const_name(const char *s, char out[NAME_MAX_LEN])
{
    const char *p = s;
    if (p[0] == 'b') {
        p++;
        if (read_index(&p) && *p == '\0' && strlen(s) < NAME_MAX_LEN) {
            strcpy(out, s);
            return 1;
        }
        return 0;
    }
    if ((p[0] == 'I' || p[0] == 'L') && p[1] == 'W') {
        p += 2;
        if (read_index(&p) && *p++ == '_' && read_index(&p) && *p == '\0' && strlen(s) < NAME_MAX_LEN) {
            strcpy(out, s);
            return 1;
        }
        return 0;
    }
    if (p[0] == 'x' || p[0] == 'y') {
        p++;
        if (!read_index(&p) || !starts(p, "_step"))
            return 0;
        p += 5;
        if (!read_index(&p) || (*p != '.' && *p != '_') || !is_alpha(p[1]))
            return 0;
        for (const char *f = p + 1; *f; f++)
            if (!is_alnum(*f))
                return 0;
        if (strlen(s) >= NAME_MAX_LEN)
            return 0;
        strcpy(out, s);
        out[p - s] = '.';
        return 1;
    }
    return 0;
}

static const mconst *find_const(const mctx *c, const char *name)
{
    for (size_t i = 0; i < c->nc; i++)
        if (strcmp(c->c[i].name, name) == 0)
            return &c->c[i];
    return NULL;
}

/* ---------------------------------------------------------------- numeric literals */

/* One number at *s (sign included); advances *s. */
static int parse_number(const char **s, double *out, int *finite)
{
    char tmp[NUMBER_MAX_LEN + 1];
    const char *p = *s;
    size_t n = 0;
    int digits = 0;
#define PUT(ch)                                                                                              \
    do {                                                                                                     \
        if (n >= NUMBER_MAX_LEN)                                                                             \
            return 0;                                                                                        \
        tmp[n++] = (ch);                                                                                     \
    } while (0)
    if (*p == '+' || *p == '-')
        PUT(*p++);
    while (is_digit(*p)) {
        PUT(*p++);
        digits++;
    }
    if (*p == '.') {
        PUT(*p++);
        while (is_digit(*p)) {
            PUT(*p++);
            digits++;
        }
    }
    if (!digits)
        return 0;
    if (*p == 'e' || *p == 'E' || *p == 'd' || *p == 'D') {
        PUT('e');
        p++;
        if (*p == '+' || *p == '-')
            PUT(*p++);
        if (!is_digit(*p))
            return 0;
        while (is_digit(*p))
            PUT(*p++);
    }
#undef PUT
    if (is_alpha(*p) || *p == '.')
        return 0; /* 1.2.3, 3i, 1e5x */
    tmp[n] = '\0';
    errno = 0;
    *out = strtod(tmp, NULL);
    *finite = isfinite(*out) && !(errno == ERANGE && fabs(*out) > 1);
    *s = p;
    return 1;
}

/* A MATLAB numeric literal: a number, [rows], [] or zeros(r, c) with r or c zero; a trailing '
 * transposes. *out gets rows, cols and the values (nnd__malloc'd, NULL when empty). */
static nnd_status parse_literal(const mctx *c, const char *var, const char *s, mconst *out)
{
    const char *p = s;
    size_t rows = 0, cols = 0, count = 0, cur = 0;
    int finite;
    double x;
    out->rows = out->cols = 0;
    out->v = NULL;
    if (starts(p, "zeros(")) {
        p += 6;
        size_t d[2] = {1, 1};
        for (int i = 0; i < 2; i++) {
            while (*p == ' ')
                p++;
            if (!is_digit(*p))
                return bad(NND_EFORMAT, c, c->stmt_line, "%s: zeros(...) must have two integer sizes", var);
            d[i] = 0;
            while (is_digit(*p) && d[i] < INDEX_MAX)
                d[i] = d[i] * 10 + (size_t)(*p++ - '0');
            while (*p == ' ')
                p++;
            if (*p != (i ? ')' : ','))
                return bad(NND_EFORMAT, c, c->stmt_line, "%s: zeros(...) must have two integer sizes", var);
            p++;
        }
        while (*p == ' ')
            p++;
        if (*p || (d[0] && d[1]))
            return bad(NND_EUNSUPPORTED, c, c->stmt_line, "%s: only empty zeros(r, c) literals are supported",
                       var);
        return NND_OK;
    }
    if (*p != '[') {
        if (!parse_number(&p, &x, &finite))
            return bad(NND_EFORMAT, c, c->stmt_line, "%s: expected a number or a [matrix], found '%s'", var,
                       q(s).s);
        while (*p == ' ')
            p++;
        if (*p == '\'')
            p++;
        while (*p == ' ')
            p++;
        if (*p)
            return bad(NND_EFORMAT, c, c->stmt_line, "%s: unexpected '%s' after the number", var, q(p).s);
        if (!finite)
            return bad(NND_EFORMAT, c, c->stmt_line, "%s: the number is not finite", var);
        if (!(out->v = nnd__malloc(1, sizeof(double))))
            return bad(NND_ENOMEM, c, c->stmt_line, "%s: out of memory", var);
        out->v[0] = x;
        out->rows = out->cols = 1;
        return NND_OK;
    }
    /* Two passes: count and check the shape, then store the values. */
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;
        p = s + 1;
        rows = cur = 0;
        for (;;) {
            while (*p == ' ' || *p == ',')
                p++;
            if (*p == ';' || *p == ']') {
                if (cur) {
                    if (rows && cur != cols)
                        return bad(NND_EFORMAT, c, c->stmt_line,
                                   "%s: row %zu has %zu value%s, the rows before have %zu", var, rows + 1, cur,
                                   pl(cur), cols);
                    cols = cur;
                    rows++;
                    cur = 0;
                }
                if (*p++ == ']')
                    break;
                continue;
            }
            if (!parse_number(&p, &x, &finite)) {
                if (!*p)
                    return bad(NND_EFORMAT, c, c->stmt_line, "%s: the matrix has no closing ']'", var);
                return bad(NND_EFORMAT, c, c->stmt_line, "%s: expected a number in row %zu, found '%s'", var,
                           rows + 1, q(p).s);
            }
            if (!finite)
                return bad(NND_EFORMAT, c, c->stmt_line, "%s: row %zu, column %zu is not finite", var, rows + 1,
                           cur + 1);
            if (*p != ' ' && *p != ',' && *p != ';' && *p != ']')
                return bad(NND_EFORMAT, c, c->stmt_line, "%s: unexpected '%s' after a number in row %zu", var,
                           q(p).s, rows + 1);
            if (pass)
                out->v[k] = x;
            k++;
            cur++;
        }
        count = k;
        if (pass == 0 && count) {
            if (!(out->v = nnd__malloc(count, sizeof(double))))
                return bad(NND_ENOMEM, c, c->stmt_line, "%s: out of memory for %zu values", var, count);
        }
    }
    int transpose = 0;
    while (*p == ' ')
        p++;
    if (*p == '\'') {
        transpose = 1;
        p++;
    }
    while (*p == ' ')
        p++;
    if (*p) {
        nnd__free(out->v);
        out->v = NULL;
        return bad(NND_EFORMAT, c, c->stmt_line, "%s: unexpected '%s' after the matrix", var, q(p).s);
    }
    if (!count)
        return NND_OK;
    out->rows = rows;
    out->cols = cols;
    if (transpose && rows > 1 && cols > 1) {
        double *t = nnd__malloc(count, sizeof(double));
        if (!t) {
            nnd__free(out->v);
            out->v = NULL;
            return bad(NND_ENOMEM, c, c->stmt_line, "%s: out of memory for %zu values", var, count);
        }
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++)
                t[j * rows + i] = out->v[i * cols + j];
        nnd__free(out->v);
        out->v = t;
    }
    if (transpose) {
        out->rows = cols;
        out->cols = rows;
    }
    return NND_OK;
}

static nnd_status add_const(mctx *c, const char *name, const char *rhs)
{
    if (find_const(c, name))
        return bad(NND_EFORMAT, c, c->stmt_line, "%s is assigned twice", name);
    if (c->nc == c->capc) {
        size_t cap;
        if (!nnd__mul(c->capc ? c->capc : 8, 2, &cap))
            return bad(NND_ENOMEM, c, c->stmt_line, "too many constants");
        mconst *g = nnd__malloc(cap, sizeof *g);
        if (!g)
            return bad(NND_ENOMEM, c, c->stmt_line, "out of memory for constants");
        if (c->nc)
            memcpy(g, c->c, c->nc * sizeof *g);
        nnd__free(c->c);
        c->c = g;
        c->capc = cap;
    }
    mconst *k = &c->c[c->nc];
    nnd_status s = parse_literal(c, name, rhs, k);
    if (s)
        return s;
    strcpy(k->name, name);
    k->line = c->stmt_line;
    c->nc++;
    return NND_OK;
}

/* ---------------------------------------------------------------- simulation statements */

/* The next identifier in s (dotted parts included: "x1_step1.gain"), skipping numbers and
 * operators; *len its length. NULL at the end. */
static const char *next_ident(const char **s, size_t *len)
{
    const char *p = *s;
    while (*p) {
        if (is_digit(*p) || (*p == '.' && is_digit(p[1]))) {
            int finite;
            double x;
            if (!parse_number(&p, &x, &finite))
                while (is_alnum(*p) || *p == '.')
                    p++;
            continue;
        }
        if (is_alpha(*p)) {
            const char *b = p;
            while (is_alnum(*p) || (*p == '.' && is_alpha(p[1])))
                p++;
            *len = (size_t)(p - b);
            *s = p;
            return b;
        }
        p++;
    }
    *s = p;
    return NULL;
}

static int ident_is(const char *id, size_t len, const char *what) { return strlen(what) == len && !memcmp(id, what, len); }

/* "x1_stepN" or "x1_stepN_field"/"x1_stepN.field" (io = 'x' or 'y'): *input gets the input or output
 * number, *step N. */
static int settings_ref(const char *id, size_t len, char io, size_t *input, size_t *step)
{
    char tmp[NAME_MAX_LEN];
    const char *p = tmp;
    if (len >= NAME_MAX_LEN || id[0] != io)
        return 0;
    memcpy(tmp, id, len);
    tmp[len] = '\0';
    p++;
    if (!(*input = read_index(&p)) || !starts(p, "_step"))
        return 0;
    p += 5;
    if (!(*step = read_index(&p)))
        return 0;
    return *p == '\0' || ((*p == '_' || *p == '.') && is_alpha(p[1]));
}

static const char *proc_name(nnd_proc_type t)
{
    return t == NND_PROC_MAPMINMAX ? "mapminmax" : t == NND_PROC_MAPSTD ? "mapstd" : "removeconstantrows";
}

/* A processing call "NAME_apply(" / "NAME_reverse(" in rhs: the step it applies. 0 when there is
 * none, 1 when found, or a failure status through *s. */
static int proc_call(mctx *c, const char *rhs, const char *suffix, char io, nnd_status *s)
{
    size_t slen = strlen(suffix), len;
    const char *p = rhs, *id;
    *s = NND_OK;
    while ((id = next_ident(&p, &len))) {
        if (len <= slen || memcmp(id + len - slen, suffix, slen) != 0 || *p != '(')
            continue;
        size_t nlen = len - slen;
        nnd_proc_type type;
        if (ident_is(id, nlen, "mapminmax"))
            type = NND_PROC_MAPMINMAX;
        else if (ident_is(id, nlen, "mapstd"))
            type = NND_PROC_MAPSTD;
        else if (ident_is(id, nlen, "removeconstantrows"))
            type = NND_PROC_REMOVECONSTANTROWS;
        else {
            char fn[NAME_MAX_LEN];
            snprintf(fn, sizeof fn, "%.*s", (int)(nlen < NAME_MAX_LEN ? nlen : NAME_MAX_LEN - 1), id);
            if (io == 'x' && nnd_act_from_name(fn) >= 0)
                *s = bad(NND_EFORMAT, c, c->stmt_line,
                         "transfer function %s_apply is not assigned to a layer output (a1, a2, ...)", q(fn).s);
            else
                *s = bad(NND_EUNSUPPORTED, c, c->stmt_line,
                         "processing function '%s' is not supported (only mapminmax, mapstd and removeconstantrows)",
                         q(fn).s);
            return 1;
        }
        /* The settings argument(s): every x1_stepN-style name in the call must name one step. */
        size_t step = 0, input, st, alen;
        const char *q2 = p, *a;
        while ((a = next_ident(&q2, &alen))) {
            if (a[0] == io && settings_ref(a, alen, io, &input, &st)) {
                if (input != 1) {
                    *s = bad(NND_EUNSUPPORTED, c, c->stmt_line,
                             "%s %zu: only networks with one input and one output are supported",
                             io == 'x' ? "input" : "output", input);
                    return 1;
                }
                if (step && st != step) {
                    *s = bad(NND_EFORMAT, c, c->stmt_line, "one call uses the settings of two steps (%zu and %zu)",
                             step, st);
                    return 1;
                }
                step = st;
            }
        }
        if (!step) {
            *s = bad(NND_EFORMAT, c, c->stmt_line, "%s%s(...) has no %c1_stepN settings argument",
                     proc_name(type), suffix, io);
            return 1;
        }
        mstep *list = io == 'x' ? c->in : c->out;
        size_t *n = io == 'x' ? &c->n_in_steps : &c->n_out_steps;
        if (*n == sizeof c->in / sizeof c->in[0]) {
            *s = bad(NND_EUNSUPPORTED, c, c->stmt_line, "more than %zu processing steps", *n);
            return 1;
        }
        list[(*n)++] = (mstep){type, step, c->stmt_line};
        return 1;
    }
    return 0;
}

/* aK = [f_apply(] [repmat(]bK[,1,Q)] + W*src [)] in any of genFunction's spellings. */
static nnd_status layer_stmt(mctx *c, size_t k, const char *rhs)
{
    const char *p = rhs, *id;
    size_t len;
    int act = NND_ACT_PURELIN, has_act = 0, has_bias = 0, has_w = 0;
    if (k != c->nl + 1)
        return bad(NND_EFORMAT, c, c->stmt_line, "layer a%zu is computed %s (the layers must be computed in order)",
                   k, k <= c->nl ? "twice" : c->nl ? "after a missing layer" : "before a1");
    for (const char *t = rhs; *t; t++)
        if (!strchr("()+,*@{} ;", *t) && !is_alnum(*t) && *t != '.')
            return bad(NND_EUNSUPPORTED, c, c->stmt_line, "layer %zu: unexpected operator '%c' in '%s'", k, *t,
                       q(rhs).s);
    while ((id = next_ident(&p, &len))) {
        char name[NAME_MAX_LEN];
        if (len >= NAME_MAX_LEN)
            return bad(NND_EUNSUPPORTED, c, c->stmt_line, "layer %zu: unexpected term '%s'", k, qs(id, len).s);
        memcpy(name, id, len);
        name[len] = '\0';
        if (len > 6 && !strcmp(name + len - 6, "_apply") && *p == '(') {
            name[len - 6] = '\0';
            if (has_act || has_bias || has_w)
                return bad(NND_EUNSUPPORTED, c, c->stmt_line, "layer %zu: transfer function %s is not applied to the whole net input",
                           k, q(name).s);
            act = nnd_act_from_name(name);
            if (act < 0)
                return bad(NND_EUNSUPPORTED, c, c->stmt_line,
                           "layer %zu: transfer function '%s' is not supported (see nnderiv.h for the list)", k,
                           q(name).s);
            has_act = 1;
        } else if (!strcmp(name, "repmat") || !strcmp(name, "bsxfun") || !strcmp(name, "plus") ||
                   !strcmp(name, "Q")) {
            continue;
        } else if (name[0] == 'b') {
            const char *t = name + 1;
            if (read_index(&t) != k || *t)
                return bad(NND_EUNSUPPORTED, c, c->stmt_line, "layer %zu: uses bias %s of another layer", k,
                           q(name).s);
            if (has_bias++)
                return bad(NND_EUNSUPPORTED, c, c->stmt_line, "layer %zu: adds its bias twice", k);
        } else if ((name[0] == 'I' || name[0] == 'L') && name[1] == 'W') {
            const char *t = name + 2;
            size_t i = read_index(&t), j = 0;
            if (*t == '_') {
                t++;
                j = read_index(&t);
            }
            if (!i || !j || *t)
                return bad(NND_EUNSUPPORTED, c, c->stmt_line, "layer %zu: unexpected term '%s'", k, q(name).s);
            if (has_w++)
                return bad(NND_EUNSUPPORTED, c, c->stmt_line,
                           "layer %zu: more than one weight term (cascade or multi-input networks are not supported)",
                           k);
            if (i != k)
                return bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: uses the weights %s of layer %zu", k, q(name).s, i);
            int iw = name[0] == 'I';
            if (iw && j != 1)
                return bad(NND_EUNSUPPORTED, c, c->stmt_line, "%s: only networks with one input are supported",
                           q(name).s);
            if (iw != (k == 1) || (!iw && j != k - 1))
                return bad(NND_EUNSUPPORTED, c, c->stmt_line,
                           "layer %zu: %s is not a feed-forward chain connection (layer 1 takes IW1_1 times the "
                           "input, layer k takes LWk_(k-1) times a(k-1))",
                           k, q(name).s);
            while (*p == ' ')
                p++;
            if (*p != '*')
                return bad(NND_EUNSUPPORTED, c, c->stmt_line, "layer %zu: %s is not multiplied by the layer input",
                           k, q(name).s);
            p++;
            const char *src = next_ident(&p, &len);
            if (!src)
                return bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: %s * what?", k, q(name).s);
            size_t from = 0;
            if (src[0] == 'a' && len > 1) {
                const char *t2 = src + 1;
                from = read_index(&t2);
                if (t2 != src + len)
                    from = 0;
            }
            if (k > 1 && from != k - 1)
                return bad(NND_EUNSUPPORTED, c, c->stmt_line, "layer %zu: %s multiplies %s, not a%zu", k, q(name).s,
                           qs(src, len).s, k - 1);
            if (k == 1 && from)
                return bad(NND_EFORMAT, c, c->stmt_line, "layer 1: IW1_1 multiplies a layer output");
            while (*p == ' ')
                p++;
            if (*p == '{') { /* X{1,ts} */
                int d = 0;
                for (; *p; p++) {
                    d += *p == '{';
                    d -= *p == '}';
                    if (!d) {
                        p++;
                        break;
                    }
                }
            }
        } else {
            return bad(NND_EUNSUPPORTED, c, c->stmt_line, "layer %zu: unexpected term '%s' in '%s'", k, q(name).s,
                       q(rhs).s);
        }
    }
    if (!has_w)
        return bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: no weight term (%s*...)", k, k == 1 ? "IW1_1" : "LWk_j");
    if (c->nl == c->capl) {
        size_t cap = c->capl ? 2 * c->capl : 8;
        mlayer *g = nnd__malloc(cap, sizeof *g);
        if (!g)
            return bad(NND_ENOMEM, c, c->stmt_line, "out of memory");
        if (c->nl)
            memcpy(g, c->layers, c->nl * sizeof *g);
        nnd__free(c->layers);
        c->layers = g;
        c->capl = cap;
    }
    c->layers[c->nl++] = (mlayer){act, has_bias, c->stmt_line};
    return NND_OK;
}

static nnd_status sim_stmt(mctx *c, const char *lhs, const char *rhs)
{
    nnd_status s;
    if (lhs[0] == 'a') {
        const char *t = lhs + 1;
        size_t k = read_index(&t);
        if (k && !*t)
            return layer_stmt(c, k, rhs);
    }
    if (proc_call(c, rhs, "_apply", 'x', &s))
        return s;
    if (proc_call(c, rhs, "_reverse", 'y', &s))
        return s;
    return NND_OK;
}

/* ---------------------------------------------------------------- building the net */

/* A vector constant (either orientation) of length `want` (SIZE_MAX: any, >= 1). */
static nnd_status get_vec(const mctx *c, const char *name, size_t want, const char *whence, const mconst **out)
{
    const mconst *k = find_const(c, name);
    if (!k)
        return bad(NND_EFORMAT, c, 0, "%s is used but never assigned", name);
    size_t n = k->rows * k->cols;
    if (n && k->rows != 1 && k->cols != 1)
        return bad(NND_EFORMAT, c, k->line, "%s is a %zu x %zu matrix, expected a vector", name, k->rows, k->cols);
    if (want != SIZE_MAX && n != want)
        return bad(NND_EFORMAT, c, k->line, "%s has %zu value%s, expected %zu (%s)", name, n, pl(n), want, whence);
    if (want == SIZE_MAX && !n)
        return bad(NND_EFORMAT, c, k->line, "%s is empty", name);
    *out = k;
    return NND_OK;
}

static nnd_status get_scalar(const mctx *c, const char *name, double *x)
{
    const mconst *k;
    nnd_status s = get_vec(c, name, 1, "a scalar", &k);
    if (!s)
        *x = k->v[0];
    return s;
}

/* 1-based MATLAB indices (integral doubles) as 0-based sizes, each < limit, strictly increasing. */
static nnd_status get_indices(const mctx *c, const mconst *k, size_t limit, size_t **out)
{
    size_t n = k->rows * k->cols;
    size_t *v = nnd__malloc(n ? n : 1, sizeof *v);
    *out = NULL;
    if (!v)
        return bad(NND_ENOMEM, c, k->line, "out of memory");
    for (size_t i = 0; i < n; i++) {
        double x = k->v[i];
        if (!(x >= 1 && x <= (double)limit && x == floor(x))) {
            nnd__free(v);
            return bad(NND_EFORMAT, c, k->line, "%s entry %zu is %.17g, not a row index 1..%zu", k->name, i + 1, x,
                       limit);
        }
        v[i] = (size_t)x - 1;
        if (i && v[i] <= v[i - 1]) {
            nnd__free(v);
            return bad(NND_EFORMAT, c, k->line, "%s entries must increase (entry %zu is %.17g)", k->name, i + 1, x);
        }
    }
    *out = v;
    return NND_OK;
}

static void step_name(char out[NAME_MAX_LEN], char io, size_t step, const char *field)
{
    snprintf(out, NAME_MAX_LEN, "%c1_step%zu.%s", io, step, field);
}

static nnd_status add_input_step(mctx *c, nnd_net *net, const mstep *st, size_t *n)
{
    char nm[3][NAME_MAX_LEN], what[48];
    const mconst *xo, *g;
    double y;
    nnd_status s;
    snprintf(what, sizeof what, "input step x1_step%zu (%s)", st->step, proc_name(st->type));
    if (st->type == NND_PROC_REMOVECONSTANTROWS) {
        const mconst *k;
        size_t *keep;
        step_name(nm[0], 'x', st->step, "keep");
        if ((s = get_vec(c, nm[0], SIZE_MAX, "", &k)) || (s = get_indices(c, k, *n, &keep)))
            return s;
        size_t n_keep = k->rows * k->cols;
        s = nnd_net_add_input_removeconstantrows(net, n_keep, keep);
        nnd__free(keep);
        if (s)
            return builder_failed(s, c, what);
        *n = n_keep;
        return NND_OK;
    }
    step_name(nm[0], 'x', st->step, "xoffset");
    step_name(nm[1], 'x', st->step, "gain");
    step_name(nm[2], 'x', st->step, st->type == NND_PROC_MAPMINMAX ? "ymin" : "yoffset");
    const char *whence = st->step == 1 ? "the input length" : "the length after the previous step";
    if ((s = get_vec(c, nm[0], *n, whence, &xo)) || (s = get_vec(c, nm[1], *n, whence, &g)) ||
        (s = get_scalar(c, nm[2], &y)))
        return s;
    s = st->type == NND_PROC_MAPMINMAX ? nnd_net_add_input_mapminmax(net, xo->v, g->v, y)
                                       : nnd_net_add_input_mapstd(net, xo->v, g->v, y);
    return s ? builder_failed(s, c, what) : NND_OK;
}

/* Output step `st`; *rows: its processed length (what it hands to the next step). */
static nnd_status add_output_step(mctx *c, nnd_net *net, const mstep *st, size_t *rows)
{
    char nm[4][NAME_MAX_LEN], what[48];
    nnd_status s;
    snprintf(what, sizeof what, "output step y1_step%zu (%s)", st->step, proc_name(st->type));
    if (st->type == NND_PROC_REMOVECONSTANTROWS) {
        const mconst *k, *r = NULL, *cv = NULL;
        double xr;
        size_t *keep = NULL, *rem = NULL, n_keep, n_rem = 0;
        step_name(nm[0], 'y', st->step, "xrows");
        step_name(nm[1], 'y', st->step, "keep");
        step_name(nm[2], 'y', st->step, "remove");
        step_name(nm[3], 'y', st->step, "constants");
        if ((s = get_scalar(c, nm[0], &xr)))
            return s;
        if (!(xr >= 1 && xr <= INDEX_MAX && xr == floor(xr)))
            return bad(NND_EFORMAT, c, find_const(c, nm[0])->line, "%s must be a positive integer, not %.17g", nm[0], xr);
        size_t x_rows = (size_t)xr;
        if ((s = get_vec(c, nm[1], SIZE_MAX, "", &k)) || (s = get_indices(c, k, x_rows, &keep)))
            return s;
        n_keep = k->rows * k->cols;
        double *constants = NULL;
        if (n_keep < x_rows) {
            if ((s = get_vec(c, nm[2], x_rows - n_keep, "xrows - length(keep)", &r)) ||
                (s = get_indices(c, r, x_rows, &rem)) ||
                (s = get_vec(c, nm[3], x_rows - n_keep, "length(remove)", &cv)))
                goto rcr_done;
            n_rem = x_rows - n_keep;
            for (size_t i = 0, j = 0; i < n_keep && j < n_rem;) /* keep and remove must partition the rows */
                if (keep[i] == rem[j]) {
                    s = bad(NND_EFORMAT, c, r->line, "%s and %s both hold row %zu", nm[1], nm[2], keep[i] + 1);
                    goto rcr_done;
                } else if (keep[i] < rem[j])
                    i++;
                else
                    j++;
            constants = cv->v;
        }
        if ((s = nnd_net_add_output_removeconstantrows(net, x_rows, n_keep, keep, constants)))
            s = builder_failed(s, c, what);
        *rows = n_keep;
    rcr_done:
        nnd__free(keep);
        nnd__free(rem);
        return s;
    }
    const mconst *xo, *g;
    double y;
    step_name(nm[0], 'y', st->step, "xoffset");
    step_name(nm[1], 'y', st->step, "gain");
    step_name(nm[2], 'y', st->step, st->type == NND_PROC_MAPMINMAX ? "ymin" : "yoffset");
    if ((s = get_vec(c, nm[0], SIZE_MAX, "", &xo)) ||
        (s = get_vec(c, nm[1], xo->rows * xo->cols, "the length of xoffset", &g)) || (s = get_scalar(c, nm[2], &y)))
        return s;
    size_t len = xo->rows * xo->cols;
    s = st->type == NND_PROC_MAPMINMAX ? nnd_net_add_output_mapminmax(net, len, xo->v, g->v, y)
                                       : nnd_net_add_output_mapstd(net, len, xo->v, g->v, y);
    *rows = len;
    return s ? builder_failed(s, c, what) : NND_OK;
}

static nnd_status build(mctx *c, nnd_net **net)
{
    nnd_status s;
    size_t n_in = 0, n;
    if (!c->nl)
        return bad(NND_EFORMAT, c, 0, "no layer is computed (no 'a1 = ...' statement): not a genFunction file?");
    for (size_t i = 0; i < c->nc; i++) {
        const char *nm = c->c[i].name, *t = nm + 1;
        size_t input, step;
        if ((nm[0] == 'x' || nm[0] == 'y') && read_index(&t) != 1 && settings_ref(nm, strlen(nm), nm[0], &input, &step))
            return bad(NND_EUNSUPPORTED, c, c->c[i].line, "%s: only networks with one input and one output are supported",
                       nm);
    }
    for (size_t i = 0; i < c->n_in_steps; i++)
        if (c->in[i].step != i + 1)
            return bad(NND_EFORMAT, c, c->in[i].line, "input step x1_step%zu is applied %s; steps apply in order from x1_step1",
                       c->in[i].step, i ? "out of order" : "first");
    for (size_t i = 0; i < c->n_out_steps; i++)
        if (c->out[i].step != c->n_out_steps - i)
            return bad(NND_EFORMAT, c, c->out[i].line,
                       "output step y1_step%zu is reversed out of order (the last step is reversed first, down to y1_step1)",
                       c->out[i].step);

    /* The raw input length. */
    const mconst *k;
    if (c->n_in_steps && c->in[0].type == NND_PROC_REMOVECONSTANTROWS) {
        double xr;
        if (find_const(c, "x1_step1.xrows")) {
            if ((s = get_scalar(c, "x1_step1.xrows", &xr)))
                return s;
            if (!(xr >= 1 && xr <= INDEX_MAX && xr == floor(xr)))
                return bad(NND_EFORMAT, c, 0, "x1_step1.xrows must be a positive integer, not %.17g", xr);
            n_in = (size_t)xr;
        } else if (c->n_in_hint) {
            n_in = c->n_in_hint;
        } else {
            return bad(NND_EFORMAT, c, 0,
                       "cannot tell the input length: the first input step is removeconstantrows and neither the "
                       "header comment ('... = NxQ matrix, input #1') nor x1_step1.xrows gives it");
        }
    } else if (c->n_in_steps) {
        if ((s = get_vec(c, "x1_step1.xoffset", SIZE_MAX, "", &k)))
            return s;
        n_in = k->rows * k->cols;
    } else {
        if (!(k = find_const(c, "IW1_1")))
            return bad(NND_EFORMAT, c, 0, "IW1_1 is used but never assigned");
        n_in = k->cols;
    }
    if (!n_in)
        return bad(NND_EFORMAT, c, 0, "the input length is 0");
    if (c->n_in_hint && c->n_in_hint != n_in)
        return bad(NND_EFORMAT, c, 0, "the header comment says input #1 has %zu rows, the constants say %zu",
                   c->n_in_hint, n_in);

    if ((s = nnd_net_new(n_in, net)))
        return builder_failed(s, c, "the net");
    n = n_in;
    for (size_t i = 0; i < c->n_in_steps; i++)
        if ((s = add_input_step(c, *net, &c->in[i], &n)))
            return s;
    for (size_t l = 0; l < c->nl; l++) {
        char wn[NAME_MAX_LEN], bn[NAME_MAX_LEN], what[40];
        const mconst *W, *b = NULL;
        if (l == 0)
            snprintf(wn, sizeof wn, "IW1_1");
        else
            snprintf(wn, sizeof wn, "LW%zu_%zu", l + 1, l);
        snprintf(bn, sizeof bn, "b%zu", l + 1);
        snprintf(what, sizeof what, "layer %zu", l + 1);
        if (!(W = find_const(c, wn)))
            return bad(NND_EFORMAT, c, c->layers[l].line, "%s is used but never assigned", wn);
        if (!W->rows)
            return bad(NND_EFORMAT, c, W->line, "%s is empty", wn);
        if (W->cols != n)
            return bad(NND_EFORMAT, c, W->line, "%s is %zu x %zu, but %s has %zu value%s", wn, W->rows, W->cols,
                       l ? "the previous layer" : c->n_in_steps ? "the processed input" : "the input", n, pl(n));
        if (c->layers[l].has_bias && (s = get_vec(c, bn, W->rows, "one per row of the weights", &b)))
            return s;
        if ((s = nnd_net_add_dense(*net, W->rows, W->v, b ? b->v : NULL, c->layers[l].act)))
            return builder_failed(s, c, what);
        n = W->rows;
    }
    size_t rows = 0;
    for (size_t i = c->n_out_steps; i-- > 0;) {
        if ((s = add_output_step(c, *net, &c->out[i], &rows)))
            return s;
    }
    if (c->n_out_steps && rows != n)
        return bad(NND_EFORMAT, c, 0, "output step y1_step%zu gives %zu row%s, but the last layer has %zu unit%s",
                   c->n_out_steps, rows, pl(rows), n, pl(n));
    if ((s = nnd_net_validate(*net)))
        return builder_failed(s, c, "the net");
    return nnd__net_set_source(*net, "MATLAB genFunction code", c->name);
}

static nnd_status parse(mctx *c)
{
    int functions = 0;
    nnd_status s;
    for (;;) {
        int kind = scan(c);
        if (c->scan_error)
            return bad(NND_EFORMAT, c, c->stmt_line, "%s", c->scan_error);
        if (kind == ST_EOF || kind == ST_MARK_MODULE)
            break;
        if (kind == ST_MARK_SIM)
            continue;
        if (is_function_kw(c->buf)) {
            if (functions++)
                break; /* the module functions: their bodies are not needed */
            continue;
        }
        if (!functions)
            return bad(NND_EFORMAT, c, c->stmt_line, "code before the 'function' line");
        char *lhs, *rhs, name[NAME_MAX_LEN];
        if (!split_assign(c->buf, &lhs, &rhs))
            continue; /* if/for/end and other statements without an assignment */
        if (const_name(lhs, name)) {
            if ((s = add_const(c, name, rhs)))
                return s;
        } else if ((s = sim_stmt(c, lhs, rhs))) {
            return s;
        }
    }
    if (!functions)
        return bad(NND_EFORMAT, c, 0, "no 'function' line: not MATLAB code written by genFunction");
    return NND_OK;
}

nnd_status nnd__load_matlab(const char *text, size_t len, const char *name, nnd_net **net)
{
    mctx c;
    memset(&c, 0, sizeof c);
    c.name = name ? name : "<buffer>";
    if (!net)
        return nnd__fail(NND_EINVAL, "%s: net is NULL", c.name);
    *net = NULL;
    if (!text && len)
        return nnd__fail(NND_EINVAL, "%s: text is NULL", c.name);
    c.p = text ? text : "";
    c.end = c.p + len;
    c.line = 1;
    if (memchr(c.p, '\0', len))
        return bad(NND_EFORMAT, &c, 0, "the file holds a NUL byte: not MATLAB code");
    size_t cap;
    if (!nnd__add(len, 1, &cap) || !(c.buf = nnd__malloc(cap, 1)))
        return bad(NND_ENOMEM, &c, 0, "out of memory for a %zu-byte file", len);
    nnd_status s = parse(&c);
    if (!s)
        s = build(&c, net);
    if (s) {
        nnd_net_free(*net);
        *net = NULL;
    }
    for (size_t i = 0; i < c.nc; i++)
        nnd__free(c.c[i].v);
    nnd__free(c.c);
    nnd__free(c.layers);
    nnd__free(c.buf);
    return s;
}
