/* Plans of fired seeds: drawn from log-uniforms (or given), decoded into clipped boxes, counted. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernel.h"

static void read_geom(const int64_t *g, geom_t *out) {
    out->per_map = g[0];
    out->n_units = g[1];
    for (int a = 0; a < 3; a++) {
        out->len[a] = g[2 + 4 * a];
        out->blk[a] = g[3 + 4 * a];
        out->nseed[a] = g[4 + 4 * a];
        out->off[a] = g[5 + 4 * a];
    }
}

/* Decode a flat seed index (an integer held exactly in a double, below 2**53) on axes [first, 3) (axes before
 * first have length 1: their box is [0, 1)). The mask index is taken in double precision: floor(a / b) is
 * exact for integers a, b below 2**53 (the rounding error of a / b is smaller than the distance 1 / b to the
 * next integer), and faster than 64-bit integer division. */
static inline __attribute__((always_inline)) void decode_axes(const geom_t *g, double seed, seed_t *out,
                                                                const int first) {
    double mask = g->per_map == 1 ? seed : floor(seed / (double)g->per_map);
    uint64_t r = (uint64_t)(seed - mask * (double)g->per_map);
    out->mask = (int64_t)mask;
    for (int a = 0; a < first; a++) {
        out->lo[a] = 0;
        out->hi[a] = 1;
    }
    for (int a = 2; a >= first; a--) {
        int64_t c = 0;
        if (g->nseed[a] > 1) {
            uint64_t n = (uint64_t)g->nseed[a];
            uint64_t q = r <= UINT32_MAX && n <= UINT32_MAX ? (uint32_t)r / (uint32_t)n : r / n;
            c = (int64_t)(r - q * n);
            r = q;
        }
        int64_t start = c - g->off[a];
        int64_t lo = start < 0 ? 0 : start;
        int64_t hi = start + g->blk[a];
        if (hi > g->len[a]) hi = g->len[a];
        if (hi < lo) hi = lo;
        out->lo[a] = (int32_t)lo;
        out->hi[a] = (int32_t)hi;
    }
}

static void decode(const geom_t *g, double seed, seed_t *out) { decode_axes(g, seed, out, 0); }

/* 1 when axis 0 is a leading axis of length 1 (2D maps): decoding and counting can skip it. */
static int flat_axis0(const geom_t *g) {
    return g->len[0] == 1 && g->blk[0] == 1 && g->nseed[0] == 1 && g->off[0] == 0;
}

/* Units shared by two boxes (written without branches: it runs for every pair of successive seeds). */
static int64_t overlap(const seed_t *p, const seed_t *q) {
    int64_t v = 1;
    for (int a = 0; a < 3; a++) {
        int32_t lo = p->lo[a] > q->lo[a] ? p->lo[a] : q->lo[a];
        int32_t hi = p->hi[a] < q->hi[a] ? p->hi[a] : q->hi[a];
        int32_t side = hi - lo;
        v *= side > 0 ? side : 0;
    }
    return v;
}

/* Set the units of box b in the byte map (one map of n_units bytes) to value. */
static void paint(const geom_t *g, const seed_t *b, unsigned char *map, int value) {
    const int64_t l1 = g->len[1], l2 = g->len[2];
    for (int64_t z = b->lo[0]; z < b->hi[0]; z++)
        for (int64_t y = b->lo[1]; y < b->hi[1]; y++)
            memset(map + (z * l1 + y) * l2 + b->lo[2], value, (size_t)(b->hi[2] - b->lo[2]));
}

/* Boxes up to which union_by_pairs looks for three boxes that share a unit (beyond, the union is painted). */
#define PAIRS_MAX 16

/* Units of the union of boxes[0 .. n) by inclusion-exclusion up to pairs: the sum of the volumes less the
 * overlap of every pair. Exact when no three boxes share a unit, which it checks (the triple intersections
 * of the overlapping pairs); returns -1 when three do, or for more than PAIRS_MAX boxes. */
static int64_t union_by_pairs(const seed_t *boxes, int64_t n) {
    if (n > PAIRS_MAX) return -1;
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += box_volume(&boxes[i]);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            const int64_t v = overlap(&boxes[i], &boxes[j]);
            if (!v) continue;
            total -= v;
            seed_t both = boxes[i];
            for (int a = 0; a < 3; a++) {
                if (boxes[j].lo[a] > both.lo[a]) both.lo[a] = boxes[j].lo[a];
                if (boxes[j].hi[a] < both.hi[a]) both.hi[a] = boxes[j].hi[a];
            }
            for (int64_t l = j + 1; l < n; l++)
                if (overlap(&both, &boxes[l])) return -1;
        }
    return total;
}

/* Number of units of the union of boxes[0 .. n), painted into buf (n_units bytes, all zero on entry and
 * on return): the boxes are painted, then the bytes of their bounding box are summed and cleared. */
