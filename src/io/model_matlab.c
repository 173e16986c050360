/* MATLAB code written by genFunction(net, ...) for the shallow-network toolbox (feedforwardnet,
 * fitnet, patternnet, newff): the route MATLAB users have, since these networks cannot be exported
 * to ONNX and a saved network object cannot be read outside MATLAB.
 *
 * The file is a MATLAB function in three parts, which genFunction marks with comments:
 *   % ===== NEURAL NETWORK CONSTANTS =====   x1_step1.xoffset = [...]; b1 = [...]; IW1_1 = [...]; ...
 *   % ===== SIMULATION ========              Xp1 = mapminmax_apply(X{1,ts},x1_step1);
 *                                           a1 = tansig_apply(repmat(b1,1,Q) + IW1_1*Xp1); ...
 *   % ===== MODULE FUNCTIONS ========        function y = mapminmax_apply(x,settings) ...
 * The reader is strict: a file is read only if every statement is one genFunction writes (see
 * "the recogniser" below). Constants are assignments of numeric literals to genFunction's names,
 * all before the simulation: struct style (x1_step1.gain) and the older flat style (x1_step1_gain)
 * both normalise to "x1_step1.gain"; every constant must be used by the net. The simulation is
 * parsed exactly: the input steps (x1_step1, x1_step2, ... in order), the layers aK = f_apply(
 * repmat(bK,1,Q) + W*src + ...) in order, the output steps (*_reverse calls, last step first); the other
 * statements of the main function (argument formatting, the time loop, the transposes that make
 * samples rows, the final delay states) must be genFunction's fixed ones, and each module function
 * must have the body genFunction writes. So the cell, MatrixOnly, row and column forms give one
 * net, and a hand edit (log10 before the net, 10.^ after it) is refused with its line. Dynamic
 * (NARX/delay) networks are refused by name.
 *
 * A layer may add several weight terms: cascadeforwardnet (and feedforwardnet with extra
 * connections) feeds the input and earlier layers into later ones, IWK_1*xp1 and LWK_J*aJ (J < K).
 * Such a layer becomes the concatenation of its sources and a dense layer on it whose weights are
 * the file's side by side (see build); a chain stays a chain.
 *
 * MATLAB's removeconstantrows settings of an input hold `keep` and may hold `remove`; without
 * `remove` the raw input length comes from the header comment genFunction writes ("x1 = 13xQ
 * matrix, input #1", or Qx13) or an `xrows` field. Indices in the file are 1-based and become 0-based.
 *
 * Numbers follow MATLAB's literal syntax: [a b; c d], commas or blanks between columns, semicolons
 * or newlines between rows, "..." continuations, % comments, a trailing ' transposes; exponents
 * with e, E, d or D; any number of digits (strtod rounds correctly). Inf and NaN are refused. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
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
    int used; /* read by the net: a constant nothing reads is not genFunction's */
} mconst;

typedef struct {
    nnd_proc_type type;
    size_t step; /* the N of x1_stepN / y1_stepN */
    size_t line;
} mstep;

/* A layer aK = f(bK + sum of W*SRC): its sources, 0 for the (processed) input (IWK_1) and J for
 * layer aJ (LWK_J, J < K), in increasing order whatever the order the file adds them in. */
typedef struct {
    int act;
    int has_bias;
    size_t line;
    size_t n_src;
    size_t *src;
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
    /* the recogniser */
    char *sq, *tmp;         /* the statement squeezed (blanks removed); a scratch copy of it */
    int form;               /* F_CELL or F_MATRIX, from the function line */
    int sim;                /* the simulation has begun: no more constants */
    char pvar[8];           /* "Xp1" or "xp1": the processed input */
    int n_tin, n_tout;      /* transposes of the input and the output (samples as rows) */
    size_t out_from, out_line; /* the layer the output is computed from; where */
    size_t af_rows, af_line;   /* Af = cell(N,0): N is the number of layers */
    struct {
        char name[NAME_MAX_LEN];
        int style;
        size_t line;
    } calls[64];
    size_t n_calls;
    char fname[NAME_MAX_LEN]; /* the module function being read, its line, its candidates */
    size_t fline;
    uint64_t alive;
    size_t fpos[64];
    int fend[64];
    struct {
        char name[NAME_MAX_LEN];
        size_t line, func;
    } defs[64];
    size_t n_defs;
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
        if (strcmp(c->c[i].name, name) == 0) {
            c->c[i].used = 1;
            return &c->c[i];
        }
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
    k->used = 0;
    nnd_status s = parse_literal(c, name, rhs, k);
    if (s)
        return s;
    strcpy(k->name, name);
    k->line = c->stmt_line;
    c->nc++;
    return NND_OK;
}

/* ---------------------------------------------------------------- names of settings */

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

/* ---------------------------------------------------------------- the recogniser
 * Every statement of the file must be one genFunction writes. The simulation's data flow (input
 * steps, layers, output steps) is parsed exactly; the rest of the main function (argument
 * formatting, the time loop, the final delay states) must be one of the fixed statements below;
 * each module function must have one of the bodies genFunction writes. Statements are compared
 * with their blanks removed ("squeezed"). Anything else -- log10(x) before the net, 10.^y after
 * it, any arithmetic on the input or the output -- changes the function the file computes, so the
 * file is refused with the line and the statement. */

enum { F_ANY = 0, F_CELL = 1, F_MATRIX = 2 };            /* [Y,Xf,Af] = f(X,~,~) or [y1] = f(x1) */
enum { STYLE_TF = 0, STYLE_STRUCT = 1, STYLE_FLAT = 2 }; /* x1_step1.gain or x1_step1_gain      */

/* s with blanks removed (strings kept as they are) into out (strlen(s) + 1 bytes). A quote is a
 * transpose after what can be transposed (as scan decides), else it opens a string. */
static void squeeze(const char *s, char *out)
{
    char prev = 0;
    while (*s) {
        char ch = *s++;
        if (is_blank(ch))
            continue;
        if (ch == '"' || (ch == '\'' && !(is_alnum(prev) || prev == ')' || prev == ']' || prev == '}' ||
                                          prev == '\'' || prev == '.'))) {
            *out++ = ch;
            while (*s) {
                char d = *s++;
                *out++ = d;
                if (d == ch) {
                    if (*s == ch) {
                        *out++ = *s++;
                        continue;
                    }
                    break;
                }
            }
            prev = ch;
            continue;
        }
        *out++ = ch;
        prev = ch;
    }
    *out = '\0';
}

/* The statements of the main function that are not data flow, by the form they belong to. */
static const struct {
    const char *text;
    int form;
} fixed_stmts[] = {
    {"isCellX=iscell(X)", F_CELL}, {"if~isCellX", F_CELL},      {"X={X}", F_CELL},
    {"end", F_ANY},                {"TS=size(X,2)", F_CELL},    {"if~isempty(X)", F_CELL},
    {"Q=size(X{1},1)", F_CELL},    {"Q=size(X{1},2)", F_CELL},  {"else", F_CELL},
    {"Q=0", F_CELL},               {"Y=cell(1,TS)", F_CELL},    {"forts=1:TS", F_CELL},
    {"Xf=cell(1,0)", F_CELL},      {"Y=cell2mat(Y)", F_CELL},   {"Q=size(x1,1)", F_MATRIX},
    {"Q=size(x1,2)", F_MATRIX},
};

/* The module functions genFunction writes, as their squeezed statements (the function line
 * first, '\n' between; a closing "end" is optional). style: the call style a processing function
 * serves. needs: the other module functions its body calls. */
typedef struct {
    const char *name;
    int style;
    const char *text;
    const char *needs[2];
} mfunc;

