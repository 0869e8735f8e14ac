/* Every mask's largest external contour, traced from its COCO runs: the same points, in the same
 * order, as cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE) then the first of the largest by
 * cv2.contourArea. backends/contour_trace.py builds this file at first use and explains why; the
 * OpenCV source each step follows is cited there. Plain C ABI on numpy buffers, no Python.h.
 *
 * Per mask: its runs are cut at column joins into segments (one column's rows top..bottom), the
 * segments of adjacent columns are joined into 8-connected components (union-find), and the outer
 * border of each component whose bounding box could hold the largest contour is followed from its
 * first pixel in row-major order, every pixel's neighbours read from the segments, or, along its
 * lower and upper edges, one column per step (walk_edge). Nothing here is proportional to the
 * mask's area. */

#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    TRACE_NO_MEMORY = -1,
    TRACE_BAD_TOGGLES = -2, /* a mask's toggles are negative or do not increase */
};

typedef struct {
    int32_t top, bottom; /* rows top..bottom (inclusive) of one column */
} Segment;

/* A segment made a root by join_components, and its column: its component's leftmost. */
typedef struct {
    int32_t segment, column;
} Root;

/* A component that may hold the largest contour: twice its area is at most bound (see
 * largest_contour); first_pixel as Scratch's. */
typedef struct {
    int64_t bound, first_pixel;
} Candidate;

/* Each column's segments lie between two sentinels, which stop the cursor walks in follow_border
 * without bounds checks: BELOW's bottom is under every row (-1 included), ABOVE's over every row
 * (frames are at most MAX_HEIGHT rows: the Python launcher checks), and neither covers a row. */
#define MAX_HEIGHT (1 << 30)
#define MAX_THREADS 64 /* a crew's helpers and the calling thread */
static const Segment BELOW = {-3, -3}, ABOVE = {MAX_HEIGHT + 3, MAX_HEIGHT + 3};

/* Scratch memory for one call, grown to the largest mask's needs and reused. */
typedef struct {
    Segment *segments;
    int32_t *parent;       /* union-find over segments; a root is its component's lowest index */
    int64_t *first_pixel;  /* per root: (top << 32) | column of its component's row-major first */
    int32_t *last_column;  /* per root: its component's rightmost column */
    int32_t *lowest;       /* per root: its component's bottom row */
    Root *roots;           /* the segments made roots, in index order, with their columns */
    Candidate *candidates; /* one per component */
    int64_t segment_room;
    int32_t *column_first; /* column c (from -1 to width) starts at segment column_first[c + 1] */
    int32_t *cursor;       /* per column (from -1), a segment near the last row asked about */
    int64_t column_room;
    int32_t *trace, *best; /* xy pairs: the contour being traced, the largest one so far */
    int64_t trace_room, best_room;
} Scratch;

/* Makes room for `needed` items (at least doubling), or returns 0 when out of memory. */
static int grow(void **buffer, int64_t *room, int64_t needed, size_t item) {
    if (needed <= *room) return 1;
    int64_t next = needed > 2 * *room ? needed : 2 * *room;
    void *grown = realloc(*buffer, (size_t)next * item);
    if (!grown) return 0;
    *buffer = grown;
    *room = next;
    return 1;
}

static int grow_segments(Scratch *s, int64_t needed) {
    int64_t a = s->segment_room, b = a, c = a, d = a, e = a, f = a, g = a;
    int ok = grow((void **)&s->segments, &a, needed, sizeof(Segment)) &&
             grow((void **)&s->parent, &b, needed, sizeof(int32_t)) &&
             grow((void **)&s->first_pixel, &c, needed, sizeof(int64_t)) &&
             grow((void **)&s->last_column, &d, needed, sizeof(int32_t)) &&
             grow((void **)&s->lowest, &e, needed, sizeof(int32_t)) &&
             grow((void **)&s->candidates, &f, needed, sizeof(Candidate)) &&
             grow((void **)&s->roots, &g, needed, sizeof(Root));
    if (ok) s->segment_room = a;
    return ok;
}

static int grow_columns(Scratch *s, int64_t needed) {
    int64_t a = s->column_room, b = a;
    int ok = grow((void **)&s->column_first, &a, needed, sizeof(int32_t)) &&
             grow((void **)&s->cursor, &b, needed, sizeof(int32_t));
    if (ok) s->column_room = a;
    return ok;
}

static int32_t find(int32_t *parent, int32_t i) {
    while (parent[i] != i) {
        parent[i] = parent[parent[i]]; /* path halving */
        i = parent[i];
    }
    return i;
}

/* find for a segment whose parent is its root nearly always (join_components gives each segment
 * its root at once): two loads and no writes then. */
static inline int32_t find_near(int32_t *parent, int32_t i) {
    int32_t up = parent[i];
    return parent[up] == up ? up : find(parent, i);
}