static int64_t union_size(const geom_t *g, const seed_t *boxes, int64_t n, unsigned char *buf) {
    const int64_t l1 = g->len[1], l2 = g->len[2];
    seed_t bb = boxes[0];
    for (int64_t s = 0; s < n; s++) {
        paint(g, &boxes[s], buf, 1);
        for (int a = 0; a < 3; a++) {
            if (boxes[s].lo[a] < bb.lo[a]) bb.lo[a] = boxes[s].lo[a];
            if (boxes[s].hi[a] > bb.hi[a]) bb.hi[a] = boxes[s].hi[a];
        }
    }
    int64_t count = 0;
    const int64_t width = bb.hi[2] - bb.lo[2];
    for (int64_t z = bb.lo[0]; z < bb.hi[0]; z++)
        for (int64_t y = bb.lo[1]; y < bb.hi[1]; y++) {
            unsigned char *row = buf + (z * l1 + y) * l2 + bb.lo[2];
            int64_t c = 0;
            for (int64_t x = 0; x < width; x++) c += row[x];
            count += c;
            memset(row, 0, (size_t)width);
        }
    return count;
}

/* ------------------------------------------------------------------------------------------- buffers */
/* One spare buffer per kind is kept when a plan is freed, so that the next plan of about the same size
 * reuses memory that is already paged in (malloc maps and unmaps large blocks: paging them in again costs
 * as much as the draw). A buffer carries its capacity in a 64-byte header. */
enum { BUF_FLAT, BUF_SEEDS, BUF_TILES, N_BUF_KINDS };
static char *spare[N_BUF_KINDS];
#define HEADER 64

static void *buf_take(int kind, size_t bytes) {
    char *b = __atomic_exchange_n(&spare[kind], NULL, __ATOMIC_ACQ_REL);
    if (b && *(size_t *)b >= bytes) return b + HEADER;
    free(b);
    b = malloc(bytes + HEADER);
    if (!b) return NULL;
    *(size_t *)b = bytes;
    return b + HEADER;
}

static void buf_give(int kind, void *data) {
    if (!data) return;
    char *b = (char *)data - HEADER;
    char *old = __atomic_exchange_n(&spare[kind], b, __ATOMIC_ACQ_REL);
    if (old && *(size_t *)old > *(size_t *)b) { /* keep the larger one */
        old = __atomic_exchange_n(&spare[kind], old, __ATOMIC_ACQ_REL);
    }
    free(old);
}

/* ------------------------------------------------------------------------------------------- the plan */
void db_plan_free(void *handle) {
    plan_t *p = (plan_t *)handle;
    if (!p) return;
    buf_give(BUF_FLAT, p->flat);
    buf_give(BUF_SEEDS, p->seeds);
    buf_give(BUF_TILES, p->tiles);
    free(p);
}

/* An empty plan for n_masks masks of geometry gv; NULL on allocation failure, for no masks or empty maps,
 * and for axes longer than INT32_MAX units (the boxes hold int32 coordinates). */
void *db_plan_begin(int64_t n_masks, const int64_t *gv) {
    geom_t g;
    read_geom(gv, &g);
    if (n_masks < 1 || g.n_units < 1 || g.per_map < 1) return NULL;
    for (int a = 0; a < 3; a++)
        if (g.len[a] > INT32_MAX || g.blk[a] > INT32_MAX) return NULL;
    plan_t *p = calloc(1, sizeof(plan_t));
    if (!p) return NULL;
    p->g = g;
    p->n_masks = n_masks;
    return p;
}

static int reserve(plan_t *p, int64_t more) {
    if (p->n_seeds + more <= p->capacity) return 0;
    int64_t cap = p->capacity ? 2 * p->capacity : 1024;
    if (cap < p->n_seeds + more) cap = p->n_seeds + more;
    double *flat = buf_take(BUF_FLAT, sizeof(double) * (size_t)cap);
    seed_t *seeds = buf_take(BUF_SEEDS, sizeof(seed_t) * (size_t)cap);
    if (!flat || !seeds) {
        buf_give(BUF_FLAT, flat);
        buf_give(BUF_SEEDS, seeds);
        return -1;
    }
    if (p->n_seeds) memcpy(flat, p->flat, sizeof(double) * (size_t)p->n_seeds);
    if (p->n_decoded) memcpy(seeds, p->seeds, sizeof(seed_t) * (size_t)p->n_decoded);
    buf_give(BUF_FLAT, p->flat);
    buf_give(BUF_SEEDS, p->seeds);
    p->flat = flat;
    p->seeds = seeds;
    p->capacity = cap;
    return 0;
}

/* The count's terms of seed s (decoded, as is seed s - 1) on axes [first, 3): its volume less its overlap
 * with the previous seed when both are in one mask (branch-free: it runs for every seed). */