#define TF(name, body)                                                                                       \
    {name, STYLE_TF, "functiona=" name "(n,~)\n" body, {NULL, NULL}},                                        \
    {                                                                                                        \
        name, STYLE_TF, "functiona=" name "(n)\n" body, { NULL, NULL }                                       \
    }
#define NAN_KEPT "\na(isnan(n))=nan"
static const mfunc module_funcs[] = {
    {"mapminmax_apply", STYLE_STRUCT,
     "functiony=mapminmax_apply(x,settings)\ny=bsxfun(@minus,x,settings.xoffset)\ny=bsxfun(@times,y,settings.gain)\n"
     "y=bsxfun(@plus,y,settings.ymin)", {NULL, NULL}},
    {"mapminmax_apply", STYLE_FLAT,
     "functiony=mapminmax_apply(x,settings_gain,settings_xoffset,settings_ymin)\ny=bsxfun(@minus,x,settings_xoffset)\n"
     "y=bsxfun(@times,y,settings_gain)\ny=bsxfun(@plus,y,settings_ymin)", {NULL, NULL}},
    {"mapminmax_reverse", STYLE_STRUCT,
     "functionx=mapminmax_reverse(y,settings)\nx=bsxfun(@minus,y,settings.ymin)\nx=bsxfun(@rdivide,x,settings.gain)\n"
     "x=bsxfun(@plus,x,settings.xoffset)", {NULL, NULL}},
    {"mapminmax_reverse", STYLE_FLAT,
     "functionx=mapminmax_reverse(y,settings_gain,settings_xoffset,settings_ymin)\nx=bsxfun(@minus,y,settings_ymin)\n"
     "x=bsxfun(@rdivide,x,settings_gain)\nx=bsxfun(@plus,x,settings_xoffset)", {NULL, NULL}},
    {"mapstd_apply", STYLE_STRUCT,
     "functiony=mapstd_apply(x,settings)\ny=bsxfun(@minus,x,settings.xoffset)\ny=bsxfun(@times,y,settings.gain)\n"
     "y=bsxfun(@plus,y,settings.yoffset)", {NULL, NULL}},
    {"mapstd_apply", STYLE_FLAT,
     "functiony=mapstd_apply(x,settings_gain,settings_xoffset,settings_yoffset)\ny=bsxfun(@minus,x,settings_xoffset)\n"
     "y=bsxfun(@times,y,settings_gain)\ny=bsxfun(@plus,y,settings_yoffset)", {NULL, NULL}},
    {"mapstd_reverse", STYLE_STRUCT,
     "functionx=mapstd_reverse(y,settings)\nx=bsxfun(@minus,y,settings.yoffset)\nx=bsxfun(@rdivide,x,settings.gain)\n"
     "x=bsxfun(@plus,x,settings.xoffset)", {NULL, NULL}},
    {"mapstd_reverse", STYLE_FLAT,
     "functionx=mapstd_reverse(y,settings_gain,settings_xoffset,settings_yoffset)\nx=bsxfun(@minus,y,settings_yoffset)\n"
     "x=bsxfun(@rdivide,x,settings_gain)\nx=bsxfun(@plus,x,settings_xoffset)", {NULL, NULL}},
    {"removeconstantrows_apply", STYLE_STRUCT, "functiony=removeconstantrows_apply(x,settings)\ny=x(settings.keep,:)",
     {NULL, NULL}},
    {"removeconstantrows_apply", STYLE_FLAT, "functiony=removeconstantrows_apply(x,settings_keep)\ny=x(settings_keep,:)",
     {NULL, NULL}},
    {"removeconstantrows_reverse", STYLE_STRUCT,
     "functionx=removeconstantrows_reverse(y,settings)\nQ=size(y,2)\nx=nan(settings.xrows,Q,'like',y)\n"
     "x(settings.keep,:)=y\nx(settings.remove,:)=repmat(settings.constants,1,Q)", {NULL, NULL}},
    {"removeconstantrows_reverse", STYLE_FLAT,
     "functionx=removeconstantrows_reverse(y,settings_xrows,settings_keep,settings_remove,settings_constants)\n"
     "Q=size(y,2)\nx=nan(settings_xrows,Q,'like',y)\nx(settings_keep,:)=y\n"
     "x(settings_remove,:)=repmat(settings_constants,1,Q)", {NULL, NULL}},
    TF("tansig_apply", "a=2./(1+exp(-2*n))-1"),
    TF("logsig_apply", "a=1./(1+exp(-n))"),
    TF("radbas_apply", "a=exp(-(n.*n))"),
    TF("elliotsig_apply", "a=n./(1+abs(n))"),
    TF("poslin_apply", "a=max(0,n)" NAN_KEPT),
    TF("satlin_apply", "a=max(0,min(1,n))" NAN_KEPT),
    TF("satlins_apply", "a=max(-1,min(1,n))" NAN_KEPT),
    TF("tribas_apply", "a=max(0,1-abs(n))" NAN_KEPT),
    TF("hardlim_apply", "a=double(n>=0)" NAN_KEPT),
    TF("hardlims_apply", "a=2*(n>=0)-1" NAN_KEPT),
    {"softmax_apply", STYLE_TF,
     "functiona=softmax_apply(n)\nnmax=max(n,[],1)\nn=bsxfun(@minus,n,nmax)\nnumer=exp(n)\ndenom=sum(numer,1)\n"
     "denom(denom==0)=1\na=bsxfun(@rdivide,numer,denom)", {NULL, NULL}},
    {"softmax_apply", STYLE_TF,
     "functiona=softmax_apply(n,~)\nifisa(n,'gpuArray')\na=iSoftmaxApplyGPU(n)\nelse\na=iSoftmaxApplyCPU(n)\nend",
     {"iSoftmaxApplyCPU", "iSoftmaxApplyGPU"}},
    {"iSoftmaxApplyCPU", STYLE_TF,
     "functiona=iSoftmaxApplyCPU(n)\nnmax=max(n,[],1)\nn=bsxfun(@minus,n,nmax)\nnumerator=exp(n)\n"
     "denominator=sum(numerator,1)\ndenominator(denominator==0)=1\na=bsxfun(@rdivide,numerator,denominator)",
     {NULL, NULL}},
    {"iSoftmaxApplyGPU", STYLE_TF,
     "functiona=iSoftmaxApplyGPU(n)\nnmax=max(n,[],1)\nnumerator=arrayfun(@iSoftmaxApplyGPUHelper1,n,nmax)\n"
     "denominator=sum(numerator,1)\na=arrayfun(@iSoftmaxApplyGPUHelper2,numerator,denominator)",
     {"iSoftmaxApplyGPUHelper1", "iSoftmaxApplyGPUHelper2"}},
    {"iSoftmaxApplyGPUHelper1", STYLE_TF, "functionnumerator=iSoftmaxApplyGPUHelper1(n,nmax)\nnumerator=exp(n-nmax)",
     {NULL, NULL}},
    {"iSoftmaxApplyGPUHelper2", STYLE_TF,
     "functiona=iSoftmaxApplyGPUHelper2(numerator,denominator)\nif(denominator==0)\na=numerator\nelse\n"
     "a=numerator./denominator\nend", {NULL, NULL}},
};
#undef TF
#undef NAN_KEPT
#define N_MODULE_FUNCS (sizeof module_funcs / sizeof module_funcs[0])