/* One mask's toggles -> segments, column by column, top to bottom, each column between its
 * sentinels, with empty columns -1 and width around them; returns the width (columns from the
 * first toggle's to the last's). A COCO run may go on from the bottom of one column into the
 * next: it is cut at each join. */
static int64_t cut_runs(const int32_t *toggles, int64_t count, int64_t height, Scratch *s) {
    int64_t first_column = toggles[0] / height;
    int64_t width = (toggles[count - 1] - 1) / height - first_column + 1;
    /* Each column join a run crosses adds one segment; two sentinels per column. */
    if (!grow_segments(s, count / 2 + 3 * (width + 2)) || !grow_columns(s, width + 3)) return TRACE_NO_MEMORY;
    Segment *segments = s->segments;
    int32_t *first = s->column_first + 1;
    int64_t column = 0, base = first_column * height, n = 0;
    segments[n++] = BELOW; /* column -1 */
    first[-1] = (int32_t)n;
    segments[n++] = ABOVE;
    segments[n++] = BELOW;
    first[0] = (int32_t)n;
    for (int64_t k = 0; k < count; k += 2) {
        int64_t start = toggles[k], end = toggles[k + 1];
        while (start >= base + height) {
            base += height;
            segments[n++] = ABOVE;
            segments[n++] = BELOW;
            first[++column] = (int32_t)n;
        }
        int64_t top = start - base;
        while (end > base + height) {
            segments[n++] = (Segment){(int32_t)top, (int32_t)(height - 1)};
            base += height;
            segments[n++] = ABOVE;
            segments[n++] = BELOW;
            first[++column] = (int32_t)n;
            top = 0;
        }
        segments[n++] = (Segment){(int32_t)top, (int32_t)(end - 1 - base)};
    }
    segments[n++] = ABOVE;
    segments[n++] = BELOW; /* column width */
    first[width] = (int32_t)n;
    segments[n++] = ABOVE;
    segments[n++] = BELOW; /* read past column width's ABOVE by column_bits */
    first[width + 1] = (int32_t)n; /* column width ends 2 segments before, as every column */
    for (int64_t c = -1; c <= width; c++) s->cursor[c + 1] = first[c];
    return width;
}

/* Union-find over the segments of adjacent columns, in one pass: [a, b] in column c - 1 and
 * [p, q] in column c are 8-connected iff p <= b + 1 and q >= a - 1. Each segment of column c takes
 * the root of the first segment of column c - 1 it touches (or becomes a root), joins the roots of
 * any others it touches (rare: two branches meeting), and its row-major first pixel, rightmost column and bottom
 * row are folded into its root's at once, so no second pass over the segments is needed. The
 * lower root is kept, so a root is its component's lowest index, its leftmost column's top
 * segment. Returns the number of roots made, listed in s->roots (some since joined into others). */
static int64_t join_components(Scratch *s, int64_t width) {
    const Segment *segments = s->segments;
    const int32_t *first = s->column_first + 1;
    int32_t *parent = s->parent, *last_column = s->last_column, *lowest = s->lowest;
    Root *roots = s->roots;
    int64_t *first_pixel = s->first_pixel;
    int64_t made = 0;
    for (int64_t c = 0; c < width; c++) {
        /* i walks column c - 1 (none for c = 0: its ABOVE comes first), stopped by its ABOVE. */
        int32_t i = first[c - 1];
        for (int32_t j = first[c]; j < first[c + 1] - 2; j++) {
            const Segment b = segments[j];
            int64_t key = ((int64_t)b.top << 32) | c;
            while (segments[i].bottom < b.top - 1) i++;
            if (segments[i].top > b.bottom + 1) {
                parent[j] = j;
                first_pixel[j] = key;
                lowest[j] = b.bottom;
                last_column[j] = (int32_t)c;
                roots[made++] = (Root){j, (int32_t)c};
                continue;
            }
            /* i stays: the next segment of column c may touch it too. */
            int32_t root = find_near(parent, i);
            for (int32_t k = i + 1; segments[k].top <= b.bottom + 1; k++) {
                int32_t other = find_near(parent, k);
                if (other == root) continue;
                int32_t low = root < other ? root : other, high = root ^ other ^ low;
                parent[high] = low;
                if (first_pixel[high] < first_pixel[low]) first_pixel[low] = first_pixel[high];
                if (lowest[high] > lowest[low]) lowest[low] = lowest[high];
                root = low;
            }
            parent[j] = root;
            /* Folded in without branches: whether a segment raises its component's top or lowers
             * its bottom follows the ragged edge of a mask, which a predictor cannot learn (as
             * branches these two missed ~13,000 times per 1080p frame of 25 masks, a sixth of
             * the tracer's time). */
            int64_t had = first_pixel[root];
            int32_t low_had = lowest[root];
            first_pixel[root] = key < had ? key : had;
            lowest[root] = b.bottom > low_had ? b.bottom : low_had;
            last_column[root] = (int32_t)c;
        }
    }
    return made;
}