static inline __attribute__((always_inline)) int64_t terms_axes(const seed_t *sd, int64_t s, const int first) {
    int64_t vol = 1, ov = 1;
    for (int a = first; a < 3; a++) {
        vol *= sd[s].hi[a] - sd[s].lo[a];
        if (s > 0) {
            int32_t lo = sd[s].lo[a] > sd[s - 1].lo[a] ? sd[s].lo[a] : sd[s - 1].lo[a];
            int32_t hi = sd[s].hi[a] < sd[s - 1].hi[a] ? sd[s].hi[a] : sd[s - 1].hi[a];
            int32_t side = hi - lo;
            ov *= side > 0 ? side : 0;
        }
    }
    return s > 0 ? vol - (sd[s].mask == sd[s - 1].mask) * ov : vol;
}

static int64_t terms_of(const seed_t *sd, int64_t s) { return terms_axes(sd, s, 0); }

/* Decode seeds [from, to) of valid flat indices, serially, and add their terms to the running count. */
static inline __attribute__((always_inline)) void decode_count(plan_t *p, int64_t from, int64_t to,
                                                                const int first) {
    const geom_t g = p->g; /* a local copy: the stores into seeds cannot alias it */
    const double *flat = p->flat;
    seed_t *sd = p->seeds;
    int64_t terms = 0;
    int triple = 0;
    for (int64_t s = from; s < to; s++) {
        decode_axes(&g, flat[s], &sd[s], first);
        terms += terms_axes(sd, s, first);
        triple |= s >= 2 && sd[s].mask == sd[s - 2].mask;
    }
    p->terms += terms;
    p->triple |= triple;
    p->n_decoded = to;
}

static void decode_range(plan_t *p, int64_t from, int64_t to) {
    if (flat_axis0(&p->g))
        decode_count(p, from, to, 1);
    else
        decode_count(p, from, to, 0);
}

/* Seeds from which decoding runs on OpenMP threads (below, waking the threads costs more than it saves). */
#define PARALLEL_DECODE_FROM (1 << 16)

/* Append the seeds drawn from one chunk of log-uniforms l[i] = log1p(-u[i]) (as torch computes them): the
 * gaps between successive fired seeds are floor(l[i] / log_q) + 1 (geometric, log_q = log(1 - gamma)) and
 * the seeds their running sum from *position. Every value is an integer below 2**53, so the sum is exact
 * in any order and equals torch's cumsum. Returns 1 when a seed reached n_positions (it is not kept: the
 * draw is complete), 0 when the chunk ran out first (*position is then its last seed), -1 on allocation
 * failure. */
int db_plan_extend(void *handle, const double *l, int64_t n, double log_q, double n_positions,
                   double *position) {
    plan_t *p = (plan_t *)handle;
    if (reserve(p, n) != 0) return -1;
    double pos = *position;
    double *out = p->flat + p->n_seeds;
    int64_t i = 0;
    for (; i < n; i++) {
        pos += floor(l[i] / log_q) + 1.0;
        if (pos >= n_positions) break;
        out[i] = pos;
    }
    /* Fewer than PARALLEL_DECODE_FROM new seeds are decoded and counted here, while they are in cache;
     * more are left to db_plan_finish, which decodes them on several threads. */
    const int64_t first = p->n_seeds;
    p->n_seeds += i;
    if (p->n_decoded == first && i < PARALLEL_DECODE_FROM) decode_range(p, first, p->n_seeds);
    if (i < n) return 1;
    *position = pos;
    return 0;
}

/* Append given flat seed indices; 0, or -1 on allocation failure. */
int db_plan_add(void *handle, const double *seeds, int64_t n) {
    plan_t *p = (plan_t *)handle;
    if (reserve(p, n) != 0) return -1;
    memcpy(p->flat + p->n_seeds, seeds, sizeof(double) * (size_t)n);
    p->n_seeds += n;
    return 0;
}

int64_t db_plan_size(void *handle) { return ((plan_t *)handle)->n_seeds; }

/* Copy the flat seed indices into out (db_plan_size doubles). */
void db_plan_seeds(void *handle, double *out) {
    plan_t *p = (plan_t *)handle;
    if (p->n_seeds) memcpy(out, p->flat, sizeof(double) * (size_t)p->n_seeds);
}

/* Decode the seeds not yet decoded (given ones, or a large draw) and, with shared != 0, paint the masks into
 * tiles (masks that many maps share are applied by a select per unit). Returns 0, -1 (allocation failure) or
 * -2 (a seed outside the n_masks masks, or seeds not increasing). */
