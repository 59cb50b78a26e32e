/* The product: out = x * scale with the blocks of a finished plan set to +0, on OpenMP threads. */
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>
#if defined(__FLT16_MAX__) && defined(__F16C__) && defined(__AVX__) && defined(__SSE4_1__)
#include <immintrin.h>
#define F16C_LOOPS 1 /* float16 loops eight units at a time (the float32-output select also needs AVX2) */
#endif

#include "kernel.h"

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

/* Per-dtype loops: scale (d = s * c) and select (d = dropped ? +0 : s * c, computed for every unit and then
 * selected, so that a dropped unit is +0 whatever s holds there); T is the input type, U the output type
 * (a half input widened into a float32 output under output_dtype="float32": torch's
 * out.copy_(src).mul_(scale), the widening exact). */
#define ID(v) (v)
#define TO_F16(v) ((_Float16)(v))
#define DEFINE_LOOPS(NAME, T, U, CT, LOAD, STORE)                                                          \
    static void scale_##NAME(const void *src, void *dst, int64_t n, double scale, const unsigned char *dr) { \
        const T *s = (const T *)src;                                                                        \
        U *d = (U *)dst;                                                                                    \
        const CT c = (CT)scale;                                                                             \
        (void)dr;                                                                                           \
        for (int64_t i = 0; i < n; i++) d[i] = STORE(LOAD(s[i]) * c);                                       \
    }                                                                                                       \
    static void select_##NAME(const void *src, void *dst, int64_t n, double scale, const unsigned char *dr) { \
        const T *s = (const T *)src;                                                                        \
        U *d = (U *)dst;                                                                                    \
        const CT c = (CT)scale;                                                                             \
        for (int64_t i = 0; i < n; i++) {                                                                   \
            U v = STORE(LOAD(s[i]) * c);                                                                    \
            d[i] = dr[i] ? (U)0 : v;                                                                        \
        }                                                                                                   \
    }

DEFINE_LOOPS(f32, float, float, float, ID, ID)
DEFINE_LOOPS(f64, double, double, double, ID, ID)
DEFINE_LOOPS(bf16, uint16_t, uint16_t, float, bf16_to_f32, f32_to_bf16)
DEFINE_LOOPS(bf16_f32, uint16_t, float, float, bf16_to_f32, ID)
#ifdef __FLT16_MAX__
DEFINE_LOOPS(f16_scalar, _Float16, _Float16, float, ID, TO_F16)
DEFINE_LOOPS(f16_f32_scalar, _Float16, float, float, ID, ID)
#ifdef F16C_LOOPS
/* The compiler does not vectorise _Float16 conversions: eight units at a time through F16C (the same
 * vcvtph2ps / vcvtps2ph, round to nearest even, that the scalar loops use one unit at a time). */
static inline __m256 f16x8_times(const uint16_t *s, __m256 c) { /* eight float16 units, widened, times c */
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)s)), c);
}
static void scale_f16(const void *src, void *dst, int64_t n, double scale, const unsigned char *dr) {
    const uint16_t *s = (const uint16_t *)src;
    uint16_t *d = (uint16_t *)dst;
    const __m256 c = _mm256_set1_ps((float)scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(f16x8_times(s + i, c), _MM_FROUND_TO_NEAREST_INT));
    scale_f16_scalar(s + i, d + i, n - i, scale, dr);
}
static void select_f16(const void *src, void *dst, int64_t n, double scale, const unsigned char *dr) {
    const uint16_t *s = (const uint16_t *)src;
    uint16_t *d = (uint16_t *)dst;
    const __m256 c = _mm256_set1_ps((float)scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(f16x8_times(s + i, c), _MM_FROUND_TO_NEAREST_INT);
        __m128i dropped = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(dr + i)));
        __m128i keep = _mm_cmpeq_epi16(dropped, _mm_setzero_si128()); /* all ones where kept */
        _mm_storeu_si128((__m128i *)(d + i), _mm_and_si128(h, keep)); /* +0 where dropped */
    }
    select_f16_scalar(s + i, d + i, n - i, scale, dr + i);
}
#if defined(__AVX2__)
static void scale_f16_f32(const void *src, void *dst, int64_t n, double scale, const unsigned char *dr) {
    const uint16_t *s = (const uint16_t *)src;
    float *d = (float *)dst;
    const __m256 c = _mm256_set1_ps((float)scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, f16x8_times(s + i, c));
    scale_f16_f32_scalar(s + i, d + i, n - i, scale, dr);
}
static void select_f16_f32(const void *src, void *dst, int64_t n, double scale, const unsigned char *dr) {
    const uint16_t *s = (const uint16_t *)src;
    float *d = (float *)dst;
    const __m256 c = _mm256_set1_ps((float)scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = f16x8_times(s + i, c);
        __m256i keep = _mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(dr + i))),
                                          _mm256_setzero_si256()); /* all ones where kept */
        _mm256_storeu_ps(d + i, _mm256_and_ps(v, _mm256_castsi256_ps(keep)));
    }
    select_f16_f32_scalar(s + i, d + i, n - i, scale, dr + i);
}
#endif
#endif
#ifndef F16C_LOOPS
#define scale_f16 scale_f16_scalar
#define select_f16 select_f16_scalar
#endif
#if !(defined(F16C_LOOPS) && defined(__AVX2__))
#define scale_f16_f32 scale_f16_f32_scalar
#define select_f16_f32 select_f16_f32_scalar
#endif
#define F16_LOOP(kind) kind##_f16
#define F16_WIDE_LOOP(kind) kind##_f16_f32
#else
#define F16_LOOP(kind) NULL
#define F16_WIDE_LOOP(kind) NULL
#endif