/* Rows y - 1, y, y + 1 of a segment as bits 0, 1, 2. */
static inline unsigned cover(Segment segment, int32_t y) {
    int32_t low = segment.top - (y - 1), high = segment.bottom - (y - 1);
    low = low < 0 ? 0 : low;
    high = high > 2 ? 2 : high;
    return high >= low ? (2u << high) - (1u << low) : 0;
}

/* From a segment index k of a column, its first segment (or ABOVE) that reaches row y - 1. */
static inline int32_t seek(const Segment *segments, int32_t k, int32_t y) {
    while (segments[k - 1].bottom >= y - 1) k--;
    while (segments[k].bottom < y - 1) k++;
    return k;
}

/* Rows y - 1, y, y + 1 of a column as bits 0, 1, 2, from seek's k: two segments at most (a
 * column's segments are at least a row apart). */
static inline unsigned column_bits(const Segment *segments, int32_t k, int32_t y) {
    return cover(segments[k], y) | cover(segments[k + 1], y);
}

/* The 8 neighbours as bits by chain code, from the left, middle and right columns' bits. */
static inline unsigned neighbours(unsigned left, unsigned middle, unsigned right) {
    return ((right >> 1) & 1) | ((right & 1) << 1) | ((right & 4) << 5) /* codes 0, 1, 7 */
           | ((middle & 1) << 2) | ((middle & 4) << 4)                   /* codes 2, 6 */
           | (left << 3);                                               /* codes 3, 4, 5 */
}

/* OpenCV's chain codes (contours_common.hpp chainCodeDeltas): 0 is +x, counterclockwise on
 * screen (y grows downwards). */
static const int32_t DX[8] = {1, 1, 0, -1, -1, -1, 0, 1};
static const int32_t DY[8] = {0, -1, -1, -1, 0, 1, 1, 1};

static int grow_trace(Scratch *s, int64_t n) {
    return grow((void **)&s->trace, &s->trace_room, 2 * (n + 1), sizeof(int32_t));
}

/* The row bits of the left, middle and right columns at row y. */
static inline void read_columns(const Segment *segments, int32_t kl, int32_t km, int32_t kr, int32_t y,
                                unsigned *l, unsigned *m, unsigned *r) {
    *l = column_bits(segments, kl, y);
    *m = column_bits(segments, km, y);
    *r = column_bits(segments, kr, y);
}

/* The three columns' segment indices moved to row y (from where they are). */
static inline void seek_columns(const Segment *segments, int32_t y, int32_t *kl, int32_t *km, int32_t *kr) {
    *kl = seek(segments, *kl, y);
    *km = seek(segments, *km, y);
    *kr = seek(segments, *kr, y);
}

/* One step of a walk along a lower or upper edge (walk_edge), seen turned by a half turn when d is
 * -1: rows (and a segment's ends) negated, so a segment's near end (toward the outside the walk
 * keeps on its side) is its bottom walking right and its top walking left, and segment indices
 * run the other way. */
static inline int32_t near_end(Segment segment, int d) { return d > 0 ? segment.bottom : -segment.top; }
static inline int32_t far_end(Segment segment, int d) { return d > 0 ? segment.top : -segment.bottom; }

/* seek as the walk in direction d sees it, for the turned row y: for d = -1 the last segment (or
 * BELOW) of the column whose top is at most row -y + 1, from k at or below it or from ABOVE. */
static inline int32_t seek_toward(const Segment *segments, int32_t k, int32_t y, int d) {
    if (d > 0) return seek(segments, k, y);
    while (segments[k].top > -y + 1) k--;
    while (segments[k + 1].top <= -y + 1) k++;
    return k;
}

/* Appends point (x, y) to s->trace; returns 0 when out of memory. */
static inline int push_point(Scratch *s, int64_t *n, int32_t x, int32_t y) {
    if (2 * (*n + 1) > s->trace_room && !grow_trace(s, *n)) return 0;
    s->trace[2 * *n] = x;
    s->trace[2 * *n + 1] = y;
    ++*n;
    return 1;
}

