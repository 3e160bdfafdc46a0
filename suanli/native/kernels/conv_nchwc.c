/* Direct convolution on channel-blocked tensors (NCHW[B]c, B = 8 or 16 channels per block).
 *
 *   x  (N, Cb, Hp, Wp, bi)           input, already zero-padded spatially (the caller pads); bi = B,
 *                                    or any bi for an input whose channels all fit one block (bi = C,
 *                                    i.e. NHWC: a network's first layer with 3 channels)
 *   w  (Ob, Cb, kh, kw, bi, B)       weight, blocked once at compile time (zero rows/columns where
 *                                    the channel counts are not multiples of the blocks)
 *   b  (Ob * B)                      bias
 *   r  (N, Ob, Ho, Wo, B) or NULL    residual added before the activation
 *   y  (N, Ob, Ho, Wo, B)            y = act(conv(x, w) + b + r), act = relu or identity
 *
 * One work item is one output row (n, ob, oh); items [r0, r1) let Python threads split a call
 * (ctypes releases the GIL; the kernel itself is single-threaded, see suanli/native/__init__.py).
 * Items run in (n, ob, oh) order (one output block's weight slice stays in cache over the rows;
 * the (n, oh, ob) order measured the same on ResNet-18's layers, so the simpler one stays).
 * Register blocking: RW output pixels x B output channels live in RW vector accumulators; for each
 * input channel the kernel loads one weight vector (B output channels) and broadcasts one input value
 * per pixel, so every load feeds RW fused multiply-adds. A 1x1 convolution is the same loop with
 * kh = kw = 1 (a GEMM over a block of pixels). GCC vector extensions: -march=native gives AVX-512.
 * maxpool_nchwc: max pooling on the same layout, so a pooling layer between blocked convolutions
 * needs no reorder. Each function exists for float (f32) and double (f64), block 8 and 16 (suffix
 * _b8 / _b16). */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    long N, Cb, Hp, Wp, Ob, kh, kw, sh, sw, dh, dw, Ho, Wo, relu, bi;
} nchwc_geo;

typedef struct {
    long N, Cb, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
} pool_geo;

#define RW_MAX 14   /* pixels per register block: 14 divides ResNet's widths 56, 28, 14 */

/* One output row, as register blocks of RW_MAX pixels and a remainder. Variants (NAME: stride along
 * the width as a constant, input block BIC; 0 = read from the geometry): 1 and 2 with bi = B (the
 * constant stride turns the RW broadcasts into one base register plus fixed offsets: 1.5-2.5x faster
 * than a run-time stride), 0 any stride, rgb = stride 2 over 3 input channels (an image stem, 1.4x
 * faster than g), g any input block. */
#define ROW_SW_0 0
#define ROW_SW_1 1
#define ROW_SW_2 2
#define ROW_SW_g 0
#define ROW_SW_rgb 2
#define ROW_SW(NAME) ROW_SW_##NAME
#define ROW(T, SFX, NAME, BIC)                                                                          \
static void row##NAME##_##SFX(const T *xn, const T *wob, const T *bp, const T *rrow, T *yrow,           \
                             const nchwc_geo *g, long oh) {                                             \
        long ow = 0;                                                                                    \
        for (; ow + RW_MAX <= g->Wo; ow += RW_MAX)                                                      \
            pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, RW_MAX, ROW_SW(NAME), BIC);                \
        switch (g->Wo - ow) {                  /* the remainder, still register-blocked */              \
        case 13: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 13, ROW_SW(NAME), BIC); break;        \
        case 12: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 12, ROW_SW(NAME), BIC); break;        \
        case 11: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 11, ROW_SW(NAME), BIC); break;        \
        case 10: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 10, ROW_SW(NAME), BIC); break;        \
        case 9: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 9, ROW_SW(NAME), BIC); break;          \
        case 8: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 8, ROW_SW(NAME), BIC); break;          \
        case 7: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 7, ROW_SW(NAME), BIC); break;          \
        case 6: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 6, ROW_SW(NAME), BIC); break;          \
        case 5: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 5, ROW_SW(NAME), BIC); break;          \
        case 4: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 4, ROW_SW(NAME), BIC); break;          \
        case 3: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 3, ROW_SW(NAME), BIC); break;          \
        case 2: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 2, ROW_SW(NAME), BIC); break;          \
        case 1: pixels_##SFX(xn, wob, bp, rrow, yrow, g, oh, ow, 1, ROW_SW(NAME), BIC); break;          \
        default: break;                                                                                 \
        }                                                                                               \
}

#define CONV_NCHWC(T, IT, B, SFX)                                                                       \
typedef T vec_##SFX __attribute__((vector_size(B * sizeof(T)), aligned(sizeof(T))));                    \
typedef IT ivec_##SFX __attribute__((vector_size(B * sizeof(T))));   /* comparison masks */             \
static inline vec_##SFX ld_##SFX(const T *p) { vec_##SFX v; memcpy(&v, p, sizeof v); return v; }        \
static inline void st_##SFX(T *p, vec_##SFX v) { memcpy(p, &v, sizeof v); }                             \
                                                                                                        \
