/* Direct convolution on channel-blocked tensors (NCHW[B]c, B = 8 or 16 channels per block).
 *
 *   x  (N, Cb, Hp, Wp, bi)           input, already zero-padded spatially (the caller pads); bi = B,
 *                                    or any bi for an input of fewer channels than a block: bi = 1 is
 *                                    plain NCHW (a network's RGB stem reads its input unreordered)
 *   w  (Ob, Cb, kh, kw, bi, B)       weight, blocked once at compile time (zero rows/columns where
 *                                    the channel counts are not multiples of the blocks)
 *   b  (Ob * B)                      bias
 *   r  (N, Ob, Ho, Wo, B) or NULL    residual added before the activation
 *   y  (N, Ob, Ho, Wo, B)            y = act(conv(x, w) + b + r), act = relu or identity
 *
 * One work item is one output row (n, ob, oh) -- or (n, pair of output blocks, oh) for the two-block
 * kernel; items [r0, r1) are what the compiler's thread pool (fused_pool.c) hands each thread.
 * Items run in (n, ob, oh) order (one output block's weight slice stays in cache over the rows).
 * Register blocking: RW output pixels x B output channels live in RW vector accumulators; for each
 * input channel the kernel loads one weight vector (B output channels) and broadcasts one input value
 * per pixel, so every load feeds RW fused multiply-adds. The two-block kernel keeps 2 x RW
 * accumulators, so each broadcast feeds two FMAs. A 1x1 convolution is the same loop with
 * kh = kw = 1. GCC vector extensions: -march=native gives AVX-512.
 *
 * Compile time is the constraint on specialisation: every (RW, stride, input block) combination is
 * a fully unrolled copy of the loop (the previous set of 14 widths x 7 forms x 4 types took 1m46s
 * to build; this set, 6 s). So only float32 block 16 -- what the layout pass emits -- gets constant strides and the
 * two-block kernel; the other types run one generic form. A row is register blocks of RW_MAX pixels,
 * then the remainder as one block of 7 (ResNet's last stage) or pieces of 8, 4, 2 and 1.
 * maxpool_nchwc: max pooling on the same layout, so a pooling layer between blocked convolutions
 * needs no reorder. Functions exist for float (f32) and double (f64), block 8 and 16 (_b8 / _b16). */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    long N, Cb, Hp, Wp, Ob, kh, kw, sh, sw, dh, dw, Ho, Wo, relu, bi;
} nchwc_geo;

typedef struct {
    long N, Cb, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
} pool_geo;

#define RW_MAX 14   /* pixels per register block: 14 divides ResNet's widths 112, 56, 28, 14 */

/* max(m, v) per lane, NaN if either is NaN (np.maximum's rule). The portable form compares into a
 * mask; where the ISA has a vector max, that is faster: x86's max returns its second operand when
 * either is NaN, so exactly one of the two orders is NaN then, and the OR of their bits keeps it
 * (equal values OR to themselves). The mask form ran max pooling 3.5x slower on Zen 5 (the mask
 * compares' throughput bounded it). */
#define NANMAX_MASK(VT, IVT, m, v) \
    ({ IVT t_ = ((v) > (m)) | ((v) != (v)); (VT)(((IVT)(v) & t_) | ((IVT)(m) & ~t_)); })
#if defined(__AVX512F__)
#include <immintrin.h>
#define NANMAX_f32_b16(VT, IVT, m, v) \
    ((VT)((IVT)_mm512_max_ps((__m512)(m), (__m512)(v)) | (IVT)_mm512_max_ps((__m512)(v), (__m512)(m))))
#define NANMAX_f64_b8(VT, IVT, m, v) \
    ((VT)((IVT)_mm512_max_pd((__m512d)(m), (__m512d)(v)) | (IVT)_mm512_max_pd((__m512d)(v), (__m512d)(m))))
#else
#define NANMAX_f32_b16 NANMAX_MASK
#define NANMAX_f64_b8 NANMAX_MASK
#endif
#define NANMAX_f32_b8 NANMAX_MASK
#define NANMAX_f64_b16 NANMAX_MASK

/* one output row as register blocks: RW_MAX pixels at a time, then the remainder as one block of 7
 * or pieces of 8, 4, 2, 1; FN(args..., ow, rw) computes pixels [ow, ow + rw) */