/* A walk along a lower edge to the right (d = 1), or along an upper edge to the left (d = -1, the
 * same turned by a half turn: codes + 4, rows and columns negated), one column per step instead
 * of one pixel. What follows is for d = 1; the turned view (near_end, far_end, seek_toward)
 * makes it hold for d = -1.
 *
 * It starts, and each step ends, at a pixel (c, y) at the bottom of its column's segment k (code
 * 6 is empty) where the search from code + 1 finds nothing before code 6 (code is 2..5): only
 * codes 7, 0, 1 (column c + 1, rows y + 1, y, y - 1: take the lowest set) and then 2 decide the
 * next move. Let T be seek's segment of column c + 1, the first reaching row y - 1:
 *   T covers row y + 1 (or T ends at y - 1 and the next one starts at y + 1): code 7 to (c + 1,
 *     y + 1), then code 6 on down to T's bottom. At each of those pixels the search starts at
 *     code 4 or 3 (column c, rows below y), which must be empty down to T's bottom + 1: column
 *     c's next segment starts below that, or the border turns back left and the walk stops.
 *   T ends at y: code 0 to (c + 1, y); code 5 there is (c, y + 1), empty below k.
 *   T ends at y - 1: code 1 to (c + 1, y - 1); code 6 there is (c + 1, y), empty.
 *   T starts below y + 1: codes 7, 0, 1 are empty here and at every pixel up column c until
 *     the row below the bottom of column c + 1's segment before T, where code 1 is set: code 2
 *     on up to that row, then code 1 onto that segment's bottom, provided segment k reaches it
 *     (else the border turns at k's top and the walk stops).
 * Each step lands at the bottom of a segment of column c + 1 with codes before 6 empty, as the
 * next step needs, and emits the points where the code changes, as the single steps would. A step
 * that would stop does nothing, so the walk stops where it stands; it also stops before reading a
 * pixel of column c1, leaving the end test (at (c1, y1) only) to the single steps. The cursor of
 * each column left behind is set to its segment. Returns 0 when out of memory. */
static inline __attribute__((always_inline)) int walk_edge(Scratch *s, int32_t *cursor, int32_t c1, int32_t x_offset,
                                                            const int d, int32_t *pc, int32_t *py, int32_t *pk,
                                                            int *pcode, int *pprevious, int64_t *pn) {
    const Segment *segments = s->segments;
    int32_t c = *pc, y = d * *py, k = *pk;
    int code = d > 0 ? *pcode : *pcode ^ 4, previous = d > 0 ? *pprevious : *pprevious ^ 4;
    int64_t n = *pn;
    while (c != c1 && c + d != c1) {
        int32_t t = seek_toward(segments, cursor[c + d], y, d), next_y;
        int32_t near = near_end(segments[t], d);
        if (far_end(segments[t], d) <= y + 1) {
            if (near == y - 1 && far_end(segments[t + d], d) == y + 1) near = near_end(segments[t += d], d);
            if (near > y) {
                if (far_end(segments[k + d], d) <= near + 1) break;
                if (previous != 7 && !push_point(s, &n, c + x_offset, d * y)) return 0;
                if (near > y + 1) {
                    if (!push_point(s, &n, c + d + x_offset, d * (y + 1))) return 0;
                    previous = 6, code = 2;
                } else {
                    previous = 7, code = 3;
                }
            } else if (near == y) {
                if (previous != 0 && !push_point(s, &n, c + x_offset, d * y)) return 0;
                previous = 0, code = 4;
            } else {
                if (previous != 1 && !push_point(s, &n, c + x_offset, d * y)) return 0;
                previous = 1, code = 5;
            }
            next_y = near;
        } else {
            int32_t stop = near_end(segments[t - d], d) + 1;
            if (far_end(segments[k], d) > stop) break;
            if (previous != 2 && !push_point(s, &n, c + x_offset, d * y)) return 0;
            if (!push_point(s, &n, c + x_offset, d * stop)) return 0;
            previous = 1, code = 5;
            t -= d;
            next_y = stop - 1;
        }
        cursor[c] = k;
        c += d, k = t, y = next_y;
    }
    *pc = c, *py = d * y, *pk = k, *pn = n;
    *pcode = d > 0 ? code : code ^ 4;
    *pprevious = d > 0 ? previous : previous ^ 4;
    return 1;
}

/* The outer border of the component whose row-major first pixel is (c0, y0), into s->trace, as
 * OpenCV's icvFetchContourEx (contours_new.cpp) with isHole false and CHAIN_APPROX_SIMPLE: a
 * point where the chain code changes. x is the frame column (column index + x_offset). Returns
 * the point count, or TRACE_NO_MEMORY.
 *
 * The columns left of, at and right of the current pixel are kept as segment indices (kl, km,
 * kr, from seek) and row bits (l, m, r): a step along a row reuses two of each. */