/* RW output pixels (n, ob, oh, ow0 .. ow0 + RW - 1); RW is a constant after inlining */                \
static inline __attribute__((always_inline)) void pixels_##SFX(                                         \
        const T *restrict xn, const T *restrict wob, const T *restrict bias, const T *restrict rrow,    \
        T *restrict yrow, const nchwc_geo *g, long oh, long ow0, const int RW, const int SW,            \
        const int BI) {                                                                                 \
    vec_##SFX acc[RW_MAX];                                                                              \
    vec_##SFX bv = ld_##SFX(bias);                                                                      \
    _Pragma("GCC unroll 14") for (int r = 0; r < RW; r++) acc[r] = bv;                                  \
    /* input step between neighbouring output pixels: a constant for stride 1 and 2, so the RW          \
     * broadcasts are one base register plus fixed offsets (fewer live pointers, no spills) */          \
    const long bi = BI ? BI : g->bi;           /* input channels per block */                           \
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
/* the same for two output blocks (ob, ob + 1) at once: 2 x RW accumulators, each broadcast input       \
 * value feeds two FMAs (one weight vector per block); bi = B, stride SW along the width */             \
static inline __attribute__((always_inline)) void pixels2_##SFX(                                        \
        const T *restrict xn, const T *restrict w0, long wsize, const T *restrict bias,                 \
        const T *restrict r0, const T *restrict r1, T *restrict y0, T *restrict y1, const nchwc_geo *g, \
        long oh, long ow0, const int RW, const int SW) {                                                \
    vec_##SFX acc0[RW_MAX], acc1[RW_MAX];                                                               \
    vec_##SFX bv0 = ld_##SFX(bias), bv1 = ld_##SFX(bias + B);                                           \
    _Pragma("GCC unroll 14") for (int r = 0; r < RW; r++) { acc0[r] = bv0; acc1[r] = bv1; }             \
    const long xs = SW * B;                                                                             \
    const T *w1 = w0 + wsize;                                                                           \
    for (long cb = 0; cb < g->Cb; cb++) {                                                               \
        for (long ky = 0; ky < g->kh; ky++) {                                                           \
            const T *xr = xn + ((cb * g->Hp + oh * g->sh + ky * g->dh) * g->Wp + ow0 * SW) * B;         \
            long wo = ((cb * g->kh + ky) * g->kw) * B * B;                                              \
            for (long kx = 0; kx < g->kw; kx++, wo += B * B) {                                          \
                const T *xp = xr + kx * g->dw * B;                                                      \
                for (int ci = 0; ci < B; ci++) {                                                        \
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
/* max pooling on the blocked layout: y (N, Cb, Ho, Wo, B) from x (N, Cb, H, W, B), items (n, cb, oh);  \
 * window taps outside the input are skipped (torch's -inf padding); NaN propagates as in np.maximum */ \
void maxpool_nchwc_##SFX(const T *x, T *y, const pool_geo *g, long r0, long r1) {                       \
    for (long it = r0; it < r1; it++) {                                                                 \
        long oh = it % g->Ho, ncb = it / g->Ho;                                                         \
        const T *xc = x + ncb * g->H * g->W * B;                                                        \
        T *yr = y + it * g->Wo * B;                                                                     \
        const vec_##SFX bv = {0};                                                                       \
        for (long ow = 0; ow < g->Wo; ow++) {                                                           \
            vec_##SFX m = bv - INFINITY;     /* bv = 0: a vector of -inf */                             \
            for (long ky = 0; ky < g->kh; ky++) {                                                       \
                long ih = oh * g->sh - g->ph + ky * g->dh;                                              \
                if (ih < 0 || ih >= g->H) continue;                                                     \
                for (long kx = 0; kx < g->kw; kx++) {                                                   \
                    long iw = ow * g->sw - g->pw + kx * g->dw;                                          \
                    if (iw < 0 || iw >= g->W) continue;                                                 \
                    vec_##SFX v = ld_##SFX(xc + (ih * g->W + iw) * B);                                  \
                    ivec_##SFX take = (v > m) | (v != v);                                               \
                    m = (vec_##SFX)(((ivec_##SFX)v & take) | ((ivec_##SFX)m & ~take));                  \
                }                                                                                       \
            }                                                                                           \
            st_##SFX(yr + ow * B, m);                                                                   \
        }                                                                                               \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
ROW(T, SFX, 0, B) ROW(T, SFX, 1, B) ROW(T, SFX, 2, B) ROW(T, SFX, g, 0) ROW(T, SFX, rgb, 3)             \
                                                                                                        \
void conv_nchwc_##SFX(const T *x, const T *w, const T *bias, const T *res, T *y, const nchwc_geo *g,    \
                      long r0, long r1) {                                                               \
    const long wsize = g->Cb * g->kh * g->kw * g->bi * B;                                               \
    for (long it = r0; it < r1; it++) {                                                                 \
        long oh = it % g->Ho, t = it / g->Ho, ob = t % g->Ob, n = t / g->Ob;                            \
        const T *xn = x + n * g->Cb * g->Hp * g->Wp * g->bi;                                            \
        const T *wob = w + ob * wsize;                                                                  \
        long off = ((n * g->Ob + ob) * g->Ho + oh) * g->Wo * B;                                         \
        const T *rrow = res ? res + off : 0;                                                            \
        T *yrow = y + off;                                                                              \
        const T *bp = bias + ob * B;                                                                    \
        if (g->bi == 3 && g->sw == 2) rowrgb_##SFX(xn, wob, bp, rrow, yrow, g, oh);  /* RGB stem */     \
        else if (g->bi != B) rowg_##SFX(xn, wob, bp, rrow, yrow, g, oh);                                \
        else if (g->sw == 1) row1_##SFX(xn, wob, bp, rrow, yrow, g, oh);                                \
        else if (g->sw == 2) row2_##SFX(xn, wob, bp, rrow, yrow, g, oh);                                \
        else row0_##SFX(xn, wob, bp, rrow, yrow, g, oh);                                                \
    }                                                                                                   \
}                                                                                                       \
/* one pair of output rows, register blocks of RW_MAX pixels and the remainder (SW a constant) */       \
static inline __attribute__((always_inline)) void row_pair_##SFX(                                       \
        const T *xn, const T *w0, long wsize, const T *bp, const T *r0, const T *r1, T *y0, T *y1,      \
        const nchwc_geo *g, long oh, const int SW) {                                                    \
    long ow = 0;                                                                                        \
    for (; ow + RW_MAX <= g->Wo; ow += RW_MAX)                                                          \
        pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, RW_MAX, SW);                        \
    switch (g->Wo - ow) {                                                                               \
        case 13: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 13, SW); break;            \
        case 12: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 12, SW); break;            \
        case 11: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 11, SW); break;            \
        case 10: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 10, SW); break;            \
        case 9: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 9, SW); break;              \
        case 8: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 8, SW); break;              \
        case 7: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 7, SW); break;              \
        case 6: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 6, SW); break;              \
        case 5: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 5, SW); break;              \
        case 4: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 4, SW); break;              \
        case 3: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 3, SW); break;              \
        case 2: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 2, SW); break;              \
        case 1: pixels2_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, ow, 1, SW); break;              \
    default: break;                                                                                     \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