#define ROW_BLOCKS(FN, ...)                                                                             \
    long ow = 0;                                                                                        \
    for (; ow + RW_MAX <= g->Wo; ow += RW_MAX) FN(__VA_ARGS__, ow, RW_MAX);                             \
    long rest = g->Wo - ow;                                                                             \
    if (rest == 7) { FN(__VA_ARGS__, ow, 7); return; }                                                  \
    if (rest >= 8) { FN(__VA_ARGS__, ow, 8); ow += 8; rest -= 8; }                                      \
    if (rest >= 4) { FN(__VA_ARGS__, ow, 4); ow += 4; rest -= 4; }                                      \
    if (rest >= 2) { FN(__VA_ARGS__, ow, 2); ow += 2; rest -= 2; }                                      \
    if (rest >= 1) FN(__VA_ARGS__, ow, 1);

/* the types, the one-block register block and row, max pooling: for every type */
#define CONV_NCHWC_BASE(T, IT, B, SFX)                                                                  \
typedef T vec_##SFX __attribute__((vector_size(B * sizeof(T)), aligned(sizeof(T))));                    \
typedef IT ivec_##SFX __attribute__((vector_size(B * sizeof(T))));   /* comparison masks */             \
static inline vec_##SFX ld_##SFX(const T *p) { vec_##SFX v; memcpy(&v, p, sizeof v); return v; }        \
static inline void st_##SFX(T *p, vec_##SFX v) { memcpy(p, &v, sizeof v); }                             \
static inline vec_##SFX nanmax_##SFX(vec_##SFX m, vec_##SFX v) {                                        \
    return NANMAX_##SFX(vec_##SFX, ivec_##SFX, m, v);                                                   \
}                                                                                                       \
                                                                                                        \
/* RW output pixels (n, ob, oh, ow0 .. ow0 + RW - 1); RW, SW (width stride) and BI (input block) are    \
 * constants after inlining, 0 = read SW / BI from the geometry */                                      \