int db_plan_finish(void *handle, int shared) {
    plan_t *p = (plan_t *)handle;
    if (!p->seeds && reserve(p, 1) != 0) return -1; /* the buffers exist even for an empty plan */
    const int64_t n_seeds = p->n_seeds, n_masks = p->n_masks, nu = p->g.n_units, from = p->n_decoded;
    const double *flat = p->flat;
    /* Increasing integers in [0, n_masks * per_map), checked in double before any conversion (drawn seeds
     * decoded by db_plan_extend are so by construction). */
    if (from < n_seeds) {
        if (!(flat[from] >= 0 && flat[n_seeds - 1] < (double)n_masks * (double)p->g.per_map)) return -2;
        if (from > 0 && !(flat[from] > flat[from - 1])) return -2;
        const geom_t g = p->g;
        seed_t *sd = p->seeds;
        int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n_seeds - from > PARALLEL_DECODE_FROM)
        for (int64_t s = from; s < n_seeds; s++) {
            bad |= (s > from && !(flat[s] > flat[s - 1])) || flat[s] != floor(flat[s]);
            decode(&g, flat[s], &sd[s]);
        }
        if (bad) return -2;
        int64_t terms = 0;
        int triple = 0;
#pragma omp parallel for schedule(static) reduction(+ : terms) reduction(| : triple) \
    if (n_seeds - from > PARALLEL_DECODE_FROM)
        for (int64_t s = from; s < n_seeds; s++) {
            terms += terms_of(sd, s);
            triple |= s >= 2 && sd[s].mask == sd[s - 2].mask;
        }
        p->terms += terms;
        p->triple |= triple;
        p->n_decoded = n_seeds;
    }
    p->chunk_maps = nu >= CHUNK_UNITS ? 1 : CHUNK_UNITS / nu;
    p->can_cover = p->g.blk[0] >= p->g.len[0] && p->g.blk[1] >= p->g.len[1] && p->g.blk[2] >= p->g.len[2];
    if (shared) {
        int64_t cap = TILES_MAX_BYTES / (n_masks * nu);
        p->tile_maps = cap < 1 ? 1 : (cap < p->chunk_maps ? cap : p->chunk_maps);
        const int64_t tile = p->tile_maps * nu;
        p->tiles = buf_take(BUF_TILES, (size_t)(n_masks * tile));
        if (!p->tiles) return -1;
        memset(p->tiles, 0, (size_t)(n_masks * tile));
        for (int64_t s = 0; s < n_seeds; s++) paint(&p->g, &p->seeds[s], p->tiles + p->seeds[s].mask * tile, 1);
        for (int64_t m = 0; m < n_masks; m++)
            for (int64_t r = 1; r < p->tile_maps; r++)
                memcpy(p->tiles + m * tile + r * nu, p->tiles + m * tile, (size_t)nu);
    }
    return 0;
}

/* Exact number of dropped units over all masks (the union of each mask's boxes); -1 on allocation failure.
 * Inclusion-exclusion over neighbours in the seed order: the sum of the boxes' volumes less the overlap of
 * every two successive seeds of one mask (the terms summed as the seeds were decoded) is exact for masks of
 * one or two seeds; for a mask of three or more the overlaps of all its pairs are taken, or its union is
 * painted into a byte buffer and counted where three of its boxes share a unit. */
int64_t db_plan_count(void *handle) {
    const plan_t *p = (const plan_t *)handle;
    const seed_t *sd = p->seeds;
    const int64_t n = p->n_decoded;
    if (!p->triple) return p->terms;
    int64_t fix = 0;
    int failed = 0;
    /* Each thread takes the masks that start in its share of the seeds. */
#pragma omp parallel reduction(+ : fix) reduction(| : failed) if (n > PARALLEL_DECODE_FROM)
    {
        int64_t t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        const int64_t hi = n * (t + 1) / nt;
        int64_t s = n * t / nt;
        while (s > 0 && s < hi && sd[s].mask == sd[s - 1].mask) s++;
        unsigned char *buf = NULL;
        for (int64_t e; s < hi && !failed; s = e) {
            /* s starts a mask (the masks of one or two seeds are stepped over one seed at a time: a seed that
             * ends such a mask cannot start one of three with the two after it). */
            if (s + 2 >= n || sd[s].mask != sd[s + 2].mask) {
                e = s + 1;
                continue;
            }
            e = run_end(sd, n, s);
            /* Seeds [s, e) share a mask: undo their terms, add their union. */
            for (int64_t b = s; b < e; b++) fix -= box_volume(&sd[b]) - (b + 1 < e ? overlap(&sd[b], &sd[b + 1]) : 0);
            int64_t u = union_by_pairs(&sd[s], e - s);
            if (u < 0) {
                if (!buf && !(buf = calloc((size_t)p->g.n_units, 1))) {
                    failed = 1;
                    break;
                }
                u = union_size(&p->g, &sd[s], e - s, buf);
            }
            fix += u;
        }
        free(buf);
    }
    return failed ? -1 : p->terms + fix;
}