/* MATLAB's transfer functions with a body above, and their activation codes. */
static const struct {
    const char *name;
    int act;
} transfer_fns[] = {
    {"tansig", NND_ACT_TANSIG},   {"logsig", NND_ACT_LOGSIG},   {"radbas", NND_ACT_RADBAS},
    {"elliotsig", NND_ACT_ELLIOTSIG}, {"poslin", NND_ACT_POSLIN}, {"satlin", NND_ACT_SATLIN},
    {"satlins", NND_ACT_SATLINS}, {"tribas", NND_ACT_TRIBAS},   {"hardlim", NND_ACT_HARDLIM},
    {"hardlims", NND_ACT_HARDLIMS}, {"softmax", NND_ACT_SOFTMAX},
};
/* MATLAB's other transfer functions: well-formed, not implemented. */
static const char *const other_transfer_fns[] = {"compet", "netinv", "radbasn", "elliot2sig", "purelin", NULL};

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (!strcmp(*list, s))
            return 1;
    return 0;
}

/* A module function the simulation calls, or one the file defines. */
static nnd_status note_call(mctx *c, const char *name, int style)
{
    for (size_t i = 0; i < c->n_calls; i++)
        if (!strcmp(c->calls[i].name, name)) {
            if (c->calls[i].style != style)
                return bad(NND_EFORMAT, c, c->stmt_line, "%s is called with both struct and flat settings", name);
            return NND_OK;
        }
    if (c->n_calls == sizeof c->calls / sizeof c->calls[0])
        return bad(NND_EUNSUPPORTED, c, c->stmt_line, "more than %zu module functions are called", c->n_calls);
    snprintf(c->calls[c->n_calls].name, NAME_MAX_LEN, "%s", name);
    c->calls[c->n_calls].style = style;
    c->calls[c->n_calls].line = c->stmt_line;
    c->n_calls++;
    return NND_OK;
}

/* ---------------------------------------------------------------- dynamic networks */

/* The identifier of a delay state or a time-series argument in s, or NULL: NARX and other dynamic
 * networks use Xi/Ai (initial delay states), Xd1/Ad1 (delay buffers), tapdelay1, xdts/adts
 * (rotating positions), nargin checks, and xi1/ai1/xf1/af1 in the MatrixOnly form. */
static const char *dynamic_ident(const char *s, char out[NAME_MAX_LEN])
{
    static const char *const names[] = {"Xi", "Ai", "nargin", "xdts", "adts", "finalxts", "finalats",
                                        "xits", "ats", "xts", NULL};
    static const char *const prefixes[] = {"tapdelay", "Xd", "Ad", "xi", "ai", "xf", "af", NULL};
    const char *p = s;
    while (*p) {
        if (*p == '\'' || *p == '"') { /* skip strings (transposes are harmless here) */
            p++;
            continue;
        }
        if (!is_alpha(*p) || (p > s && (is_alnum(p[-1]) || p[-1] == '.'))) {
            p++;
            continue;
        }
        const char *b = p;
        while (is_alnum(*p))
            p++;
        size_t len = (size_t)(p - b);
        if (len >= NAME_MAX_LEN)
            continue;
        memcpy(out, b, len);
        out[len] = '\0';
        if (in_list(names, out))
            return out;
        for (const char *const *q2 = prefixes; *q2; q2++) {
            size_t pl2 = strlen(*q2);
            if (len > pl2 && !memcmp(out, *q2, pl2) && is_digit(out[pl2])) {
                const char *t = out + pl2;
                while (is_digit(*t))
                    t++;
                if (!*t)
                    return out;
            }
        }
    }
    return NULL;
}

static nnd_status dynamic_refused(const mctx *c, const char *what)
{
    return bad(NND_EUNSUPPORTED, c, c->stmt_line,
               "dynamic (NARX/delay) networks are not supported: '%s' uses %s (delay states or time series); "
               "only static feed-forward networks (fitnet, patternnet, feedforwardnet, cascadeforwardnet) are read",
               q(c->buf).s, what);
}

/* ---------------------------------------------------------------- the function line */

static int is_ident(const char *s, const char *e)
{
    if (s == e || !is_alpha(*s))
        return 0;
    for (; s < e; s++)
        if (!is_alnum(*s))
            return 0;
    return 1;
}

static nnd_status function_line(mctx *c)
{
    const char *s = c->sq, *name, *open;
    char id[NAME_MAX_LEN];
    int form = F_ANY;
    if (starts(s, "function[Y,Xf,Af]=")) {
        form = F_CELL;
        name = s + strlen("function[Y,Xf,Af]=");
    } else if (starts(s, "function[y1]=")) {
        form = F_MATRIX;
        name = s + strlen("function[y1]=");
    } else {
        name = NULL;
    }
    open = name ? strchr(name, '(') : NULL;
    if (open && is_ident(name, open) &&
        !strcmp(open, form == F_CELL ? "(X,~,~)" : "(x1)")) {
        c->form = form;
        return NND_OK;
    }
    const char *args = strchr(c->buf, '(');
    if (args && dynamic_ident(args, id))
        return dynamic_refused(c, id);
    if (strstr(s, "x2") || strstr(s, "y2"))
        return bad(NND_EUNSUPPORTED, c, c->stmt_line, "'%s': only networks with one input and one output are supported",
                   q(c->buf).s);
    return bad(NND_EFORMAT, c, c->stmt_line,
               "the function line '%s' is not genFunction's ('function [Y,Xf,Af] = NAME(X,~,~)' or "
               "'function [y1] = NAME(x1)'): a file edited by hand is not read", q(c->buf).s);
}

/* ---------------------------------------------------------------- data flow */

/* Split a squeezed call "NAME(a,b,...)" that spans all of s, in place: *name and up to max
 * arguments (split at top-level commas). 0 when s is not one call. */
static int split_call(char *s, char **name, char **args, size_t max, size_t *nargs)
{
    char *open = strchr(s, '(');
    size_t len = strlen(s);
    if (!open || !is_ident(s, open) || len < 2 || s[len - 1] != ')')
        return 0;
    int depth = 0;
    for (char *t = open; *t; t++) {
        if (*t == '(' || *t == '[' || *t == '{')
            depth++;
        else if (*t == ')' || *t == ']' || *t == '}')
            if (--depth == 0 && t != s + len - 1)
                return 0; /* the first call closes before the end: f(x)+g(y) */
    }
    *open = '\0';
    s[len - 1] = '\0';
    *name = s;
    *nargs = 0;
    char *a = open + 1;
    depth = 0;
    for (char *t = a;; t++) {
        if (*t == '(' || *t == '[' || *t == '{')
            depth++;
        else if (*t == ')' || *t == ']' || *t == '}')
            depth--;
        else if ((*t == ',' && depth == 0) || *t == '\0') {
            int last = *t == '\0';
            if (*nargs == max)
                return 0;
            *t = '\0';
            args[(*nargs)++] = a;
            a = t + 1;
            if (last)
                break;
        }
    }
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && !strcmp(s + n - k, suffix);
}

static int proc_type(const char *base, nnd_proc_type *t)
{
    if (!strcmp(base, "mapminmax"))
        *t = NND_PROC_MAPMINMAX;
    else if (!strcmp(base, "mapstd"))
        *t = NND_PROC_MAPSTD;
    else if (!strcmp(base, "removeconstantrows"))
        *t = NND_PROC_REMOVECONSTANTROWS;
    else
        return 0;
    return 1;
}

/* The settings arguments of a processing call: "x1_stepN" (struct style) or the fields one by one
 * in the order of the flat module function (gain, xoffset, ymin/yoffset; keep; for an output
 * removeconstantrows xrows, keep, remove, constants). *step: the N; *style set. 0 if they are neither. */