typedef void (*loop_fn)(const void *, void *, int64_t, double, const unsigned char *);
static const loop_fn SCALE[4] = {scale_f32, scale_f64, F16_LOOP(scale), scale_bf16};
static const loop_fn SELECT[4] = {select_f32, select_f64, F16_LOOP(select), select_bf16};
/* Indexed by the input dtype, for a float32 output. */
static const loop_fn WIDE_SCALE[4] = {NULL, NULL, F16_WIDE_LOOP(scale), scale_bf16_f32};
static const loop_fn WIDE_SELECT[4] = {NULL, NULL, F16_WIDE_LOOP(select), select_bf16_f32};
static const int64_t ELEMENT_SIZE[4] = {4, 8, 2, 2};

/* d = dropped ? +0 : d, for elements of es bytes (+0 is all bits zero in every float format). */
#define ZERO_WHERE(T)                                                                                       \
    for (int64_t i = 0; i < n; i++) ((T *)d)[i] = dr[i] ? (T)0 : ((T *)d)[i];
static void zero_where(void *d, int64_t n, const unsigned char *dr, size_t es) {
    if (es == 2) {
        ZERO_WHERE(uint16_t)
    } else if (es == 4) {
        ZERO_WHERE(uint32_t)
    } else {
        ZERO_WHERE(uint64_t)
    }
}

typedef struct {
    const plan_t *p;
    const char *src;
    char *dst;
    int dtype, out_dtype; /* of src and dst: equal, or a half dtype into float32 */
    int64_t map_lo, map_hi, channels;
    int sharing; /* 0: a mask per map, 1: per sample (shared by the channels), 2: one for the batch */
    double scale;
} job_t;

static inline int64_t mask_of(const job_t *j, int64_t m) {
    return j->sharing == 0 ? m : (j->sharing == 1 ? m / j->channels : 0);
}

