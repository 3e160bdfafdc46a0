/* Direct depthwise convolution (groups == C input channels, O = C * m outputs; output channel o reads
 * input channel o / m), any kernel size, stride, padding and dilation, and its two adjoints.
 *
 *   dwconv          x (N, C, H, W), w (O, 1, kh, kw) -> y  (N, O, Ho, Wo)
 *   dwconv_input_t  g (N, O, Ho, Wo), w              -> dx (N, C, H, W)
 *   dwconv_weight_t x, g                             -> dw (O, 1, kh, kw)
 *
 * Every kernel tap (i, j) is one SIMD pass over an output row: y[yo, x] += w[i, j] * x[r, x * sw + off]
 * for the x whose input column lies inside the image, so padding costs nothing and no padded copy is
 * made. im2col + GEMM is a poor fit here: each output channel is a (1 x kh*kw) @ (kh*kw x Ho*Wo)
 * product, a matrix-vector product that BLAS runs at memory speed after a kh*kw-times larger copy.
 * [p0, p1) ranges (over N*O output planes, N*C input planes, or O weight channels) let Python threads
 * split a call; the kernels are single-threaded. Suffix f32 = float, f64 = double. */

#include <stdlib.h>

typedef struct { long N, C, H, W, O, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo; } dwgeo;

/* output columns x whose input column x * sw + off lies in [0, W) */
static inline void col_range(const dwgeo *g, long off, long *lo, long *hi) {
    long a = off < 0 ? (-off + g->sw - 1) / g->sw : 0;
    long b = g->W - 1 - off < 0 ? 0 : (g->W - 1 - off) / g->sw + 1;
    *lo = a;
    *hi = b < g->Wo ? b : g->Wo;
}

#define DEPTHWISE(T, SFX)                                                                               \
void dwconv_##SFX(const T *restrict x, const T *restrict w, T *restrict y, const dwgeo *g,             \
                  long p0, long p1) {                                                                   \
    long m = g->O / g->C;                                                                               \
    for (long p = p0; p < p1; p++) {                                                                    \
        long n = p / g->O, o = p % g->O;                                                                \
        const T *plane = x + (n * g->C + o / m) * g->H * g->W, *wk = w + o * g->kh * g->kw;             \
        T *out = y + p * g->Ho * g->Wo;                                                                 \
        for (long yo = 0; yo < g->Ho; yo++) {                                                           \
            T *orow = out + yo * g->Wo;                                                                 \
            for (long q = 0; q < g->Wo; q++) orow[q] = 0;                                               \
            for (long i = 0; i < g->kh; i++) {                                                          \
                long r = yo * g->sh + i * g->dh - g->pt;                                                \
                if (r < 0 || r >= g->H) continue;                                                       \
                const T *irow = plane + r * g->W;                                                       \
                for (long j = 0; j < g->kw; j++) {                                                      \
                    long off = j * g->dw - g->pl, lo, hi, sw = g->sw;                                   \
                    T wv = wk[i * g->kw + j];                                                           \
                    col_range(g, off, &lo, &hi);                                                        \
                    if (sw == 1) {                                                                      \
                        _Pragma("omp simd") for (long q = lo; q < hi; q++) orow[q] += wv * irow[q + off]; \
                    } else {                                                                            \
                        _Pragma("omp simd") for (long q = lo; q < hi; q++) orow[q] += wv * irow[q * sw + off]; \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
void dwconv_input_t_##SFX(const T *restrict gr, const T *restrict w, T *restrict dx, const dwgeo *g,   \
                          long p0, long p1) {                                                           \
    long m = g->O / g->C;                                                                               \
    for (long p = p0; p < p1; p++) {              /* one input plane (n, c) gathers its m outputs */    \
        long n = p / g->C, c = p % g->C;                                                                \
        T *plane = dx + p * g->H * g->W;                                                                \
        for (long q = 0; q < g->H * g->W; q++) plane[q] = 0;                                            \
        for (long o = c * m; o < (c + 1) * m; o++) {                                                    \
            const T *gp = gr + (n * g->O + o) * g->Ho * g->Wo, *wk = w + o * g->kh * g->kw;             \
            for (long yo = 0; yo < g->Ho; yo++) {                                                       \
                const T *grow = gp + yo * g->Wo;                                                        \
                for (long i = 0; i < g->kh; i++) {                                                      \
                    long r = yo * g->sh + i * g->dh - g->pt;                                            \
                    if (r < 0 || r >= g->H) continue;                                                   \
                    T *xrow = plane + r * g->W;                                                         \
                    for (long j = 0; j < g->kw; j++) {                                                  \
                        long off = j * g->dw - g->pl, lo, hi, sw = g->sw;                               \
                        T wv = wk[i * g->kw + j];                                                       \
                        col_range(g, off, &lo, &hi);                                                    \
                        if (sw == 1) {                                                                  \
                            _Pragma("omp simd") for (long q = lo; q < hi; q++) xrow[q + off] += wv * grow[q]; \
                        } else {               /* columns q * sw + off are distinct: no overlap */      \
                            _Pragma("omp simd") for (long q = lo; q < hi; q++) xrow[q * sw + off] += wv * grow[q]; \
                        }                                                                               \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
void dwconv_weight_t_##SFX(const T *restrict x, const T *restrict gr, T *restrict dwt, const dwgeo *g, \
                           long p0, long p1) {                                                          \
    /* per tap, products accumulate in a row of Wo partial sums (pure SIMD FMAs, reduced once at the   \
     * end); a dot product per row paid a horizontal reduction per row and tap: 2x slower */           \
    long m = g->O / g->C, K = g->kh * g->kw, Wo = g->Wo;                                                \
    T *part = malloc(sizeof(T) * K * Wo);                                                               \
    if (!part) return;                                                                                  \
    for (long o = p0; o < p1; o++) {                                                                    \
        for (long k = 0; k < K * Wo; k++) part[k] = 0;                                                  \
        for (long n = 0; n < g->N; n++) {                                                               \
            const T *plane = x + (n * g->C + o / m) * g->H * g->W;                                      \
            const T *gp = gr + (n * g->O + o) * g->Ho * Wo;                                             \
            for (long yo = 0; yo < g->Ho; yo++) {                                                       \
                const T *grow = gp + yo * Wo;                                                           \
                for (long i = 0; i < g->kh; i++) {                                                      \
                    long r = yo * g->sh + i * g->dh - g->pt;                                            \
                    if (r < 0 || r >= g->H) continue;                                                   \
                    const T *irow = plane + r * g->W;                                                   \
                    for (long j = 0; j < g->kw; j++) {                                                  \
                        long off = j * g->dw - g->pl, lo, hi, sw = g->sw;                               \
                        T *acc = part + (i * g->kw + j) * Wo;                                           \
                        col_range(g, off, &lo, &hi);                                                    \
                        if (sw == 1) {                                                                  \
                            _Pragma("omp simd") for (long q = lo; q < hi; q++) acc[q] += grow[q] * irow[q + off]; \
                        } else {                                                                        \
                            _Pragma("omp simd") for (long q = lo; q < hi; q++) acc[q] += grow[q] * irow[q * sw + off]; \
                        }                                                                               \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
        for (long k = 0; k < K; k++) {                                                                  \
            T s = 0;                                                                                    \
            for (long q = 0; q < Wo; q++) s += part[k * Wo + q];                                        \
            dwt[o * K + k] = s;                                                                         \
        }                                                                                               \
    }                                                                                                   \
    free(part);                                                                                         \
}

DEPTHWISE(float, f32)
DEPTHWISE(double, f64)