static int settings_args(char io, nnd_proc_type type, int output, char **args, size_t n, size_t *step, int *style)
{
    static const char *const map_min[] = {"gain", "xoffset", "ymin", NULL};
    static const char *const map_std[] = {"gain", "xoffset", "yoffset", NULL};
    static const char *const rcr_in[] = {"keep", NULL};
    static const char *const rcr_out[] = {"xrows", "keep", "remove", "constants", NULL};
    char want[NAME_MAX_LEN];
    const char *p = args[0];
    size_t input;
    if (n == 0 || p[0] != io)
        return 0;
    p++;
    if ((input = read_index(&p)) != 1 || !starts(p, "_step"))
        return 0;
    p += 5;
    if (!(*step = read_index(&p)))
        return 0;
    if (n == 1 && *p == '\0') {
        *style = STYLE_STRUCT;
        return 1;
    }
    const char *const *fields = type == NND_PROC_MAPMINMAX ? map_min : type == NND_PROC_MAPSTD ? map_std
                                : output                   ? rcr_out : rcr_in;
    size_t i = 0;
    for (; fields[i]; i++) {
        snprintf(want, sizeof want, "%c1_step%zu_%s", io, *step, fields[i]);
        if (i >= n || strcmp(args[i], want))
            return 0;
    }
    *style = STYLE_FLAT;
    return i == n;
}

/* Input step: Xp1 = P_apply(SRC, settings), SRC the input for the first step, Xp1 after. */
static nnd_status input_step(mctx *c, const char *lhs, char *rhs)
{
    char *name, *args[8];
    size_t nargs, step;
    int style;
    nnd_proc_type type;
    if (!split_call(rhs, &name, args, 8, &nargs) || nargs < 2 || !ends_with(name, "_apply"))
        return bad(NND_EFORMAT, c, c->stmt_line,
                   "'%s' is not an input processing call (Xp1 = mapminmax_apply(...)): a file edited by hand is "
                   "not read", q(c->buf).s);
    name[strlen(name) - 6] = '\0';
    if (!proc_type(name, &type)) {
        for (size_t i = 0; i < sizeof transfer_fns / sizeof transfer_fns[0]; i++)
            if (!strcmp(transfer_fns[i].name, name))
                return bad(NND_EFORMAT, c, c->stmt_line,
                           "transfer function %s_apply is not assigned to a layer output (a1, a2, ...)", q(name).s);
        return bad(NND_EUNSUPPORTED, c, c->stmt_line,
                   "processing function '%s' is not supported (only mapminmax, mapstd and removeconstantrows)",
                   q(name).s);
    }
    if (nargs >= 2 && args[1][0] == 'x' && is_digit(args[1][1]) && args[1][1] != '1')
        return bad(NND_EUNSUPPORTED, c, c->stmt_line, "'%s': only networks with one input and one output are supported",
                   q(c->buf).s);
    if (!settings_args('x', type, 0, args + 1, nargs - 1, &step, &style))
        return bad(NND_EFORMAT, c, c->stmt_line, "%s_apply(...): the settings arguments are not x1_stepN's", proc_name(type));
    if (c->nl)
        return bad(NND_EFORMAT, c, c->stmt_line, "input step x1_step%zu is applied after layer 1", step);
    if (c->n_in_steps == 0 ? strcmp(args[0], c->form == F_CELL ? "X{1,ts}" : "x1") : strcmp(args[0], c->pvar))
        return bad(NND_EFORMAT, c, c->stmt_line, "input step x1_step%zu is applied to '%s', not to %s", step,
                   q(args[0]).s, c->n_in_steps ? c->pvar : "the input");
    if (c->n_in_steps && strcmp(lhs, c->pvar))
        return bad(NND_EFORMAT, c, c->stmt_line, "input step x1_step%zu is assigned to %s, the one before to %s", step,
                   lhs, c->pvar);
    snprintf(c->pvar, sizeof c->pvar, "%s", lhs);
    if (c->n_in_steps == sizeof c->in / sizeof c->in[0])
        return bad(NND_EUNSUPPORTED, c, c->stmt_line, "more than %zu processing steps", c->n_in_steps);
    if (step != c->n_in_steps + 1)
        return bad(NND_EFORMAT, c, c->stmt_line, "input step x1_step%zu is applied %s; steps apply in order from x1_step1",
                   step, c->n_in_steps ? "out of order" : "first");
    c->in[c->n_in_steps++] = (mstep){type, step, c->stmt_line};
    char fn[NAME_MAX_LEN];
    snprintf(fn, sizeof fn, "%s_apply", proc_name(type));
    return note_call(c, fn, style);
}

/* Output: Y{1,ts} = aL (no output steps) or Y{1,ts} = P_reverse(SRC, settings), SRC = aL first,
 * then Y{1,ts} itself, the last step reversed first. */
static nnd_status output_stmt(mctx *c, char *rhs)
{
    const char *out = c->form == F_CELL ? "Y{1,ts}" : "y1";
    char *name, *args[8];
    size_t nargs, step, k;
    int style;
    nnd_proc_type type;
    const char *t = rhs + 1;
    if (rhs[0] == 'a' && (k = read_index(&t)) && !*t) {
        if (c->out_from)
            return bad(NND_EFORMAT, c, c->stmt_line, "the output is assigned twice");
        c->out_from = k;
        c->out_line = c->stmt_line;
        return NND_OK;
    }
    if (!split_call(rhs, &name, args, 8, &nargs) || nargs < 2 || !ends_with(name, "_reverse"))
        return bad(NND_EFORMAT, c, c->stmt_line,
                   "'%s' is not genFunction's output (%s = aL or %s = mapminmax_reverse(...)): a file edited by hand "
                   "is not read", q(c->buf).s, out, out);
    name[strlen(name) - 8] = '\0';
    if (!proc_type(name, &type))
        return bad(NND_EUNSUPPORTED, c, c->stmt_line,
                   "processing function '%s' is not supported (only mapminmax, mapstd and removeconstantrows)",
                   q(name).s);
    if (!settings_args('y', type, 1, args + 1, nargs - 1, &step, &style))
        return bad(NND_EFORMAT, c, c->stmt_line, "%s_reverse(...): the settings arguments are not y1_stepN's",
                   proc_name(type));
    if (!c->out_from) {
        t = args[0] + 1;
        if (args[0][0] != 'a' || !(k = read_index(&t)) || *t)
            return bad(NND_EFORMAT, c, c->stmt_line, "output step y1_step%zu is applied to '%s', not to a layer output",
                       step, q(args[0]).s);
        c->out_from = k;
        c->out_line = c->stmt_line;
    } else if (strcmp(args[0], out) || !c->n_out_steps) {
        return bad(NND_EFORMAT, c, c->stmt_line, "output step y1_step%zu is applied to '%s', not to %s", step,
                   q(args[0]).s, out);
    }
    if (c->n_out_steps == sizeof c->out / sizeof c->out[0])
        return bad(NND_EUNSUPPORTED, c, c->stmt_line, "more than %zu processing steps", c->n_out_steps);
    c->out[c->n_out_steps++] = (mstep){type, step, c->stmt_line};
    char fn[NAME_MAX_LEN];
    snprintf(fn, sizeof fn, "%s_reverse", proc_name(type));
    return note_call(c, fn, style);
}

/* Split a squeezed sum at its top-level '+' signs, in place: up to max terms into terms[]. 0 when
 * there are more, or a term is empty ("a+" or "++"). */
static int split_sum(char *s, char **terms, size_t max, size_t *n)
{
    int depth = 0;
    *n = 0;
    for (char *t = s, *a = s;; t++) {
        if (*t == '(' || *t == '[' || *t == '{')
            depth++;
        else if (*t == ')' || *t == ']' || *t == '}')
            depth--;
        else if ((*t == '+' && depth == 0) || *t == '\0') {
            int last = *t == '\0';
            if (*n == max || t == a)
                return 0;
            *t = '\0';
            terms[(*n)++] = a;
            a = t + 1;
            if (last)
                return 1;
        }
    }
}