/* Whether a block of the seeds [s, e) covers the whole map of nu units. */
static inline int covers_map(const seed_t *sd, int64_t s, int64_t e, int64_t nu) {
    int covered = 0;
    for (; s < e; s++) covered |= box_volume(&sd[s]) == nu;
    return covered;
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

/* Zero `bytes` bytes at d with fixed-size stores (constant-size memsets compile to single stores; the last
 * one overlaps the previous where the length is not a multiple): a block row is a few stores, not a call. */
static inline void zero_run(char *d, size_t bytes) {
    if (bytes >= 16) {
        size_t off = 0;
        for (; off + 16 <= bytes; off += 16) memset(d + off, 0, 16);
        if (off < bytes) memset(d + bytes - 16, 0, 16);
    } else if (bytes >= 8) {
        memset(d, 0, 8);
        memset(d + bytes - 8, 0, 8);
    } else if (bytes >= 4) {
        memset(d, 0, 4);
        memset(d + bytes - 4, 0, 4);
    } else {
        for (size_t i = 0; i < bytes; i++) d[i] = 0;
    }
}

/* Zero, in the already scaled map, the blocks of seeds [s, e): row by row (full rows: a plane at once). */
static void zero_blocks(const plan_t *p, char *map, const seed_t *sd, int64_t s, int64_t e, size_t es) {
    const int64_t l1 = p->g.len[1], l2 = p->g.len[2];
    for (int64_t b = s; b < e; b++) {
        const seed_t *q = &sd[b];
        if (q->lo[2] == 0 && q->hi[2] == l2) {
            for (int64_t z = q->lo[0]; z < q->hi[0]; z++)
                zero_run(map + (size_t)((z * l1 + q->lo[1]) * l2) * es, (size_t)((q->hi[1] - q->lo[1]) * l2) * es);
            continue;
        }
        const size_t run = (size_t)(q->hi[2] - q->lo[2]) * es;
        for (int64_t z = q->lo[0]; z < q->hi[0]; z++)
            for (int64_t y = q->lo[1]; y < q->hi[1]; y++) zero_run(map + (size_t)((z * l1 + y) * l2 + q->lo[2]) * es, run);
    }
}

/* Maps [map_lo, map_hi) in chunks of whole maps of about CHUNK_UNITS units: a chunk is scaled in one loop
 * (maps that a block covers are only zeroed) and then the blocks of its other maps are zeroed while it is in
 * cache; a chunk of maps that share a mask is selected in one loop through that mask's tile. */
static void run_job(const job_t *j) {
    const plan_t *p = j->p;
    const seed_t *sd = p->seeds;
    const int64_t n = p->n_seeds, nu = p->g.n_units;
    const size_t ses = (size_t)ELEMENT_SIZE[j->dtype], es = (size_t)ELEMENT_SIZE[j->out_dtype];
    const int wide = j->out_dtype != j->dtype;
    const loop_fn scale_loop = wide ? WIDE_SCALE[j->dtype] : SCALE[j->dtype];
    const loop_fn select_loop = wide ? WIDE_SELECT[j->dtype] : SELECT[j->dtype];
    /* In place with scale 1 the values are left as they are (as the torch path does: x * 1 would quiet
     * signalling NaNs); only the blocks are zeroed. */
    const int product = !(j->src == j->dst && j->scale == 1.0);
    int64_t s = lower_bound(sd, n, mask_of(j, j->map_lo));
    for (int64_t m = j->map_lo; m < j->map_hi;) {
        int64_t e = m + (p->tiles ? p->tile_maps : p->chunk_maps);
        if (e > j->map_hi) e = j->map_hi;
        if (j->sharing == 1 && e > (m / j->channels + 1) * j->channels) e = (m / j->channels + 1) * j->channels;
        const char *src = j->src + (size_t)(m * nu) * ses;
        char *dst = j->dst + (size_t)(m * nu) * es;
        if (p->tiles) {
            const int64_t mask = mask_of(j, m);
            while (s < n && sd[s].mask < mask) s++;
            const unsigned char *tile = s < n && sd[s].mask == mask ? p->tiles + mask * p->tile_maps * nu : NULL;
            if (tile && product)
                select_loop(src, dst, (e - m) * nu, j->scale, tile);
            else if (tile)
                zero_where(dst, (e - m) * nu, tile, es);
            else if (product)
                scale_loop(src, dst, (e - m) * nu, j->scale, NULL);
            m = e;
            continue;
        }
        /* The maps of the chunk are scaled in runs that skip the maps a block covers (those are only zeroed);
         * then the blocks of the other maps with seeds are zeroed while the chunk is in cache. */
        int64_t q, scaled = m; /* maps [m, scaled) are written */
        for (int64_t b = s; p->can_cover && b < n && sd[b].mask < e; b = q) {
            const int64_t map = sd[b].mask;
            q = run_end(sd, n, b);
            if (!covers_map(sd, b, q, nu)) continue;
            if (product && map > scaled)
                scale_loop(src + (size_t)((scaled - m) * nu) * ses, dst + (size_t)((scaled - m) * nu) * es,
                           (map - scaled) * nu, j->scale, NULL);
            memset(dst + (size_t)((map - m) * nu) * es, 0, (size_t)nu * es);
            scaled = map + 1;
        }
        if (product && e > scaled)
            scale_loop(src + (size_t)((scaled - m) * nu) * ses, dst + (size_t)((scaled - m) * nu) * es,
                       (e - scaled) * nu, j->scale, NULL);
        for (; s < n && sd[s].mask < e; s = q) {
            q = run_end(sd, n, s);
            if (!(p->can_cover && covers_map(sd, s, q, nu)))
                zero_blocks(p, j->dst + (size_t)(sd[s].mask * nu) * es, sd, s, q, es);
        }
        m = e;
    }
}

/* out = src * scale with every unit of every block set to +0, for contiguous (n_maps, *sizes) tensors of
 * one dtype (dst may equal src), or a float16 / bfloat16 src into a float32 dst (not in place); map m uses
 * mask m (sharing 0), m / channels (1) or 0 (2). Maps are split into n_threads contiguous ranges, run on
 * OpenMP threads. Returns 0, or -3 on an unsupported pair of dtypes or a map count that does not fit the
 * plan. */
int db_plan_apply(void *handle, const void *src, void *dst, int dtype, int out_dtype, int64_t n_maps,
                  int64_t channels, int sharing, double scale, int n_threads) {
    const plan_t *p = (const plan_t *)handle;
    if (!db_supports(dtype) || sharing < 0 || sharing > 2 || channels < 1) return -3;
    if (out_dtype != dtype && !(out_dtype == DT_F32 && (dtype == DT_F16 || dtype == DT_BF16))) return -3;
    if (out_dtype != dtype && src == dst) return -3;
    int64_t n_masks = sharing == 0 ? n_maps : (sharing == 1 ? n_maps / channels : 1);
    if (n_masks != p->n_masks || (sharing == 1 && n_maps % channels)) return -3;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > n_maps) n_threads = (int)(n_maps > 0 ? n_maps : 1);
    job_t base = {p, (const char *)src, (char *)dst, dtype, out_dtype, 0, n_maps, channels, sharing, scale};
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