/* output rows (n, 2 * obp, oh) and (n, 2 * obp + 1, oh), items (n, obp, oh) in [i0, i1); Ob even,      \
 * bi = B, width stride 1 or 2 -- ResNet's 3x3 and 1x1 layers after the stem. On the 2-core test        \
 * machine this is the faster form: a broadcast feeds two FMAs instead of one. */                       \
void conv_nchwc_pair_##SFX(void **a, long i0, long i1) {                                                \
    const T *x = a[0], *w = a[1], *bias = a[2], *res = a[3];                                            \
    T *y = a[4];                                                                                        \
    const nchwc_geo *g = a[5];                                                                          \
    const long wsize = g->Cb * g->kh * g->kw * B * B, Obp = g->Ob / 2;                                  \
    for (long it = i0; it < i1; it++) {                                                                 \
        long oh = it % g->Ho, t = it / g->Ho, obp = t % Obp, n = t / Obp, ob = 2 * obp;                 \
        const T *xn = x + n * g->Cb * g->Hp * g->Wp * B, *w0 = w + ob * wsize, *bp = bias + ob * B;     \
        long off0 = ((n * g->Ob + ob) * g->Ho + oh) * g->Wo * B, off1 = off0 + g->Ho * g->Wo * B;       \
        const T *r0 = res ? res + off0 : 0, *r1 = res ? res + off1 : 0;                                 \
        T *y0 = y + off0, *y1 = y + off1;                                                               \
        if (g->sw == 1) row_pair_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, 1);                    \
        else row_pair_##SFX(xn, w0, wsize, bp, r0, r1, y0, y1, g, oh, 2);                               \
    }                                                                                                   \
}                                                                                                       \
/* the same as a task of the compiler's thread pool (fused_pool.c): argv = {x, w, bias, res, y, geo} */ \
void conv_nchwc_task_##SFX(void **a, long r0, long r1) {                                                \
    conv_nchwc_##SFX(a[0], a[1], a[2], a[3], a[4], a[5], r0, r1);                                       \
}

CONV_NCHWC(float, int32_t, 16, f32_b16)
CONV_NCHWC(float, int32_t, 8, f32_b8)
CONV_NCHWC(double, int64_t, 8, f64_b8)
CONV_NCHWC(double, int64_t, 16, f64_b16)

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
PAD(float, f32)
PAD(double, f64)