static inline __attribute__((always_inline)) void pixels_##SFX(                                         \
        const T *restrict xn, const T *restrict wob, const T *restrict bias, const T *restrict rrow,    \
        T *restrict yrow, const nchwc_geo *g, long oh, const int SW, const int BI, long ow0,            \
        const int RW) {                                                                                 \
    vec_##SFX acc[RW_MAX];                                                                              \
    vec_##SFX bv = ld_##SFX(bias);                                                                      \
    _Pragma("GCC unroll 14") for (int r = 0; r < RW; r++) acc[r] = bv;                                  \
    /* input step between neighbouring output pixels: a constant for stride 1 and 2, so the RW          \
     * broadcasts are one base register plus fixed offsets (fewer live pointers, no spills) */          \
    const long bi = BI ? BI : g->bi;                                                                    \
    const long xs = (SW ? SW : g->sw) * bi;                                                             \
    for (long cb = 0; cb < g->Cb; cb++) {                                                               \
        for (long ky = 0; ky < g->kh; ky++) {                                                           \
            const T *xr = xn + ((cb * g->Hp + oh * g->sh + ky * g->dh) * g->Wp + ow0 * g->sw) * bi;     \
            const T *wk = wob + ((cb * g->kh + ky) * g->kw) * bi * B;                                   \
            for (long kx = 0; kx < g->kw; kx++, wk += bi * B) {                                         \
                const T *xp = xr + kx * g->dw * bi;                                                     \
                for (int ci = 0; ci < bi; ci++) {                                                       \
                    vec_##SFX wv = ld_##SFX(wk + ci * B);                                               \
                    _Pragma("GCC unroll 14") for (int r = 0; r < RW; r++)                               \
                        acc[r] += xp[r * xs + ci] * wv;                                                 \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
    _Pragma("GCC unroll 14") for (int r = 0; r < RW; r++) {                                             \
        vec_##SFX o = acc[r];                                                                           \
        if (rrow) o += ld_##SFX(rrow + (ow0 + r) * B);                                                  \
        if (g->relu)                                                                                    \
            for (int j = 0; j < B; j++) o[j] = o[j] < 0 ? 0 : o[j];  /* NaN stays NaN, as np.maximum */ \
        st_##SFX(yrow + (ow0 + r) * B, o);                                                              \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
static inline __attribute__((always_inline)) void row_##SFX(                                            \
        const T *xn, const T *wob, const T *bp, const T *rrow, T *yrow, const nchwc_geo *g, long oh,    \
        const int SW, const int BI) {                                                                   \
    ROW_BLOCKS(pixels_##SFX, xn, wob, bp, rrow, yrow, g, oh, SW, BI)                                    \
}                                                                                                       \
                                                                                                        \
/* max pooling on the blocked layout: y (N, Cb, Ho, Wo, B) from x (N, Cb, H, W, B), items (n, cb, oh);  \
 * window taps outside the input are skipped (torch's -inf padding); NaN propagates as in np.maximum.   \
 * A pool task: argv = {x, y, geo} */                                                                   \
void maxpool_nchwc_task_##SFX(void **a, long r0, long r1) {                                             \
    const T *x = a[0];                                                                                  \
    T *y = a[1];                                                                                        \
    const pool_geo *g = a[2];                                                                           \
    const vec_##SFX zero = {0};                                                                         \
    const vec_##SFX neg_inf = zero - INFINITY;                                                          \
    const int k3 = g->kh == 3 && g->kw == 3 && g->dh == 1 && g->dw == 1;                                \
    for (long it = r0; it < r1; it++) {                                                                 \
        long oh = it % g->Ho, ncb = it / g->Ho;                                                         \
        const T *xc = x + ncb * g->H * g->W * B;                                                        \
        T *yr = y + it * g->Wo * B;                                                                     \
        long ih0 = oh * g->sh - g->ph;                                                                  \
        for (long ow = 0; ow < g->Wo; ow++) {                                                           \
            vec_##SFX m = neg_inf;                                                                      \
            long iw0 = ow * g->sw - g->pw;                                                              \
            if (k3 && iw0 >= 0 && iw0 + 2 < g->W && ih0 >= 0 && ih0 + 2 < g->H) {                       \
                /* a 3x3 window inside the input (ResNet's pool): unrolled, a tree of maxima */         \
                const T *p = xc + (ih0 * g->W + iw0) * B;                                               \
                vec_##SFX r[3];                                                                         \
                for (int ky = 0; ky < 3; ky++, p += g->W * B)                                           \
                    r[ky] = nanmax_##SFX(nanmax_##SFX(ld_##SFX(p), ld_##SFX(p + B)), ld_##SFX(p + 2 * B)); \
                m = nanmax_##SFX(nanmax_##SFX(r[0], r[1]), r[2]);                                       \
            } else {                                                                                    \
                for (long ky = 0; ky < g->kh; ky++) {                                                   \
                    long ih = ih0 + ky * g->dh;                                                         \
                    if (ih < 0 || ih >= g->H) continue;                                                 \
                    const T *xr = xc + ih * g->W * B;                                                   \
                    for (long kx = 0; kx < g->kw; kx++) {                                               \
                        long iw = iw0 + kx * g->dw;                                                     \
                        if (iw >= 0 && iw < g->W) m = nanmax_##SFX(m, ld_##SFX(xr + iw * B));            \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
            st_##SFX(yr + ow * B, m);                                                                   \
        }                                                                                               \
    }                                                                                                   \
}

/* the one-block kernel over items (n, ob, oh) in [r0, r1): argv = {x, w, bias, res, y, geo} */
#define CONV_NCHWC_ONE(T, B, SFX, DISPATCH)                                                             \
void conv_nchwc_task_##SFX(void **a, long r0, long r1) {                                                \
    const T *x = a[0], *w = a[1], *bias = a[2], *res = a[3];                                            \
    T *y = a[4];                                                                                        \
    const nchwc_geo *g = a[5];                                                                          \
    const long wsize = g->Cb * g->kh * g->kw * g->bi * B;                                               \
    for (long it = r0; it < r1; it++) {                                                                 \
        long oh = it % g->Ho, t = it / g->Ho, ob = t % g->Ob, n = t / g->Ob;                            \
        const T *xn = x + n * g->Cb * g->Hp * g->Wp * g->bi;                                            \
        const T *wob = w + ob * wsize;                                                                  \
        long off = ((n * g->Ob + ob) * g->Ho + oh) * g->Wo * B;                                         \
        const T *rrow = res ? res + off : 0;                                                            \
        T *yrow = y + off;                                                                              \
        const T *bp = bias + ob * B;                                                                    \
        DISPATCH(SFX, B)                                                                                \
    }                                                                                                   \
}

/* generic types: the stride and input block read from the geometry */
#define DISPATCH_GENERIC(SFX, B) rowgen_##SFX(xn, wob, bp, rrow, yrow, g, oh);
/* float32 block 16: constant strides 1 and 2 with bi = B (the RW broadcasts become one base register
 * plus fixed offsets: 1.5-2.5x faster than a run-time stride) */
#define DISPATCH_FAST(SFX, B)                                                                           \
        if (g->bi == B && g->sw == 1) row1_##SFX(xn, wob, bp, rrow, yrow, g, oh);                       \
        else if (g->bi == B && g->sw == 2) row2_##SFX(xn, wob, bp, rrow, yrow, g, oh);                  \
        else rowgen_##SFX(xn, wob, bp, rrow, yrow, g, oh);

#define ROW_FORM(T, SFX, NAME, SW, BI)                                                                  \
static __attribute__((noinline)) void NAME##_##SFX(const T *xn, const T *wob, const T *bp,             \
                         const T *rrow, T *yrow,                                                        \
                         const nchwc_geo *g, long oh) {                                                 \
    row_##SFX(xn, wob, bp, rrow, yrow, g, oh, SW, BI);                                                  \
}

#define PAIR_FORM(T, SFX, NAME, SW, BI)                                                                 \
static __attribute__((noinline)) void NAME##_##SFX(const T *xn, const T *w0, long wsize, const T *bp,   \
        const T *r0, const T *r1, T *y0, T *y1, const nchwc_geo *g, long oh) {                          \
    row_pair_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, SW, BI);                                   \
}

#define CONV_NCHWC_GENERIC(T, IT, B, SFX)                                                               \
CONV_NCHWC_BASE(T, IT, B, SFX)                                                                          \
ROW_FORM(T, SFX, rowgen, 0, 0)                                                                          \
CONV_NCHWC_ONE(T, B, SFX, DISPATCH_GENERIC)

/* float32 block 16 (what the layout pass emits): constant strides and the two-block kernel */
#define CONV_NCHWC_FAST(T, IT, B, SFX)                                                                  \
CONV_NCHWC_BASE(T, IT, B, SFX)                                                                          \
ROW_FORM(T, SFX, rowgen, 0, 0) ROW_FORM(T, SFX, row1, 1, B) ROW_FORM(T, SFX, row2, 2, B)                \
CONV_NCHWC_ONE(T, B, SFX, DISPATCH_FAST)                                                                \
                                                                                                        \
/* two output blocks (ob, ob + 1) at once: 2 x RW accumulators, each broadcast input value feeds two    \
 * FMAs (one weight vector per block); SW and BI constants (BI = B, or 1 for planar NCHW input) */      \
static inline __attribute__((always_inline)) void pixels2_##SFX(                                        \
        const T *restrict xn, const T *restrict w0, long wsize, const T *restrict bias,                 \
        const T *restrict r0, const T *restrict r1, T *restrict y0, T *restrict y1, const nchwc_geo *g, \
        long oh, const int SW, const int BI, long ow0, const int RW) {                                  \
    vec_##SFX acc0[RW_MAX], acc1[RW_MAX];                                                               \
    vec_##SFX bv0 = ld_##SFX(bias), bv1 = ld_##SFX(bias + B);                                           \
    _Pragma("GCC unroll 14") for (int r = 0; r < RW; r++) { acc0[r] = bv0; acc1[r] = bv1; }             \
    const long xs = SW * BI;                                                                            \
    const T *w1 = w0 + wsize;                                                                           \
    for (long cb = 0; cb < g->Cb; cb++) {                                                               \
        for (long ky = 0; ky < g->kh; ky++) {                                                           \
            const T *xr = xn + ((cb * g->Hp + oh * g->sh + ky * g->dh) * g->Wp + ow0 * SW) * BI;        \
            long wo = ((cb * g->kh + ky) * g->kw) * BI * B;                                             \
            for (long kx = 0; kx < g->kw; kx++, wo += BI * B) {                                         \
                const T *xp = xr + kx * g->dw * BI;                                                     \
                for (int ci = 0; ci < BI; ci++) {                                                       \
                    vec_##SFX wv0 = ld_##SFX(w0 + wo + ci * B), wv1 = ld_##SFX(w1 + wo + ci * B);       \
                    _Pragma("GCC unroll 14") for (int r = 0; r < RW; r++) {                             \
                        T xv = xp[r * xs + ci];                                                         \
                        acc0[r] += xv * wv0;                                                            \
                        acc1[r] += xv * wv1;                                                            \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
    _Pragma("GCC unroll 14") for (int r = 0; r < RW; r++) {                                             \
        vec_##SFX o0 = acc0[r], o1 = acc1[r];                                                           \
        if (r0) { o0 += ld_##SFX(r0 + (ow0 + r) * B); o1 += ld_##SFX(r1 + (ow0 + r) * B); }             \
        if (g->relu)                                                                                    \
            for (int j = 0; j < B; j++) { o0[j] = o0[j] < 0 ? 0 : o0[j]; o1[j] = o1[j] < 0 ? 0 : o1[j]; }\
        st_##SFX(y0 + (ow0 + r) * B, o0);                                                               \
        st_##SFX(y1 + (ow0 + r) * B, o1);                                                               \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
static inline __attribute__((always_inline)) void row_pair_##SFX(                                       \
        const T *xn, const T *w0, long wsize, const T *bp, const T *r0, const T *r1, T *y0, T *y1,      \
        const nchwc_geo *g, long oh, const int SW, const int BI) {                                      \
    ROW_BLOCKS(pixels2_##SFX, xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, SW, BI)                         \
}                                                                                                       \
/* one function per form: compiled alone, each keeps its accumulators in registers (inlined into one    \
 * dispatcher, the forms interfered: the 7-wide rows of ResNet's last stage ran at half speed) */       \
PAIR_FORM(T, SFX, pair_s1, 1, B) PAIR_FORM(T, SFX, pair_s2, 2, B)                                       \
PAIR_FORM(T, SFX, pair_p1, 1, 1) PAIR_FORM(T, SFX, pair_p2, 2, 1)                                       \
                                                                                                        \
                                                                                                        \
/* output rows (n, 2 * obp, oh) and (n, 2 * obp + 1, oh), items (n, obp, oh) in [i0, i1); Ob even,      \
 * bi = B or 1, width stride 1 or 2 -- ResNet's stem, 3x3 and 1x1 layers. On the 2-core test machine    \
 * this is the faster form: a broadcast feeds two FMAs instead of one. argv as conv_nchwc_task. */      \
void conv_nchwc_pair_##SFX(void **a, long i0, long i1) {                                                \
    const T *x = a[0], *w = a[1], *bias = a[2], *res = a[3];                                            \
    T *y = a[4];                                                                                        \
    const nchwc_geo *g = a[5];                                                                          \
    const long wsize = g->Cb * g->kh * g->kw * g->bi * B, Obp = g->Ob / 2;                              \
    for (long it = i0; it < i1; it++) {                                                                 \
        long oh = it % g->Ho, t = it / g->Ho, obp = t % Obp, n = t / Obp, ob = 2 * obp;                 \
        const T *xn = x + n * g->Cb * g->Hp * g->Wp * g->bi, *w0 = w + ob * wsize, *bp = bias + ob * B; \
        long off0 = ((n * g->Ob + ob) * g->Ho + oh) * g->Wo * B, off1 = off0 + g->Ho * g->Wo * B;       \
        const T *r0 = res ? res + off0 : 0, *r1 = res ? res + off1 : 0;                                 \
        T *y0 = y + off0, *y1 = y + off1;                                                               \
        if (g->bi == 1) {     /* planar input (NCHW as blocks of one channel) */                        \
            if (g->sw == 1) pair_p1_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh);                   \
            else pair_p2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh);                              \
        } else if (g->sw == 1) pair_s1_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh);                 \
        else pair_s2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh);                                  \
    }                                                                                                   \
}

CONV_NCHWC_FAST(float, int32_t, 16, f32_b16)
CONV_NCHWC_GENERIC(float, int32_t, 8, f32_b8)
CONV_NCHWC_GENERIC(double, int64_t, 8, f64_b8)
CONV_NCHWC_GENERIC(double, int64_t, 16, f64_b16)

/* Reorders between NCHW and NCHW[b]c, for items (n, cb) in [r0, r1) (rows of H * W pixels):
 *   nchwc_to    x (N, C, HW) -> y (N, Cb, HW, b), channels c >= C of the last block zero
 *   nchwc_from  y (N, Cb, HW, b) -> x (N, C, HW), the padded channels dropped
 * Both read or write b sequential streams of one block and the interleaved row in cache-sized pieces
 * (NumPy's strided transpose copy measured ~3x slower and runs on one core). */
#define REORDER(T, SFX)                                                                                 \
void nchwc_to_##SFX(const T *x, T *y, long C, long HW, long b, long Cb, long r0, long r1) {             \
    for (long it = r0; it < r1; it++) {                                                                 \
        long n = it / Cb, cb = it % Cb, nc = C - cb * b < b ? C - cb * b : b;                           \
        const T *src = x + (n * C + cb * b) * HW;                                                       \
        T *dst = y + it * HW * b;                                                                       \
        for (long p0 = 0; p0 < HW; p0 += 256) {                                                         \
            long p1 = p0 + 256 < HW ? p0 + 256 : HW;                                                    \
            for (long p = p0; p < p1; p++) {                                                            \
                for (long c = 0; c < nc; c++) dst[p * b + c] = src[c * HW + p];                         \
                for (long c = nc; c < b; c++) dst[p * b + c] = 0;                                       \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
}                                                                                                       \
void nchwc_from_##SFX(const T *y, T *x, long C, long HW, long b, long Cb, long r0, long r1) {           \
    for (long it = r0; it < r1; it++) {                                                                 \
        long n = it / Cb, cb = it % Cb, nc = C - cb * b < b ? C - cb * b : b;                           \
        const T *src = y + it * HW * b;                                                                 \
        T *dst = x + (n * C + cb * b) * HW;                                                             \
        for (long p0 = 0; p0 < HW; p0 += 256) {                                                         \
            long p1 = p0 + 256 < HW ? p0 + 256 : HW;                                                    \
            for (long c = 0; c < nc; c++)                                                               \
                for (long p = p0; p < p1; p++) dst[c * HW + p] = src[p * b + c];                        \
        }                                                                                               \
    }                                                                                                   \
}

/* Zero-padded copy of x (N, Cb, H, W, b) into xp (N, Cb, H + pt + pb, W + pl + pr, b), items = rows
 * (n, cb, padded row) in [r0, r1), a pool task: argv = {x, xp, dims (long: H, W, b, pt, pb, pl, pr)}.
 * Done in NumPy it was one core's serial ~50-100 us per layer between two parallel convolutions. */
#define PAD(T, SFX)                                                                                     \
void nchwc_pad_##SFX(void **a, long r0, long r1) {                                                      \
    const T *x = a[0];                                                                                  \
    T *xp = a[1];                                                                                       \
    const long *d = a[2];                                                                               \
    long H = d[0], W = d[1], b = d[2], pt = d[3], pb = d[4], pl = d[5], pr = d[6];                      \
    long Hp = H + pt + pb, Wp = W + pl + pr;                                                            \
    for (long it = r0; it < r1; it++) {                                                                 \
        long r = it % Hp, plane = it / Hp, ih = r - pt;                                                 \
        T *dst = xp + it * Wp * b;                                                                      \
        if (ih < 0 || ih >= H) { memset(dst, 0, sizeof(T) * Wp * b); continue; }                        \
        memset(dst, 0, sizeof(T) * pl * b);                                                             \
        memcpy(dst + pl * b, x + (plane * H + ih) * W * b, sizeof(T) * W * b);                          \
        memset(dst + (pl + W) * b, 0, sizeof(T) * pr * b);                                              \
    }                                                                                                   \
}

REORDER(float, f32)
REORDER(double, f64)

/* the reorders as pool tasks: argv = {src, dst, dims (long: C, HW, b, Cb)} */
#define REORDER_TASKS(T, SFX)                                                                           \
void nchwc_to_task_##SFX(void **a, long r0, long r1) {                                                  \
    const long *d = a[2];                                                                               \
    nchwc_to_##SFX(a[0], a[1], d[0], d[1], d[2], d[3], r0, r1);                                         \
}                                                                                                       \
void nchwc_from_task_##SFX(void **a, long r0, long r1) {                                                \
    const long *d = a[2];                                                                               \
    nchwc_from_##SFX(a[0], a[1], d[0], d[1], d[2], d[3], r0, r1);                                       \
}
REORDER_TASKS(float, f32)
REORDER_TASKS(double, f64)
PAD(float, f32)
PAD(double, f64)