/* aK = [F_apply(] sum of terms [)], the terms added in any order: the bias repmat(bK,1,Q) (at most
 * once) and weight terms W*SRC, at least one: IWK_1 times the (processed) input, and LWK_J times aJ
 * for an earlier layer J < K. A plain feed-forward layer has IW1_1 (K = 1) or LWK_(K-1) alone; a
 * cascadeforwardnet layer (or feedforwardnet with extra connections) adds the input and earlier
 * layers (genFunction writes repmat(b3,1,Q) + IW3_1*xp1 + LW3_1*a1 + LW3_2*a2). Any other term -- a
 * delay, a layer feeding itself or a later layer, a second input, another variable -- is refused
 * naming the statement. */
static nnd_status layer_stmt(mctx *c, size_t k, char *rhs)
{
    int act = NND_ACT_PURELIN, has_bias = 0;
    char *z = rhs, *name, *args[2];
    size_t nargs;
    char tmp[NAME_MAX_LEN];
    if (k != c->nl + 1)
        return bad(NND_EFORMAT, c, c->stmt_line, "layer a%zu is computed %s (the layers must be computed in order)",
                   k, k <= c->nl ? "twice" : c->nl ? "after a missing layer" : "before a1");
    if (c->out_from)
        return bad(NND_EFORMAT, c, c->stmt_line, "layer %zu is computed after the output", k);
    const char *paren = strchr(rhs, '('), *star = strchr(rhs, '*');
    if (!strncmp(rhs, "repmat(", 7) || !paren || (star && star < paren)) {
        /* no transfer function call: purelin */
    } else if (split_call(rhs, &name, args, 2, &nargs) && nargs == 1 && ends_with(name, "_apply")) {
        name[strlen(name) - 6] = '\0';
        act = -1;
        for (size_t i = 0; i < sizeof transfer_fns / sizeof transfer_fns[0]; i++)
            if (!strcmp(transfer_fns[i].name, name))
                act = transfer_fns[i].act;
        if (act < 0) {
            nnd_proc_type pt;
            if (in_list(other_transfer_fns, name) || nnd_act_from_name(name) >= 0)
                return bad(NND_EUNSUPPORTED, c, c->stmt_line,
                           "layer %zu: transfer function '%s' is not supported from MATLAB code (supported: tansig, "
                           "logsig, purelin, poslin, satlin, satlins, radbas, tribas, elliotsig, hardlim, hardlims, "
                           "softmax)", k, q(name).s);
            if (proc_type(name, &pt))
                return bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: %s_apply is not a transfer function", k, name);
            return bad(NND_EFORMAT, c, c->stmt_line,
                       "layer %zu: '%s_apply' is not a transfer function genFunction writes: a file edited by hand "
                       "is not read", k, q(name).s);
        }
        snprintf(tmp, sizeof tmp, "%s_apply", name);
        nnd_status s = note_call(c, tmp, STYLE_TF);
        if (s)
            return s;
        z = args[0];
    } else {
        return bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: '%s' is not genFunction's layer: a file edited by hand is "
                   "not read", k, q(c->buf).s);
    }
    size_t max_terms = 1, n_terms = 0, n_src = 0;
    for (const char *t = z; *t; t++)
        max_terms += *t == '+';
    char **terms = nnd__malloc(max_terms, sizeof *terms);
    size_t *src = nnd__malloc(max_terms, sizeof *src);
    nnd_status s = NND_OK;
    if (!terms || !src) {
        s = bad(NND_ENOMEM, c, c->stmt_line, "out of memory");
        goto done;
    }
    if (!split_sum(z, terms, max_terms, &n_terms)) {
        s = bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: '%s' is not genFunction's layer (a term is empty or repeated): "
                "a file edited by hand is not read", k, q(c->buf).s);
        goto done;
    }
    const char *in = c->n_in_steps ? c->pvar : c->form == F_CELL ? "X{1,ts}" : "x1";
    snprintf(tmp, sizeof tmp, "repmat(b%zu,1,Q)", k);
    for (size_t m = 0; m < n_terms; m++) {
        char *term = terms[m], *mul = strchr(term, '*');
        if (!strcmp(term, tmp)) {
            if (has_bias++) {
                s = bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: adds its bias b%zu twice", k, k);
                goto done;
            }
            continue;
        }
        if (!mul) {
            s = bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: the term '%s' of '%s' is neither its bias "
                    "repmat(b%zu,1,Q) nor a weight times a source: a file edited by hand is not read", k, q(term).s,
                    q(c->buf).s, k);
            goto done;
        }
        *mul = '\0';
        const char *w = term, *from = mul + 1, *t = w + 2;
        size_t i = 0, j = 0;
        int iw = w[0] == 'I' && w[1] == 'W', lw = w[0] == 'L' && w[1] == 'W';
        if ((iw || lw) && (i = read_index(&t)) && *t == '_') {
            t++;
            j = read_index(&t);
        }
        if (!(iw || lw) || !i || !j || *t) {
            s = bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: '%s' in '%s' is not one of genFunction's weights (IW%zu_1, "
                    "LW%zu_J): a file edited by hand is not read", k, q(w).s, q(c->buf).s, k, k);
            goto done;
        }
        if (i != k) {
            s = bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: uses the weights %s of layer %zu", k, w, i);
            goto done;
        }
        if (iw && j != 1) {
            s = bad(NND_EUNSUPPORTED, c, c->stmt_line, "%s: only networks with one input are supported", w);
            goto done;
        }
        if (lw && j == k) {
            s = bad(NND_EUNSUPPORTED, c, c->stmt_line,
                    "dynamic (NARX/delay) networks are not supported: %s connects layer %zu to itself (a layer delay)",
                    w, k);
            goto done;
        }
        if (lw && j > k) {
            s = bad(NND_EUNSUPPORTED, c, c->stmt_line,
                    "dynamic (NARX/delay) networks are not supported: %s feeds layer %zu back into layer %zu", w, j, k);
            goto done;
        }
        char want[NAME_MAX_LEN];
        snprintf(want, sizeof want, "a%zu", j);
        if (strcmp(from, iw ? in : want)) {
            s = bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: %s multiplies '%s', not %s", k, w, q(from).s,
                    iw ? in : want);
            goto done;
        }
        size_t from_idx = iw ? 0 : j, at = n_src;
        while (at > 0 && src[at - 1] > from_idx)
            at--;
        if (at > 0 && src[at - 1] == from_idx) {
            s = bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: adds %s twice", k, w);
            goto done;
        }
        memmove(src + at + 1, src + at, (n_src - at) * sizeof *src);
        src[at] = from_idx;
        n_src++;
    }
    if (!n_src) {
        s = bad(NND_EFORMAT, c, c->stmt_line, "layer %zu: '%s' has no weight term (W*SRC): a file edited by hand is not "
                "read", k, q(c->buf).s);
        goto done;
    }
    if (c->nl == c->capl) {
        size_t cap = c->capl ? 2 * c->capl : 8;
        mlayer *g = nnd__malloc(cap, sizeof *g);
        if (!g) {
            s = bad(NND_ENOMEM, c, c->stmt_line, "out of memory");
            goto done;
        }
        if (c->nl)
            memcpy(g, c->layers, c->nl * sizeof *g);
        nnd__free(c->layers);
        c->layers = g;
        c->capl = cap;
    }
    c->layers[c->nl++] = (mlayer){act, has_bias, c->stmt_line, n_src, src};
    src = NULL;
done:
    nnd__free(terms);
    nnd__free(src);
    return s;
}

static nnd_status refused(const mctx *c)
{
    return bad(NND_EFORMAT, c, c->stmt_line,
               "'%s' is not part of the code genFunction writes: a file edited by hand is not read (the function it "
               "computes may differ from the network's)", q(c->buf).s);
}