static int64_t follow_border(Scratch *s, int32_t c0, int32_t y0, int32_t x_offset) {
    const Segment *segments = s->segments;
    int32_t *cursor = s->cursor + 1;
    int64_t n = 0;
    int32_t c = c0, y = y0;
    int32_t kl = seek(segments, cursor[c - 1], y), km = seek(segments, cursor[c], y);
    int32_t kr = seek(segments, cursor[c + 1], y);
    unsigned l, m, r;
    read_columns(segments, kl, km, kr, y, &l, &m, &r);
    unsigned around = neighbours(l, m, r);
    /* The first neighbour clockwise from code 3 (codes 3, 2, 1, 0, 7, 6, 5; 4 is never set). */
    int code = 4;
    do code = (code - 1) & 7;
    while (!((around >> code) & 1) && code != 4);
    if (code == 4) {
        if (!grow_trace(s, 0)) return TRACE_NO_MEMORY;
        s->trace[0] = c0 + x_offset;
        s->trace[1] = y0;
        return 1;
    }
    int32_t c1 = c0 + DX[code], y1 = y0 + DY[code];
    int previous = code ^ 4;
    for (;;) {
        /* Along a lower edge to the right or an upper one to the left (walk_edge): when the
         * search from code + 1 finds nothing before code 6 (turned: 2) and that is empty too. */
        int d = ((code - 2) & 7) < 4 ? 1 : -1;
        unsigned turned = d > 0 ? around : ((around >> 4) | (around << 4)) & 0xFF;
        if (!(turned & (0x7Fu >> (((code - 2) & 3) + 3) << (((code - 2) & 3) + 3))) && c != c1 && c + d != c1) {
            int32_t from = c;
            cursor[c - 1] = kl, cursor[c + 1] = kr;
            if (!(d > 0 ? walk_edge(s, cursor, c1, x_offset, 1, &c, &y, &km, &code, &previous, &n)
                        : walk_edge(s, cursor, c1, x_offset, -1, &c, &y, &km, &code, &previous, &n)))
                return TRACE_NO_MEMORY;
            if (c != from) {
                kl = seek(segments, cursor[c - 1], y), kr = seek(segments, cursor[c + 1], y);
                read_columns(segments, kl, km, kr, y, &l, &m, &r);
                around = neighbours(l, m, r);
            }
        }
        /* Counterclockwise from the code after the one back to the pixel we came from. */
        unsigned ring = around | (around << 8);
        int next = (code + 1 + __builtin_ctz(ring >> (code + 1))) & 7;
        if (next != previous) {
            if (2 * (n + 1) > s->trace_room && !grow_trace(s, n)) return TRACE_NO_MEMORY;
            s->trace[2 * n] = c + x_offset;
            s->trace[2 * n + 1] = y;
            n++;
        }
        previous = next;
        int32_t dx = DX[next], dy = DY[next];
        if (c == c1 && y == y1 && c + dx == c0 && y + dy == y0) break;
        code = (next + 4) & 7;
        y += dy;
        /* Along a row, the column left behind keeps its index for a later visit, the one entered
         * starts from where the last visit left it, and the other two columns' bits hold. */
        if (dx > 0 && !dy) {
            cursor[c++ - 1] = kl, kl = km, km = kr, kr = seek(segments, cursor[c + 1], y);
            l = m, m = r, r = column_bits(segments, kr, y);
            /* A straight run along a row, stepped without the search: after a step right (code
             * 4, previous 0) the search from code 5 takes 0 again, emitting no point, iff codes
             * 5, 6, 7 (row y + 1 of columns c - 1 .. c + 1) are empty and code 0 (c + 1, y) is
             * set. After such a step the new codes 5, 6 are the old 6, 7, known empty, so the
             * next step is straight too iff the new right column covers row y but not y + 1:
             * iff seek's segment there (the first reaching row y - 1) ends at row y. The run
             * moves the cursors as single steps do (and seek's result does not depend on them),
             * leaves code, previous and n as they are, and stops at (c1, y1) for the end test. */
            if (!((l | m) & 4) && (r & 6) == 2 && (c != c1 || y != y1)) {
                do {
                    cursor[c++ - 1] = kl, kl = km, km = kr, kr = seek(segments, cursor[c + 1], y);
                } while (segments[kr].bottom == y && (c != c1 || y != y1));
                read_columns(segments, kl, km, kr, y, &l, &m, &r);
            }
            around = neighbours(l, m, r);
            continue;
        }
        if (dx < 0 && !dy) {
            cursor[c-- + 1] = kr, kr = km, km = kl, kl = seek(segments, cursor[c - 1], y);
            r = m, m = l, l = column_bits(segments, kl, y);
            /* Mirrored after a step left (code 0, previous 4): codes 1, 2, 3 (row y - 1) empty
             * and code 4 set, then each new left column's seek segment starts at row y. */
            if (!((m | r) & 1) && (l & 3) == 2 && (c != c1 || y != y1)) {
                do {
                    cursor[c-- + 1] = kr, kr = km, km = kl, kl = seek(segments, cursor[c - 1], y);
                } while (segments[kl].top == y && (c != c1 || y != y1));
                read_columns(segments, kl, km, kr, y, &l, &m, &r);
            }
            around = neighbours(l, m, r);
            continue;
        }
        /* Down or up a column, or diagonally (entering a column from its cursor): every column
         * sought again. */
        if (dx > 0) cursor[c++ - 1] = kl, kl = km, km = kr, kr = cursor[c + 1];
        else if (dx < 0) cursor[c-- + 1] = kr, kr = km, km = kl, kl = cursor[c - 1];
        seek_columns(segments, y, &kl, &km, &kr);
        read_columns(segments, kl, km, kr, y, &l, &m, &r);
        /* A straight run down a column, in one jump: after a step down (code 2, previous 6) the
         * search from code 3 takes 6 again, emitting nothing, iff codes 3, 4, 5 (column c - 1,
         * rows y - 1 .. y + 1) are empty and code 6 (c, y + 1) is set; no other pixel is read.
         * So it goes on down to the last row of this column's segment or the row just above the
         * left column's next one (seek's, which starts below y + 1), whichever comes first.
         * Up, mirrored: codes 7, 0, 1 (column c + 1) empty and code 2 set, on up to the top of
         * this column's segment or the row just below the right column's segment above. Either
         * stops at (c1, y1) for the end test. */
        if (!dx) {
            const Segment *own = &segments[km + (segments[km].bottom < y)];
            int32_t end = y;
            if (dy > 0 && !l && (m & 4)) {
                int32_t above = segments[kl].top - 1;
                end = own->bottom < above ? own->bottom : above;
                if (c == c1 && y1 >= y && y1 < end) end = y1;
            } else if (dy < 0 && !r && (m & 1)) {
                int32_t below = segments[kr - 1].bottom + 1;
                end = own->top > below ? own->top : below;
                if (c == c1 && y1 <= y && y1 > end) end = y1;
            }
            if (end != y) {
                y = end;
                seek_columns(segments, y, &kl, &km, &kr);
                read_columns(segments, kl, km, kr, y, &l, &m, &r);
            }
        }
        around = neighbours(l, m, r);
    }
    cursor[c - 1] = kl;
    cursor[c] = km;
    cursor[c + 1] = kr;
    return n;
}

