/* Fused CPU kernel of the reference DropBlock: exact dropped-unit counts and one pass of
 * out = x * scale with the blocks set to +0, for contiguous (N, C, *sizes) tensors.
 *
 * Loaded through ctypes by dropblock/_native.py, which compiles it on first use; the pure-torch path in
 * dropblock/_plan.py computes the same numbers and is the fallback. Both start from the same fired seeds
 * (flat float64 indices into (n_masks, *seed_shape), increasing), so for a given generator state both
 * give the same output, bit for bit.
 *
 * Geometry (int64 g[16]): g[0] = per_map (seed positions per mask), g[1] = n_units (units per map), then for
 * 3 axes (2D maps get a leading axis of length 1) g[2 + 4a ..] = length, block, n_seeds, offset. The seed at
 * coordinate s of an axis drops the units [s - offset, s - offset + block) clipped to [0, length)
 * (dropblock/law.py, AxisGeometry).
 *
 * Scaling follows torch's product of a tensor with a Python float: float32 computes x * (float)scale;
 * float64 x * scale; float16 and bfloat16 convert x to float32, multiply by (float)scale and round to
 * nearest even (bfloat16 NaN -> 0x7FC0, as c10::BFloat16).
 */
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { DT_F32 = 0, DT_F64 = 1, DT_F16 = 2, DT_BF16 = 3 };

int db_supports(int dtype);

typedef struct {
    int64_t per_map, n_units;
    int64_t len[3], blk[3], nseed[3], off[3];
} geom_t;

/* A fired seed: its mask and the clipped box [lo, hi) of its block on each axis. */
typedef struct {
    int64_t mask;
    int32_t pos; /* index of the seed position within its mask's seed grid (below per_map) */
    int32_t lo[3], hi[3];
} seed_t;

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

/* Decode a flat seed index (an integer held exactly in a double, below 2**53). The mask index is taken in
 * double precision: floor(a / b) is exact for integers a, b below 2**53 (the rounding error of a / b is
 * smaller than the distance 1 / b to the next integer), and faster than 64-bit integer division. */