/* One statement of the main function. */
static nnd_status main_stmt(mctx *c)
{
    char *lhs, *rhs, name[NAME_MAX_LEN], id[NAME_MAX_LEN];
    nnd_status s;
    for (size_t i = 0; i < sizeof fixed_stmts / sizeof fixed_stmts[0]; i++)
        if ((fixed_stmts[i].form == F_ANY || fixed_stmts[i].form == c->form) && !strcmp(c->sq, fixed_stmts[i].text))
            return NND_OK;
    if (c->form == F_CELL && starts(c->sq, "Af=cell(")) {
        const char *t = c->sq + 8;
        size_t n = read_index(&t);
        if (n && !strcmp(t, ",0)")) {
            c->af_rows = n;
            c->af_line = c->stmt_line;
            return NND_OK;
        }
    }
    const char *in = c->form == F_CELL ? "X{1,ts}=X{1,ts}'" : "x1=x1'";
    const char *out = c->form == F_CELL ? "Y{1,ts}=Y{1,ts}'" : "y1=y1'";
    if (!strcmp(c->sq, in)) {
        if (c->n_in_steps || c->nl || c->n_tin++)
            return refused(c);
        c->sim = 1;
        return NND_OK;
    }
    if (!strcmp(c->sq, out)) {
        if (!c->out_from || c->n_tout++)
            return refused(c);
        return NND_OK;
    }
    /* constants: NAME = literal, all before the simulation */
    strcpy(c->tmp, c->buf);
    if (split_assign(c->tmp, &lhs, &rhs) && const_name(lhs, name)) {
        if (c->sim)
            return bad(NND_EFORMAT, c, c->stmt_line, "%s is assigned in the simulation, after the network's constants",
                       name);
        return add_const(c, name, rhs);
    }
    const char *dyn = dynamic_ident(c->buf, id);
    if (dyn)
        return dynamic_refused(c, dyn);
    char *eq = strchr(c->sq, '=');
    if (!eq || eq == c->sq || eq[1] == '=')
        return refused(c);
    *eq = '\0';
    lhs = c->sq;
    rhs = eq + 1;
    c->sim = 1;
    const char *t = lhs + 1;
    size_t k;
    if (lhs[0] == 'a' && (k = read_index(&t)) && !*t)
        s = layer_stmt(c, k, rhs);
    else if (!strcmp(lhs, "Xp1") || !strcmp(lhs, "xp1"))
        s = input_step(c, lhs, rhs);
    else if (!strcmp(lhs, c->form == F_CELL ? "Y{1,ts}" : "y1"))
        s = output_stmt(c, rhs);
    else
        s = refused(c);
    return s;
}

/* The end of the main function: the network is complete. */
static nnd_status main_end(mctx *c)
{
    if (!c->nl)
        return bad(NND_EFORMAT, c, 0, "no layer is computed (no 'a1 = ...' statement): not a genFunction file?");
    if (!c->out_from)
        return bad(NND_EFORMAT, c, 0, "the output (%s) is never assigned", c->form == F_CELL ? "Y{1,ts}" : "y1");
    if (c->out_from != c->nl)
        return bad(NND_EFORMAT, c, c->out_line, "the output comes from layer %zu, not from the last layer %zu",
                   c->out_from, c->nl);
    if (c->af_rows && c->af_rows != c->nl)
        return bad(NND_EFORMAT, c, c->af_line, "Af has %zu rows, but the network has %zu layers", c->af_rows, c->nl);
    if (c->n_tin != c->n_tout)
        return bad(NND_EFORMAT, c, 0, "the input is transposed but not the output, or the other way round");
    return NND_OK;
}

/* ---------------------------------------------------------------- module functions */

/* A module function begins: the candidates are the table's functions with this function line. */
static nnd_status module_begin(mctx *c)
{
    const char *open = strchr(c->sq, '(');
    const char *eq = strchr(c->sq, '=');
    const char *nm = eq && (!open || eq < open) ? eq + 1 : c->sq + 8;
    size_t len = open ? (size_t)(open - nm) : strlen(nm);
    snprintf(c->fname, sizeof c->fname, "%.*s", (int)(len < NAME_MAX_LEN ? len : NAME_MAX_LEN - 1), nm);
    c->fline = c->stmt_line;
    c->alive = 0;
    int known = 0;
    for (size_t i = 0; i < N_MODULE_FUNCS; i++) {
        const char *text = module_funcs[i].text, *nl = strchr(text, '\n');
        known |= !strcmp(module_funcs[i].name, c->fname);
        if ((size_t)(nl - text) == strlen(c->sq) && !memcmp(text, c->sq, (size_t)(nl - text))) {
            c->alive |= (uint64_t)1 << i;
            c->fpos[i] = (size_t)(nl - text) + 1;
            c->fend[i] = 0;
        }
    }
    for (size_t i = 0; i < c->n_defs; i++)
        if (!strcmp(c->defs[i].name, c->fname))
            return bad(NND_EFORMAT, c, c->stmt_line, "function %s is defined twice (line %zu)", q(c->fname).s,
                       c->defs[i].line);
    if (!c->alive)
        return bad(NND_EFORMAT, c, c->stmt_line,
                   known ? "'%s' is not the function line genFunction writes for %s: a file edited by hand is not read"
                         : "'%s': %s is not a module function genFunction writes: a file edited by hand is not read",
                   q(c->buf).s, q(c->fname).s);
    return NND_OK;
}

static nnd_status module_stmt(mctx *c)
{
    uint64_t next = 0;
    for (size_t i = 0; i < N_MODULE_FUNCS; i++) {
        if (!(c->alive >> i & 1))
            continue;
        const char *text = module_funcs[i].text + c->fpos[i];
        if (*text) {
            const char *nl = strchr(text, '\n');
            size_t n = nl ? (size_t)(nl - text) : strlen(text);
            if (n == strlen(c->sq) && !memcmp(text, c->sq, n)) {
                c->fpos[i] += n + (nl ? 1 : 0);
                next |= (uint64_t)1 << i;
            }
        } else if (!c->fend[i] && !strcmp(c->sq, "end")) {
            c->fend[i] = 1;
            next |= (uint64_t)1 << i;
        }
    }
    if (!next)
        return bad(NND_EFORMAT, c, c->stmt_line,
                   "'%s' in %s is not what genFunction writes there: a file edited by hand is not read", q(c->buf).s,
                   q(c->fname).s);
    c->alive = next;
    return NND_OK;
}

/* The module function in progress ends (another begins, or the file ends). */
static nnd_status module_end(mctx *c)
{
    for (size_t i = 0; i < N_MODULE_FUNCS; i++)
        if ((c->alive >> i & 1) && !module_funcs[i].text[c->fpos[i]]) {
            if (c->n_defs == sizeof c->defs / sizeof c->defs[0])
                return bad(NND_EUNSUPPORTED, c, c->fline, "more than %zu module functions", c->n_defs);
            snprintf(c->defs[c->n_defs].name, NAME_MAX_LEN, "%s", c->fname);
            c->defs[c->n_defs].line = c->fline;
            c->defs[c->n_defs].func = i;
            c->n_defs++;
            return NND_OK;
        }
    return bad(NND_EFORMAT, c, c->fline, "function %s ends before its body is complete: a file edited by hand is not read",
               q(c->fname).s);
}

