/* Fused CPU kernel of the reference DropBlock: the fired seeds from the sampler's log-uniforms, exact
 * dropped-unit counts, and one pass of out = x * scale with the blocks set to +0, for contiguous
 * (N, C, *sizes) tensors. plan.c builds and counts a plan of fired seeds; apply.c applies it.
 *
 * Loaded through ctypes by dropblock/_native.py, which compiles it on first use; the pure-torch path in
 * dropblock/_plan.py computes the same numbers and is the fallback. Both turn the same uniforms into the
 * same fired seeds (flat float64 indices into (n_masks, *seed_shape), increasing) with the same IEEE
 * operations, so for a given generator state both give the same output, bit for bit (NaN payloads aside).
 *
 * Geometry (int64 g[16]): g[0] = per_map (seed positions per mask), g[1] = n_units (units per map), then for
 * 3 axes (2D maps get a leading axis of length 1) g[2 + 4a ..] = length, block, n_seeds, offset. The seed at
 * coordinate s of an axis drops the units [s - offset, s - offset + block) clipped to [0, length)
 * (dropblock/law.py, AxisGeometry).
 *
 * Scaling follows torch's product of a tensor with a Python float: float32 computes x * (float)scale;
 * float64 x * scale; float16 and bfloat16 convert x to float32, multiply by (float)scale and round to
 * nearest even (bfloat16 NaN -> 0x7FC0, as c10::BFloat16), or keep the float32 product where the output is
 * float32 (profiles with output_dtype="float32": torch's out.copy_(x).mul_(scale)).
 */
#ifndef DROPBLOCK_KERNEL_H
#define DROPBLOCK_KERNEL_H

#include <stdint.h>

enum { DT_F32 = 0, DT_F64 = 1, DT_F16 = 2, DT_BF16 = 3 };

typedef struct {
    int64_t per_map, n_units;
    int64_t len[3], blk[3], nseed[3], off[3];
} geom_t;

/* A fired seed: its mask and the clipped box [lo, hi) of its block on each axis. */
typedef struct {
    int64_t mask;
    int32_t lo[3], hi[3];
} seed_t;


/* Units of a seed's box. */
static inline int64_t box_volume(const seed_t *b) {
    return (int64_t)(b->hi[0] - b->lo[0]) * (b->hi[1] - b->lo[1]) * (b->hi[2] - b->lo[2]);
}

/* End of the run of seeds of sd[s]'s mask (seeds are sorted by mask). */
static inline int64_t run_end(const seed_t *sd, int64_t n, int64_t s) {
    int64_t q = s + 1;
    while (q < n && sd[q].mask == sd[s].mask) q++;
    return q;
}

/* A plan: the fired seeds of one draw, decoded, and the byte masks the product reads. */
typedef struct {
    geom_t g;
    int64_t n_masks;
    int64_t n_seeds, capacity;
    double *flat;         /* the seeds' flat indices, increasing (as drawn) */
    seed_t *seeds;        /* decoded, in the same order (capacity as flat) */
    int64_t n_decoded;    /* seeds [0, n_decoded) are decoded and counted */
    int64_t terms;        /* their volumes less the overlaps of successive seeds of one mask */
    int triple;           /* some mask has three or more of them */
    int64_t chunk_maps;   /* maps per chunk of the product (about CHUNK_UNITS units) */
    int can_cover;        /* a block can cover a whole map (every block side reaches its axis' length) */
    unsigned char *tiles; /* masks shared by maps: (n_masks, tile_maps, n_units) bytes, each mask repeated */
    int64_t tile_maps;
} plan_t;

/* Units per chunk of the product: small enough to stay in the first-level cache while its blocks are
 * zeroed, large enough that the loop overheads do not count. */
#define CHUNK_UNITS 4096
/* Bound on the bytes of the tiles of shared masks (fewer repeats per tile beyond it). */
#define TILES_MAX_BYTES (16 << 20)

int db_supports(int dtype);

#endif