/* Twice the area cv2.contourArea gives (the shoelace sum, exact in integers). */
static int64_t twice_area(const int32_t *xy, int64_t n) {
    int64_t sum = 0, px = xy[2 * (n - 1)], py = xy[2 * (n - 1) + 1];
    for (int64_t i = 0; i < n; i++) {
        sum += px * xy[2 * i + 1] - py * xy[2 * i];
        px = xy[2 * i];
        py = xy[2 * i + 1];
    }
    return sum < 0 ? -sum : sum;
}

/* One mask's largest contour into s->best; returns its point count, or an error code. */
static int64_t largest_contour(const int32_t *toggles, int64_t count, int64_t height, Scratch *s) {
    /* No early exit: the compiler vectorizes the check (bad toggles are rare). */
    int bad = toggles[0] < 0;
    for (int64_t k = 1; k < count; k++) bad |= toggles[k] <= toggles[k - 1];
    if (bad) return TRACE_BAD_TOGGLES;
    int64_t width = cut_runs(toggles, count, height, s);
    if (width < 0) return width;
    int32_t x_offset = (int32_t)(toggles[0] / height);
    /* findContours returns its contours in reverse discovery order (tree.addChild prepends, in
     * contours_common.hpp) and discovers each component at its row-major first pixel: of equal
     * areas, the later first pixel wins. A component inside another's hole is not external for
     * findContours, but tracing it changes nothing: its border lies strictly inside the hole,
     * which its container's outer border encloses with a margin of at least one pixel (the two are
     * not 8-connected), so its area is strictly smaller than its container's: never the largest,
     * never tied with it.
     * Nor does skipping a component that cannot win: its border is a closed curve that never
     * crosses itself, through the centres of pixels in its w x h bounding box, so it encloses at
     * most (w - 1) * (h - 1). The component of the largest bound is traced first (the largest one,
     * nearly always: most boundary steps), then each other whose bound reaches the largest area
     * so far, in any order (one that cannot win stays skipped whatever comes after it: the
     * largest area only grows); an equal bound is still traced, as it may tie and win by its
     * later first pixel. No sort: a mask has one large component and many specks. */
    int64_t made = join_components(s, width), components = 0;
    for (int64_t k = 0; k < made; k++) {
        int32_t i = s->roots[k].segment;
        if (s->parent[i] != i) continue;
        int64_t w = s->last_column[i] - s->roots[k].column, h = s->lowest[i] - (s->first_pixel[i] >> 32);
        s->candidates[components++] = (Candidate){2 * w * h, s->first_pixel[i]};
    }
    int64_t largest = 0;
    for (int64_t k = 1; k < components; k++)
        if (s->candidates[k].bound > s->candidates[largest].bound) largest = k;
    Candidate head = s->candidates[largest];
    s->candidates[largest] = s->candidates[0];
    s->candidates[0] = head;
    int64_t best_area = -1, best_key = -1, best_n = 0;
    for (int64_t k = 0; k < components; k++) {
        if (s->candidates[k].bound < best_area) continue;
        int64_t key = s->candidates[k].first_pixel;
        int64_t n = follow_border(s, (int32_t)(key & 0xFFFFFFFF), (int32_t)(key >> 32), x_offset);
        if (n < 0) return n;
        int64_t area = twice_area(s->trace, n);
        if (area > best_area || (area == best_area && key > best_key)) {
            best_area = area;
            best_key = key;
            best_n = n;
            int32_t *swap = s->best;
            int64_t room = s->best_room;
            s->best = s->trace;
            s->best_room = s->trace_room;
            s->trace = swap;
            s->trace_room = room;
        }
    }
    return best_n;
}