/* Every function called is defined, as the style of its call needs, with what it calls. */
static nnd_status check_calls(mctx *c)
{
    for (size_t i = 0; i < c->n_calls + c->n_defs; i++) {
        const char *nm;
        int style = -1;
        size_t line;
        if (i < c->n_calls) {
            nm = c->calls[i].name;
            style = c->calls[i].style;
            line = c->calls[i].line;
        } else {
            const mfunc *f = &module_funcs[c->defs[i - c->n_calls].func];
            line = c->defs[i - c->n_calls].line;
            for (int k = 0; k < 2; k++) {
                if (!f->needs[k])
                    continue;
                size_t d = 0;
                while (d < c->n_defs && strcmp(c->defs[d].name, f->needs[k]))
                    d++;
                if (d == c->n_defs)
                    return bad(NND_EFORMAT, c, line, "%s calls %s, which the file does not define", f->name, f->needs[k]);
            }
            continue;
        }
        size_t d = 0;
        while (d < c->n_defs && strcmp(c->defs[d].name, nm))
            d++;
        if (d == c->n_defs)
            return bad(NND_EFORMAT, c, line, "%s is called but the file does not define it", nm);
        if (module_funcs[c->defs[d].func].style != style)
            return bad(NND_EFORMAT, c, line, "%s is called with %s settings, but defined (line %zu) for %s ones", nm,
                       style == STYLE_STRUCT ? "struct" : "flat", c->defs[d].line,
                       style == STYLE_STRUCT ? "flat" : "struct");
    }
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

/* "input removeconstantrows x1_step1: rows 2, 5 of 6 dropped" (the output's: held constant). */
static nnd_status fold_rcr(nnd_net *net, const char *io, size_t step, size_t rows, size_t n_keep, const size_t *keep)
{
    char list[200] = "";
    size_t used = 0, shown = 0, i = 0;
    for (size_t r = 0; r < rows; r++) {
        if (i < n_keep && keep[i] == r) {
            i++;
            continue;
        }
        if (shown++ < 12 && used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%zu", shown > 1 ? ", " : "", r + 1);
        else if (shown == 13 && used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, ", ...");
    }
    if (!shown)
        return nnd__net_add_folded(net, "%s removeconstantrows %c1_step%zu: no row of %zu removed", io, io[0] == 'i' ? 'x' : 'y',
                                   step, rows);
    return nnd__net_add_folded(net, "%s removeconstantrows %c1_step%zu: row%s %s of %zu %s", io, io[0] == 'i' ? 'x' : 'y',
                               step, shown == 1 ? "" : "s", list, rows, io[0] == 'i' ? "dropped" : "held constant");
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
        /* genFunction may write the removed rows too: then keep and remove partition the rows */
        step_name(nm[1], 'x', st->step, "remove");
        const mconst *r = find_const(c, nm[1]);
        size_t *rem = NULL, n_rem = 0;
        if (r && (r->rows * r->cols != *n - n_keep || (s = get_indices(c, r, *n, &rem)))) {
            nnd__free(keep);
            return r->rows * r->cols != *n - n_keep
                       ? bad(NND_EFORMAT, c, r->line, "%s has %zu value%s, expected %zu (the rows not kept)", nm[1],
                             r->rows * r->cols, pl(r->rows * r->cols), *n - n_keep)
                       : s;
        }
        if (r)
            n_rem = r->rows * r->cols;
        for (size_t i = 0, j = 0; i < n_keep && j < n_rem;)
            if (keep[i] == rem[j]) {
                s = bad(NND_EFORMAT, c, r->line, "%s and %s both hold row %zu", nm[0], nm[1], keep[i] + 1);
                break;
            } else if (keep[i] < rem[j]) {
                i++;
            } else {
                j++;
            }
        nnd__free(rem);
        if (!s && (s = nnd_net_add_input_removeconstantrows(net, n_keep, keep)))
            s = builder_failed(s, c, what);
        if (!s)
            s = fold_rcr(net, "input", st->step, *n, n_keep, keep);
        nnd__free(keep);
        if (s)
            return s;
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
    if (s)
        return builder_failed(s, c, what);
    return nnd__net_add_folded(net, "input %s x1_step%zu: input step %zu", proc_name(st->type), st->step,
                               nnd_net_n_input_steps(net));
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
        else
            s = fold_rcr(net, "output", st->step, x_rows, n_keep, keep);
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
    if (s)
        return builder_failed(s, c, what);
    return nnd__net_add_folded(net, "output %s y1_step%zu: reversed after the last layer", proc_name(st->type),
                               st->step);
}

/* "layer a3 = IW3_1*xp1 + LW3_1*a1 + LW3_2*a2: the concatenation of xp1, a1, a2 (layer 4) and a
 * dense layer with [IW3_1 LW3_1 LW3_2] (layer 5)" for a layer l (0-based) that is not in the chain;
 * index[]: the net's layer of each MATLAB layer (index[j] for aj), its last entry just added. */
static nnd_status fold_sources(const mctx *c, nnd_net *net, size_t l, const size_t *index)
{
    const mlayer *L = &c->layers[l];
    const char *in = c->n_in_steps ? c->pvar : c->form == F_CELL ? "X{1,ts}" : "x1";
    char terms[200] = "", srcs[120] = "", ws[160] = "";
    size_t nt = 0, ns = 0, nw = 0;
    for (size_t m = 0; m < L->n_src; m++) {
        size_t j = L->src[m];
        char w[NAME_MAX_LEN], a[NAME_MAX_LEN];
        if (j == 0) {
            snprintf(w, sizeof w, "IW%zu_1", l + 1);
            snprintf(a, sizeof a, "%s", in);
        } else {
            snprintf(w, sizeof w, "LW%zu_%zu", l + 1, j);
            snprintf(a, sizeof a, "a%zu", j);
        }
        /* snprintf stops at the end of each buffer: a very long list is cut there */
        if (nt < sizeof terms)
            nt += (size_t)snprintf(terms + nt, sizeof terms - nt, "%s%s*%s", m ? " + " : "", w, a);
        if (ns < sizeof srcs)
            ns += (size_t)snprintf(srcs + ns, sizeof srcs - ns, "%s%s", m ? ", " : "", a);
        if (nw < sizeof ws)
            nw += (size_t)snprintf(ws + nw, sizeof ws - nw, "%s%s", m ? " " : "", w);
    }
    size_t dense = index[l + 1] + 1;
    if (L->n_src == 1)
        return nnd__net_add_folded(net, "layer a%zu = %s: a dense layer on %s (layer %zu)", l + 1, terms, srcs, dense);
    return nnd__net_add_folded(net, "layer a%zu = %s: the concatenation of %s (layer %zu) and a dense layer with "
                               "[%s] (layer %zu)", l + 1, terms, srcs, dense - 1, ws, dense);
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
        const mconst *keep1 = find_const(c, "x1_step1.keep"), *rem1 = find_const(c, "x1_step1.remove");
        if (keep1 && rem1 && !find_const(c, "x1_step1.xrows")) {
            n_in = keep1->rows * keep1->cols + rem1->rows * rem1->cols;
        } else if (find_const(c, "x1_step1.xrows")) {
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
    /* The layers. A layer with the previous layer (the processed input for the first) as its only
     * source is a dense layer of the chain; one with other sources is the concatenation of its
     * sources (input first, then the earlier layers in order) and a dense layer on it whose weights
     * are the file's IWK_1, LWK_J side by side in that order: [IWK_1 LWK_1 ... LWK_(K-1)]·[x; a1; ...]
     * is exactly IWK_1*x + LWK_1*a1 + ... . A layer nothing reads would not reach the output. */
    size_t *width = nnd__malloc(c->nl + 1, sizeof *width), *index = nnd__malloc(c->nl + 1, sizeof *index);
    size_t *srcs = nnd__malloc(c->nl + 1, sizeof *srcs);
    unsigned char *read = nnd__calloc(c->nl + 1, 1);
    double *Wcat = NULL;
    if (!width || !index || !srcs || !read) {
        s = bad(NND_ENOMEM, c, 0, "out of memory for %zu layers", c->nl);
        goto layers_done;
    }
    for (size_t l = 0; l < c->nl; l++)
        for (size_t m = 0; m < c->layers[l].n_src; m++)
            read[c->layers[l].src[m]] = 1;
    for (size_t l = 0; l + 1 < c->nl; l++)
        if (!read[l + 1]) {
            s = bad(NND_EUNSUPPORTED, c, c->layers[l].line,
                    "layer %zu's output a%zu feeds no later layer, so it does not reach the output: networks with "
                    "such a layer are not supported", l + 1, l + 1);
            goto layers_done;
        }
    width[0] = n;
    index[0] = NND_NET_INPUT;
    for (size_t l = 0; l < c->nl; l++) {
        const mlayer *L = &c->layers[l];
        char wn[NAME_MAX_LEN], bn[NAME_MAX_LEN], what[40];
        const mconst *b = NULL;
        size_t rows = 0, cols = 0;
        snprintf(bn, sizeof bn, "b%zu", l + 1);
        snprintf(what, sizeof what, "layer %zu", l + 1);
        /* pass 0: every weight is assigned and has the shape its source needs; pass 1: side by side */
        for (int pass = 0; pass < 2; pass++) {
            size_t at = 0;
            for (size_t m = 0; m < L->n_src; m++) {
                size_t j = L->src[m];
                const mconst *W;
                if (j == 0)
                    snprintf(wn, sizeof wn, "IW%zu_1", l + 1);
                else
                    snprintf(wn, sizeof wn, "LW%zu_%zu", l + 1, j);
                if (!(W = find_const(c, wn))) {
                    s = bad(NND_EFORMAT, c, L->line, "%s is used but never assigned", wn);
                    goto layers_done;
                }
                if (pass) {
                    for (size_t r = 0; r < rows; r++)
                        memcpy(Wcat + r * cols + at, W->v + r * W->cols, W->cols * sizeof *Wcat);
                    at += W->cols;
                    continue;
                }
                if (!W->rows) {
                    s = bad(NND_EFORMAT, c, W->line, "%s is empty", wn);
                    goto layers_done;
                }
                if (W->cols != width[j]) {
                    s = bad(NND_EFORMAT, c, W->line, "%s is %zu x %zu, but %s has %zu value%s", wn, W->rows, W->cols,
                            j ? "its source layer" : c->n_in_steps ? "the processed input" : "the input", width[j],
                            pl(width[j]));
                    goto layers_done;
                }
                if (m && W->rows != rows) {
                    s = bad(NND_EFORMAT, c, W->line, "%s has %zu row%s, but the layer's other weights have %zu", wn,
                            W->rows, pl(W->rows), rows);
                    goto layers_done;
                }
                rows = W->rows;
                if (!nnd__add(cols, W->cols, &cols)) {
                    s = bad(NND_EFORMAT, c, W->line, "layer %zu is too wide", l + 1);
                    goto layers_done;
                }
            }
            if (pass == 0 && L->n_src > 1) {
                size_t nw;
                if (!nnd__mul(rows, cols, &nw) || !(Wcat = nnd__malloc(nw, sizeof *Wcat))) {
                    s = bad(NND_ENOMEM, c, L->line, "out of memory for layer %zu's %zu x %zu weights", l + 1, rows,
                            cols);
                    goto layers_done;
                }
            }
            if (L->n_src == 1)
                break;
        }
        if (L->has_bias && (s = get_vec(c, bn, rows, "one per row of the weights", &b)))
            goto layers_done;
        if (L->n_src == 1) {
            const mconst *W = find_const(c, wn);
            size_t from = L->src[0] == l ? NND_NET_PREVIOUS : index[L->src[0]];
            s = nnd_net_add_dense_from(*net, from, rows, W->v, b ? b->v : NULL, L->act);
        } else {
            for (size_t m = 0; m < L->n_src; m++)
                srcs[m] = index[L->src[m]];
            s = nnd_net_add_concat(*net, L->n_src, srcs);
            if (!s)
                s = nnd_net_add_dense_from(*net, NND_NET_PREVIOUS, rows, Wcat, b ? b->v : NULL, L->act);
            nnd__free(Wcat);
            Wcat = NULL;
        }
        if (s) {
            s = builder_failed(s, c, what);
            goto layers_done;
        }
        width[l + 1] = rows;
        index[l + 1] = nnd_net_n_layers(*net) - 1;
        n = rows;
        if (L->n_src > 1 || L->src[0] != l) {
            s = fold_sources(c, *net, l, index);
            if (s)
                goto layers_done;
        }
    }
layers_done:
    nnd__free(width);
    nnd__free(index);
    nnd__free(srcs);
    nnd__free(read);
    nnd__free(Wcat);
    if (s)
        return s;
    size_t rows = 0;
    for (size_t i = c->n_out_steps; i-- > 0;) {
        if ((s = add_output_step(c, *net, &c->out[i], &rows)))
            return s;
    }
    if (c->n_out_steps && rows != n)
        return bad(NND_EFORMAT, c, 0, "output step y1_step%zu gives %zu row%s, but the last layer has %zu unit%s",
                   c->n_out_steps, rows, pl(rows), n, pl(n));
    for (size_t i = 0; i < c->nc; i++)
        if (!c->c[i].used)
            return bad(NND_EFORMAT, c, c->c[i].line,
                       "%s is assigned but the network does not use it: not the constants genFunction writes", c->c[i].name);
    if ((s = nnd_net_validate(*net)))
        return builder_failed(s, c, "the net");
    if (c->n_tin && (s = nnd__net_add_folded(*net, "samples as rows: the transposes of %s are layout, not arithmetic",
                                             c->form == F_CELL ? "X{1,ts} and Y{1,ts}" : "x1 and y1")))
        return s;
    return nnd__net_set_source(*net, "MATLAB genFunction code", c->name);
}

static nnd_status parse(mctx *c)
{
    int part = 0; /* 0: before the function line, 1: the main function, 2: the module functions */
    nnd_status s;
    for (;;) {
        int kind = scan(c);
        if (c->scan_error)
            return bad(NND_EFORMAT, c, c->stmt_line, "%s", c->scan_error);
        if (kind == ST_EOF)
            break;
        if (kind == ST_MARK_SIM || kind == ST_MARK_MODULE)
            continue;
        squeeze(c->buf, c->sq);
        if (is_function_kw(c->buf)) {
            if (part == 0)
                s = function_line(c);
            else if (part == 1)
                s = main_end(c);
            else
                s = module_end(c);
            if (s || (part > 0 && (s = module_begin(c))))
                return s;
            part = part ? 2 : 1;
            continue;
        }
        if (part == 0)
            return bad(NND_EFORMAT, c, c->stmt_line, "code before the 'function' line");
        if ((s = part == 1 ? main_stmt(c) : module_stmt(c)))
            return s;
    }
    if (part == 0)
        return bad(NND_EFORMAT, c, 0, "no 'function' line: not MATLAB code written by genFunction");
    if ((s = part == 1 ? main_end(c) : module_end(c)))
        return s;
    return check_calls(c);
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
    if (!nnd__add(len, 1, &cap) || !(c.buf = nnd__malloc(cap, 1)) || !(c.sq = nnd__malloc(cap, 1)) ||
        !(c.tmp = nnd__malloc(cap, 1))) {
        nnd__free(c.buf);
        nnd__free(c.sq);
        return bad(NND_ENOMEM, &c, 0, "out of memory for a %zu-byte file", len);
    }
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
    for (size_t i = 0; i < c.nl; i++)
        nnd__free(c.layers[i].src);
    nnd__free(c.layers);
    nnd__free(c.buf);
    nnd__free(c.sq);
    nnd__free(c.tmp);
    return s;
}