static void decode(const geom_t *g, double seed, seed_t *out) {
    double mask = g->per_map == 1 ? seed : floor(seed / (double)g->per_map);
    uint64_t r = (uint64_t)(seed - mask * (double)g->per_map);
    out->mask = (int64_t)mask;
    out->pos = (int32_t)r;
    for (int a = 2; a >= 0; a--) {
        int64_t c = 0;
        if (g->nseed[a] > 1) {
            uint64_t n = (uint64_t)g->nseed[a];
            uint64_t q = r <= UINT32_MAX ? (uint32_t)r / (uint32_t)n : r / n;
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

static int64_t volume(const seed_t *b) {
    return (int64_t)(b->hi[0] - b->lo[0]) * (b->hi[1] - b->lo[1]) * (b->hi[2] - b->lo[2]);
}

static int64_t overlap(const seed_t *p, const seed_t *q) {
    int64_t v = 1;
    for (int a = 0; a < 3; a++) {
        int32_t lo = p->lo[a] > q->lo[a] ? p->lo[a] : q->lo[a];
        int32_t hi = p->hi[a] < q->hi[a] ? p->hi[a] : q->hi[a];
        if (hi <= lo) return 0;
        v *= hi - lo;
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

/* Number of units of the union of boxes[0 .. n), painted into buf (n_units bytes, all zero on entry and
 * on return: only the units of the boxes are touched). */
static int64_t union_size(const geom_t *g, const seed_t *boxes, int64_t n, unsigned char *buf) {
    int64_t count = 0;
    const int64_t l1 = g->len[1], l2 = g->len[2];
    for (int64_t s = 0; s < n; s++) {
        const seed_t *b = &boxes[s];
        for (int64_t z = b->lo[0]; z < b->hi[0]; z++)
            for (int64_t y = b->lo[1]; y < b->hi[1]; y++) {
                unsigned char *row = buf + (z * l1 + y) * l2;
                for (int64_t x = b->lo[2]; x < b->hi[2]; x++) {
                    count += !row[x];
                    row[x] = 1;
                }
            }
    }
    for (int64_t s = 0; s < n; s++) paint(g, &boxes[s], buf, 0);
    return count;
}

/* ------------------------------------------------------------------------------------------- the plan */
typedef struct {
    geom_t g;
    int64_t n_seeds, n_masks;
    seed_t *seeds;          /* sorted by mask */
    unsigned char *dropped; /* optional (n_masks, n_units) bytes, 1 where dropped: masks shared by maps */
    unsigned char *table;   /* optional (per_map, n_units) bytes: the block of every seed position */
} plan_t;

/* The byte table of the blocks of all seed positions is built for per-map masks of small maps, where
 * selecting through a table row costs less than zeroing a block row by row. */
#define TABLE_MAX_BYTES 65536
#define TABLE_MAX_UNITS 4096

void db_plan_free(void *handle) {
    plan_t *p = (plan_t *)handle;
    if (!p) return;
    free(p->seeds);
    free(p->dropped);
    free(p->table);
    free(p);
}

/* Decode increasing flat seed indices into boxes; with shared != 0 also paint the masks into bytes (for
 * masks that many maps share, applied by a select per unit rather than by zeroing boxes in every map).
 * *err: 0, -1 (allocation failure) or -2 (a seed outside the n_masks masks, or seeds not increasing). */
void *db_plan_new(const double *seeds, int64_t n_seeds, int64_t n_masks, const int64_t *gv, int shared,
                  int *err) {
    plan_t *p = calloc(1, sizeof(plan_t));
    *err = -1;
    if (!p) return NULL;
    read_geom(gv, &p->g);
    p->n_seeds = n_seeds;
    p->n_masks = n_masks;
    p->seeds = malloc(sizeof(seed_t) * (size_t)(n_seeds > 0 ? n_seeds : 1));
    if (!p->seeds) {
        db_plan_free(p);
        return NULL;
    }
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n_seeds > 8192)
    for (int64_t s = 0; s < n_seeds; s++) {
        bad |= s > 0 && !(seeds[s] > seeds[s - 1]);
        decode(&p->g, seeds[s], &p->seeds[s]);
    }
    *err = bad || (n_seeds && (seeds[0] < 0 || p->seeds[n_seeds - 1].mask >= n_masks)) ? -2 : 0;
    const int64_t nu = p->g.n_units;
    if (*err == 0 && shared) {
        p->dropped = calloc((size_t)(n_masks * nu), 1);
        if (!p->dropped) *err = -1;
        for (int64_t s = 0; *err == 0 && s < n_seeds; s++)
            paint(&p->g, &p->seeds[s], p->dropped + p->seeds[s].mask * nu, 1);
    } else if (*err == 0 && n_seeds && nu <= TABLE_MAX_UNITS && p->g.per_map * nu <= TABLE_MAX_BYTES) {
        p->table = calloc((size_t)(p->g.per_map * nu), 1);
        if (!p->table) *err = -1;
        for (int64_t q = 0; *err == 0 && q < p->g.per_map; q++) {
            seed_t b;
            decode(&p->g, (double)q, &b);
            paint(&p->g, &b, p->table + q * nu, 1);
        }
    }
    if (*err != 0) {
        db_plan_free(p);
        return NULL;
    }
    return p;
}

/* Exact number of dropped units over all masks (the union of each mask's boxes); -1 on allocation failure.
 * A mask with one seed drops its box, one with two seeds both boxes less their intersection; masks with
 * three or more seeds are painted into a byte buffer and counted. */
int64_t db_plan_count(void *handle) {
    const plan_t *p = (const plan_t *)handle;
    const seed_t *sd = p->seeds;
    unsigned char *buf = NULL;
    int64_t total = 0, s = 0;
    while (s < p->n_seeds) {
        int64_t e = s + 1;
        while (e < p->n_seeds && sd[e].mask == sd[s].mask) e++;
        if (e - s == 1) {
            total += volume(&sd[s]);
        } else if (e - s == 2) {
            total += volume(&sd[s]) + volume(&sd[s + 1]) - overlap(&sd[s], &sd[s + 1]);
        } else {
            if (!buf && !(buf = calloc((size_t)p->g.n_units, 1))) return -1;
            total += union_size(&p->g, &sd[s], e - s, buf);
        }
        s = e;
    }
    free(buf);
    return total;
}

/* ------------------------------------------------------------------------------------------- applying */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void scale_map(int dtype, const void *src, void *dst, int64_t off, int64_t n, double scale) {
    switch (dtype) {
    case DT_F32: {
        const float *s = (const float *)src + off;
        float *d = (float *)dst + off;
        const float c = (float)scale;
        for (int64_t i = 0; i < n; i++) d[i] = s[i] * c;
        break;
    }
    case DT_F64: {
        const double *s = (const double *)src + off;
        double *d = (double *)dst + off;
        for (int64_t i = 0; i < n; i++) d[i] = s[i] * scale;
        break;
    }
#ifdef __FLT16_MAX__
    case DT_F16: {
        const _Float16 *s = (const _Float16 *)src + off;
        _Float16 *d = (_Float16 *)dst + off;
        const float c = (float)scale;
        for (int64_t i = 0; i < n; i++) d[i] = (_Float16)((float)s[i] * c);
        break;
    }
#endif
    case DT_BF16: {
        const uint16_t *s = (const uint16_t *)src + off;
        uint16_t *d = (uint16_t *)dst + off;
        const float c = (float)scale;
        for (int64_t i = 0; i < n; i++) d[i] = f32_to_bf16(bf16_to_f32(s[i]) * c);
        break;
    }
    }
}

/* dst = dropped ? +0 : src * scale over n units (computed for every unit, then selected: no branch, and
 * +0 whatever src holds at a dropped unit). */
static void select_map(int dtype, const void *src, void *dst, int64_t off, int64_t n, double scale,
                       const unsigned char *dropped) {
    switch (dtype) {
    case DT_F32: {
        const float *s = (const float *)src + off;
        float *d = (float *)dst + off;
        const float c = (float)scale;
        for (int64_t i = 0; i < n; i++) {
            float v = s[i] * c;
            d[i] = dropped[i] ? 0.0f : v;
        }
        break;
    }
    case DT_F64: {
        const double *s = (const double *)src + off;
        double *d = (double *)dst + off;
        for (int64_t i = 0; i < n; i++) {
            double v = s[i] * scale;
            d[i] = dropped[i] ? 0.0 : v;
        }
        break;
    }
#ifdef __FLT16_MAX__
    case DT_F16: {
        const _Float16 *s = (const _Float16 *)src + off;
        _Float16 *d = (_Float16 *)dst + off;
        const float c = (float)scale;
        for (int64_t i = 0; i < n; i++) {
            _Float16 v = (_Float16)((float)s[i] * c);
            d[i] = dropped[i] ? (_Float16)0.0f : v;
        }
        break;
    }
#endif
    case DT_BF16: {
        const uint16_t *s = (const uint16_t *)src + off;
        uint16_t *d = (uint16_t *)dst + off;
        const float c = (float)scale;
        for (int64_t i = 0; i < n; i++) {
            uint16_t v = f32_to_bf16(bf16_to_f32(s[i]) * c);
            d[i] = dropped[i] ? (uint16_t)0 : v;
        }
        break;
    }
    }
}

static const int64_t ELEMENT_SIZE[4] = {4, 8, 2, 2};

typedef struct {
    const plan_t *p;
    const void *src;
    void *dst;
    int dtype;
    int64_t map_lo, map_hi, channels;
    int sharing; /* 0: a mask per map, 1: per sample (shared by the channels), 2: one for the batch */
    double scale;
} job_t;

static inline int64_t mask_of(const job_t *j, int64_t m) {
    return j->sharing == 0 ? m : (j->sharing == 1 ? m / j->channels : 0);
}

/* First seed whose mask is >= mask. */
static int64_t lower_bound(const seed_t *sd, int64_t n, int64_t mask) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sd[mid].mask < mask)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void run_job(const job_t *j) {
    const plan_t *p = j->p;
    const seed_t *sd = p->seeds;
    const int64_t n = p->n_seeds, nu = p->g.n_units, l1 = p->g.len[1], l2 = p->g.len[2];
    const size_t es = (size_t)ELEMENT_SIZE[j->dtype];
    char *dst = (char *)j->dst;
    unsigned char buf[TABLE_MAX_UNITS];
    int64_t m = j->map_lo;
    int64_t s = lower_bound(sd, n, mask_of(j, m));
    while (m < j->map_hi) {
        const int64_t mask = mask_of(j, m);
        while (s < n && sd[s].mask < mask) s++;
        if (s == n || sd[s].mask != mask) {
            /* Maps up to the next mask with seeds have no blocks: scaled in one stretch. */
            int64_t e = j->map_hi;
            if (s < n && j->sharing != 2) {
                int64_t next = j->sharing == 0 ? sd[s].mask : sd[s].mask * j->channels;
                if (next < e) e = next;
            }
            scale_map(j->dtype, j->src, j->dst, m * nu, (e - m) * nu, j->scale);
            m = e;
            continue;
        }
        if (p->dropped) {
            select_map(j->dtype, j->src, j->dst, m * nu, nu, j->scale, p->dropped + mask * nu);
            m++;
            continue;
        }
        if (p->table) {
            /* One seed: its row of the table; several: the union of their rows. */
            const unsigned char *dropped = p->table + (int64_t)sd[s].pos * nu;
            if (s + 1 < n && sd[s + 1].mask == mask) {
                memcpy(buf, dropped, (size_t)nu);
                for (int64_t b = s + 1; b < n && sd[b].mask == mask; b++) {
                    const unsigned char *row = p->table + (int64_t)sd[b].pos * nu;
                    for (int64_t i = 0; i < nu; i++) buf[i] |= row[i];
                }
                dropped = buf;
            }
            select_map(j->dtype, j->src, j->dst, m * nu, nu, j->scale, dropped);
            m++;
            continue;
        }
        int64_t e = s;
        int whole = 0;
        for (; e < n && sd[e].mask == mask; e++) whole |= volume(&sd[e]) == nu;
        char *map = dst + (size_t)(m * nu) * es;
        if (whole) {
            memset(map, 0, (size_t)nu * es);
        } else {
            /* Scaled, then its blocks zeroed while the map is in cache. */
            scale_map(j->dtype, j->src, j->dst, m * nu, nu, j->scale);
            for (int64_t b = s; b < e; b++) {
                const seed_t *q = &sd[b];
                if (q->lo[2] == 0 && q->hi[2] == l2) { /* full rows: one stretch per plane */
                    for (int64_t z = q->lo[0]; z < q->hi[0]; z++)
                        memset(map + (size_t)((z * l1 + q->lo[1]) * l2) * es, 0,
                               (size_t)((q->hi[1] - q->lo[1]) * l2) * es);
                    continue;
                }
                const size_t run = (size_t)(q->hi[2] - q->lo[2]) * es;
                for (int64_t z = q->lo[0]; z < q->hi[0]; z++)
                    for (int64_t y = q->lo[1]; y < q->hi[1]; y++)
                        memset(map + (size_t)((z * l1 + y) * l2 + q->lo[2]) * es, 0, run);
            }
        }
        m++;
    }
}

/* out = src * scale with every unit of every block set to +0, for contiguous (n_maps, *sizes) tensors of
 * one dtype (dst may equal src); map m uses mask m (sharing 0), m / channels (1) or 0 (2). Maps are split
 * into n_threads contiguous ranges, run on OpenMP threads. Returns 0, or -3 on an unsupported dtype or a map count that does not
 * fit the plan. */
int db_plan_apply(void *handle, const void *src, void *dst, int dtype, int64_t n_maps, int64_t channels,
                  int sharing, double scale, int n_threads) {
    const plan_t *p = (const plan_t *)handle;
    if (!db_supports(dtype) || sharing < 0 || sharing > 2 || channels < 1) return -3;
    int64_t n_masks = sharing == 0 ? n_maps : (sharing == 1 ? n_maps / channels : 1);
    if (n_masks != p->n_masks || (sharing == 1 && n_maps % channels)) return -3;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > n_maps) n_threads = (int)(n_maps > 0 ? n_maps : 1);
    job_t base = {p, src, dst, dtype, 0, n_maps, channels, sharing, scale};
#ifdef _OPENMP
    /* torch's OpenMP runtime (the library of the same soname, already loaded by torch), so that the
     * threads are torch's own intra-op threads rather than a second pool competing for the cores. */
#pragma omp parallel num_threads(n_threads)
    {
        job_t j = base;
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        j.map_lo = n_maps * t / nt;
        j.map_hi = n_maps * (t + 1) / nt;
        run_job(&j);
    }
#else
    run_job(&base);
#endif
    return 0;
}

/* 1 when the dtype code is supported by this build. */
int db_supports(int dtype) {
#ifndef __FLT16_MAX__
    if (dtype == DT_F16) return 0;
#endif
    return dtype >= 0 && dtype <= 3;
}

/* 1 when built with OpenMP (the product runs on several threads). */
int db_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