/* The masks of one call, handed to its threads one at a time in index order (the next mask goes
 * to whichever thread is free first, so a large mask does not hold up the others' share). */
typedef struct {
    const int32_t *toggles;
    const int64_t *ends, *heights;
    int64_t count;
    atomic_llong next;  /* the next mask to trace */
    int32_t **polygon;  /* per mask: its points (x, y pairs), malloc'd, or NULL when empty */
    int64_t *length;    /* per mask: its point count, or a negative error code */
} Batch;

static void free_scratch(Scratch *s) {
    free(s->segments);
    free(s->parent);
    free(s->first_pixel);
    free(s->last_column);
    free(s->lowest);
    free(s->candidates);
    free(s->roots);
    free(s->column_first);
    free(s->cursor);
    free(s->trace);
    free(s->best);
    memset(s, 0, sizeof(*s));
}

static void trace_masks(Batch *b, Scratch *s) {
    for (int64_t m; (m = atomic_fetch_add(&b->next, 1)) < b->count;) {
        int64_t first = m ? b->ends[m - 1] : 0, n = 0;
        if (b->ends[m] > first) {
            n = largest_contour(b->toggles + first, b->ends[m] - first, b->heights[m], s);
            if (n > 0) {
                b->polygon[m] = malloc((size_t)n * 2 * sizeof(int32_t));
                if (!b->polygon[m]) n = TRACE_NO_MEMORY;
                else memcpy(b->polygon[m], s->best, (size_t)n * 2 * sizeof(int32_t));
            }
        }
        b->length[m] = n;
    }
}

/* Helper threads for the calls, a crew, that live with the process (backends.rle_runs keeps one).
 * A helper sleeps until a batch is posted or it is woken (crew_wake); woken, it spins for up to
 * CREW_SPIN_NS waiting for the batch, then sleeps again; after a batch it sleeps. The postprocess
 * wakes as many as the batch's toggles call for once it knows them, while the runs are still
 * being copied, so they are running when the runs arrive: not started then (33 us a thread on
 * the H200 host) nor woken from sleep then (benchmarks/results/h200/postprocess-crew.md). Woken
 * before the device wait instead, they spun through it, which took the CPU the server's other
 * stages needed (the same page). Spinning is on sched_yield, so a helper gives way to any thread
 * on its core that can run. A batch is open from its posting until the calling thread has
 * handed out every mask and finished its own; a helper that arrives after that leaves it alone,
 * so a late waker never holds up the call. One crew serves one caller at a time. */
#define CREW_SPIN_NS 1000000LL

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t posted, finished;
    Batch *batch;            /* the open batch, else NULL (under lock) */
    atomic_llong generation; /* +1 per batch posted (written under lock, read by spinners) */
    atomic_llong wakes;      /* +1 per crew_wake (under lock) */
    atomic_int stop;
    atomic_llong tracing;    /* helpers inside the open batch (joined under lock) */
    int64_t helpers;
    pthread_t threads[MAX_THREADS];
} Crew;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Waits for a generation after `seen`: asleep, and spinning for CREW_SPIN_NS after each wake
 * (crew_wake) after *woken (updated); returns the generation, or -1 once the crew stops. */
static int64_t await_batch(Crew *c, int64_t seen, int64_t *woken) {
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (!atomic_load(&c->stop) && atomic_load(&c->generation) == seen && atomic_load(&c->wakes) == *woken)
            pthread_cond_wait(&c->posted, &c->lock);
        int64_t next = atomic_load(&c->stop) ? -1 : atomic_load(&c->generation);
        *woken = atomic_load(&c->wakes);
        pthread_mutex_unlock(&c->lock);
        if (next != seen) return next;
        int64_t deadline = now_ns() + CREW_SPIN_NS;
        for (int64_t spins = 1;; spins++) {
            if (atomic_load(&c->stop)) return -1;
            if (atomic_load(&c->generation) != seen) return atomic_load(&c->generation);
            if (spins % 64 == 0 && now_ns() > deadline) break;
            sched_yield();
        }
    }
}

static void *crew_helper(void *crew) {
    Crew *c = crew;
    Scratch s;
    memset(&s, 0, sizeof(s));
    int64_t woken = 0;
    for (int64_t seen = 0; (seen = await_batch(c, seen, &woken)) >= 0;) {
        pthread_mutex_lock(&c->lock);
        Batch *b = c->batch;
        seen = atomic_load(&c->generation); /* the batch read with it, should several have passed */
        if (b) atomic_fetch_add(&c->tracing, 1);
        pthread_mutex_unlock(&c->lock);
        if (!b) continue;
        trace_masks(b, &s);
        if (atomic_fetch_sub(&c->tracing, 1) == 1) { /* the last one out tells a caller asleep in crew_close */
            pthread_mutex_lock(&c->lock);
            pthread_cond_signal(&c->finished);
            pthread_mutex_unlock(&c->lock);
        }
    }
    free_scratch(&s);
    return NULL;
}

/* Starts up to `helpers` threads (at most MAX_THREADS - 1; those the system refuses are left
 * out), asleep; NULL when out of memory. Pass the crew to crew_wake and largest_contours, then to
 * crew_stop. */
void *crew_start(int64_t helpers) {
    Crew *c = calloc(1, sizeof(Crew));
    if (!c) return NULL;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->posted, NULL);
    pthread_cond_init(&c->finished, NULL);
    if (helpers > MAX_THREADS - 1) helpers = MAX_THREADS - 1;
    while (c->helpers < helpers && pthread_create(&c->threads[c->helpers], NULL, crew_helper, c) == 0) c->helpers++;
    return c;
}

/* Wakes up to `helpers` of the crew's sleeping helpers to spin for the next CREW_SPIN_NS (one
 * already spinning or tracing spins again when it next waits). */
void crew_wake(void *crew, int64_t helpers) {
    Crew *c = crew;
    pthread_mutex_lock(&c->lock);
    atomic_fetch_add(&c->wakes, 1);
    if (helpers >= c->helpers) pthread_cond_broadcast(&c->posted);
    else
        for (int64_t k = 0; k < helpers; k++) pthread_cond_signal(&c->posted);
    pthread_mutex_unlock(&c->lock);
}

/* Stops the crew's threads and frees it. */
void crew_stop(void *crew) {
    Crew *c = crew;
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->stop, 1);
    pthread_cond_broadcast(&c->posted);
    pthread_mutex_unlock(&c->lock);
    for (int64_t k = 0; k < c->helpers; k++) pthread_join(c->threads[k], NULL);
    pthread_cond_destroy(&c->finished);
    pthread_cond_destroy(&c->posted);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void crew_post(Crew *c, Batch *b) {
    pthread_mutex_lock(&c->lock);
    c->batch = b;
    atomic_fetch_add(&c->generation, 1);
    pthread_cond_broadcast(&c->posted);
    pthread_mutex_unlock(&c->lock);
}

/* Closes the batch to late helpers and waits for those inside it: spinning first, since a
 * caller put to sleep here is woken as slowly as a helper (about 0.1 ms on the H200 host). */
static void crew_close(Crew *c) {
    pthread_mutex_lock(&c->lock);
    c->batch = NULL;
    pthread_mutex_unlock(&c->lock);
    int64_t deadline = now_ns() + CREW_SPIN_NS;
    for (int64_t spins = 1; atomic_load(&c->tracing) > 0; spins++) {
        if (spins % 64 == 0 && now_ns() > deadline) {
            pthread_mutex_lock(&c->lock);
            while (atomic_load(&c->tracing) > 0) pthread_cond_wait(&c->finished, &c->lock);
            pthread_mutex_unlock(&c->lock);
            break;
        }
        sched_yield();
    }
}

/* Every mask's largest contour, on this thread and the crew's helpers (crew_start), or on this
 * thread alone with crew NULL (the masks are independent, and one call keeps Python's GIL
 * released for all of them).
 * Mask m's toggles are toggles[ends[m - 1] .. ends[m] - 1] (from 0 for m = 0), an even number,
 * and its frame has heights[m] rows. Writes mask m's points (x, y pairs) to points[2 * offsets[m]
 * ..] when all fit in `room` points, and offsets[0..count]. Returns the points needed in all (the
 * caller retries with that room when it exceeds `room`), or a negative error code with *bad_mask
 * set to the first failing mask. */
int64_t largest_contours(const int32_t *toggles, const int64_t *ends, const int64_t *heights,
                         int64_t count, int32_t *points, int64_t room, int64_t *offsets,
                         int64_t *bad_mask, void *crew) {
    Batch b = {toggles, ends, heights, count, 0, calloc((size_t)count + 1, sizeof(int32_t *)),
               malloc(((size_t)count + 1) * sizeof(int64_t))};
    if (!b.polygon || !b.length) {
        free(b.polygon);
        free(b.length);
        *bad_mask = 0;
        return TRACE_NO_MEMORY;
    }
    if (crew) crew_post(crew, &b);
    Scratch s;
    memset(&s, 0, sizeof(s));
    trace_masks(&b, &s);
    free_scratch(&s);
    if (crew) crew_close(crew);
    int64_t total = 0, status = 0;
    offsets[0] = 0;
    for (int64_t m = 0; m < count; m++) {
        if (b.length[m] < 0) {
            status = b.length[m];
            *bad_mask = m;
            break;
        }
        total += b.length[m];
        offsets[m + 1] = total;
    }
    for (int64_t m = 0; m < count; m++) {
        if (!status && total <= room && b.polygon[m])
            memcpy(points + 2 * offsets[m], b.polygon[m], (size_t)b.length[m] * 2 * sizeof(int32_t));
        free(b.polygon[m]);
    }
    free(b.polygon);
    free(b.length);
    return status ? status : total;
}
