/* Winograd F(4x4, 3x3) transforms (Lavin & Gray 2015, interpolation points 0, +-1, +-2, inf).
 *
 * A 3x3 stride-1 convolution over 4x4 output tiles is  Y = A^T [ (G w G^T) . (B^T d B) ] A  with d the
 * 6x6 input patch of the tile; the element-wise product summed over input channels is 36 GEMMs
 * (wino_gemm, at the end of this file). These functions are the transforms and their adjoints:
 *
 *   wino_weight   w  (O, C, 3, 3)       -> U  (36, O, C)     U = G w G^T
 *   wino_weight_t dU (36, O, C)         -> dw (O, C, 3, 3)   dw = G^T dU G          (weight gradient)
 *   wino_input    x  (N, C, H, W)       -> V  (36, C, T)     V = B^T d B per tile
 *   wino_output   M  (36, O, T)         -> y  (N, O, Ho, Wo) y = A^T m A, clipped to the output
 *   wino_output_t g  (N, O, Ho, Wo)     -> Mg (36, O, T)     Mg = A g A^T, g zero outside the output
 *
 * (the 36 planes of U, dU, V, M and Mg lie `es` elements apart, es >= O * C, C * T or O * T; V's
 * channel and tile strides are arguments: (C, T) planes for the forward GEMMs, (T, C) planes for the
 * weight gradient's, so every GEMM reads both operands row by row) *
 * with T = N * th * tw tiles, tile t = (n * th + ty) * tw + tx reading input rows 4 ty - pt .. +5
 * (zero outside the input, so any padding works). Channel ranges [c0, c1) let two Python threads
 * split a call (ctypes releases the GIL); the kernels themselves are single-threaded.
 * Each function exists for float (suffix f32) and double (f64). */

#define TRANSFORMS(T, SFX)                                                                              \
static inline void bt6_##SFX(const T *d, long s, T *r, long rs) {  /* r = B^T d, d read with stride s */        \
    T d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];                \
    r[0 * rs] = 4 * d0 - 5 * d2 + d4;                                                                        \
    r[1 * rs] = -4 * (d1 + d2) + d3 + d4;                                                                    \
    r[2 * rs] = 4 * (d1 - d2) - d3 + d4;                                                                     \
    r[3 * rs] = 2 * (d3 - d1) - d2 + d4;                                                                     \
    r[4 * rs] = 2 * (d1 - d3) - d2 + d4;                                                                     \
    r[5 * rs] = 4 * d1 - 5 * d3 + d5;                                                                        \
}                                                                                                       \
static inline void at4_##SFX(const T *m, long s, T *r, long rs) {  /* r = A^T m */                               \
    T m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];                \
    T a = m1 + m2, b = m1 - m2, c = m3 + m4, e = m3 - m4;                                               \
    r[0 * rs] = m0 + a + c;                                                                                  \
    r[1 * rs] = b + 2 * e;                                                                                   \
    r[2 * rs] = a + 4 * c;                                                                                   \
    r[3 * rs] = b + 8 * e + m5;                                                                              \
}                                                                                                       \
static inline void a6_##SFX(const T *v, long s, T *r, long rs) {   /* r = A v (adjoint of A^T) */                \
    T v0 = v[0], v1 = v[s], v2 = v[2 * s], v3 = v[3 * s];                                               \
    T ev = v0 + v2, od = v1 + v3, ev4 = v0 + 4 * v2, od8 = 2 * v1 + 8 * v3;                             \
    r[0 * rs] = v0;                                                                                          \
    r[1 * rs] = ev + od;                                                                                     \
    r[2 * rs] = ev - od;                                                                                     \
    r[3 * rs] = ev4 + od8;                                                                                   \
    r[4 * rs] = ev4 - od8;                                                                                   \
    r[5 * rs] = v3;                                                                                          \
}                                                                                                       \
static inline void g6_##SFX(const T *g, long s, T *r, long rs) {   /* r = G g */                                 \
    T g0 = g[0], g1 = g[s], g2 = g[2 * s];                                                              \
    r[0 * rs] = g0 / 4;                                                                                      \
    r[1 * rs] = -(g0 + g1 + g2) / 6;                                                                         \
    r[2 * rs] = -(g0 - g1 + g2) / 6;                                                                         \
    r[3 * rs] = g0 / 24 + g1 / 12 + g2 / 6;                                                                  \
    r[4 * rs] = g0 / 24 - g1 / 12 + g2 / 6;                                                                  \
    r[5 * rs] = g2;                                                                                          \
}                                                                                                       \
static inline void gt3_##SFX(const T *u, long s, T *r, long rs) {  /* r = G^T u (adjoint of G) */                \
    T u0 = u[0], u1 = u[s], u2 = u[2 * s], u3 = u[3 * s], u4 = u[4 * s], u5 = u[5 * s];                \
    r[0 * rs] = u0 / 4 - (u1 + u2) / 6 + (u3 + u4) / 24;                                                    \
    r[1 * rs] = (u2 - u1) / 6 + (u3 - u4) / 12;                                                              \
    r[2 * rs] = (u3 + u4 - u1 - u2) / 6 + u5;                                                                \
}                                                                                                       \
                                                                                                        \
/* Every function works on blocks of BLK tiles (or kernels) at once: the 6x6 values of a block sit \
 * in local arrays [value][BLK], the 1-d transforms run as SIMD loops over the block, and each of the \
 * 36 transformed values is stored as one contiguous run of BLK numbers. (Storing tile by tile wrote \
 * 36 streams 4 bytes at a time, whose addresses all fall in one cache set: 5x slower.) The 36 planes \
 * of V / M are `es` elements apart; the caller pads `es` off multiples of 4 KiB for the same reason. */ \
void wino_weight_##SFX(const T *restrict w, T *restrict U, long es, long O, long C) {                                 \
    long OC = O * C;                                                                                    \
    for (long k0 = 0; k0 < OC; k0 += BLK) {                                                             \
        int nb = OC - k0 < BLK ? (int)(OC - k0) : BLK;                                                  \
        T g[9][BLK], tmp[18][BLK], u[36][BLK];                                                          \
        for (int b = 0; b < nb; b++)                                                                    \
            for (int e = 0; e < 9; e++) g[e][b] = w[9 * (k0 + b) + e];                                  \
        for (int j = 0; j < 3; j++)                                     /* tmp = G g, 6 x 3 */          \
            _Pragma("omp simd") for (int b = 0; b < BLK; b++) g6_##SFX(&g[j][b], 3 * BLK, &tmp[j][b], 3 * BLK); \
        for (int i = 0; i < 6; i++)                                     /* u = tmp G^T, 6 x 6 */        \
            _Pragma("omp simd") for (int b = 0; b < BLK; b++) g6_##SFX(&tmp[3 * i][b], BLK, &u[6 * i][b], BLK); \
        for (int e = 0; e < 36; e++)                                                                    \
            for (int b = 0; b < nb; b++) U[e * es + k0 + b] = u[e][b];                                  \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
void wino_weight_t_##SFX(const T *restrict dU, T *restrict dw, long es, long O, long C) {                             \
    long OC = O * C;                                                                                    \
    for (long k0 = 0; k0 < OC; k0 += BLK) {                                                             \
        int nb = OC - k0 < BLK ? (int)(OC - k0) : BLK;                                                  \
        T m[36][BLK], tmp[18][BLK], r[9][BLK];                                                          \
        for (int e = 0; e < 36; e++)                                                                    \
            for (int b = 0; b < BLK; b++) m[e][b] = b < nb ? dU[e * es + k0 + b] : 0;                   \
        for (int j = 0; j < 6; j++)                                     /* tmp = G^T m, 3 x 6 */        \
            _Pragma("omp simd") for (int b = 0; b < BLK; b++) gt3_##SFX(&m[j][b], 6 * BLK, &tmp[j][b], 6 * BLK); \
        for (int i = 0; i < 3; i++)                                     /* r = tmp G, 3 x 3 */          \
            _Pragma("omp simd") for (int b = 0; b < BLK; b++) gt3_##SFX(&tmp[6 * i][b], BLK, &r[3 * i][b], BLK); \
        for (int b = 0; b < nb; b++)                                                                    \
            for (int e = 0; e < 9; e++) dw[9 * (k0 + b) + e] = r[e][b];                                 \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
void wino_input_##SFX(const T *restrict x, T *restrict V, long es, long cs, long ts, long N, long C,   \
                      long H, long W, long pt, long pl, long th, long tw, long c0, long c1) {           \
    for (long n = 0; n < N; n++)                                                                        \
    for (long c = c0; c < c1; c++) {                                                                    \
        const T *plane = x + (n * C + c) * H * W;                                                       \
        T *vout = V + c * cs + n * th * tw * ts;                                                        \
        for (long ty = 0; ty < th; ty++) {                                                              \
            long r0 = 4 * ty - pt;                                                                      \
            for (long tx0 = 0; tx0 < tw; tx0 += BLK) {                                                  \
                int nb = tw - tx0 < BLK ? (int)(tw - tx0) : BLK;                                        \
                long q0 = 4 * tx0 - pl;                                                                 \
                T d[36][BLK], tmp[36][BLK], v[36][BLK], patch[6][4 * BLK + 2];                          \
                /* the block's 6 input rows, zero-padded: three plain runs per row, no per-element test */ \
                long width = 4 * nb + 2, qa = q0 < 0 ? -q0 : 0, qb = W - q0 < width ? W - q0 : width;  \
                if (qb < qa) qb = qa;                                                                   \
                for (int i = 0; i < 6; i++) {                                                           \
                    long rr = r0 + i;                                                                   \
                    T *prow = patch[i];                                                                 \
                    if (rr < 0 || rr >= H) {                                                            \
                        for (long q = 0; q < 4 * BLK + 2; q++) prow[q] = 0;                             \
                        continue;                                                                       \
                    }                                                                                   \
                    const T *src = plane + rr * W + q0;                                                 \
                    for (long q = 0; q < qa; q++) prow[q] = 0;                                          \
                    for (long q = qa; q < qb; q++) prow[q] = src[q];                                    \
                    for (long q = qb; q < 4 * BLK + 2; q++) prow[q] = 0;                                \
                }                                                                                       \
                for (int i = 0; i < 6; i++)                                                             \
                    for (int j = 0; j < 6; j++)                                                         \
                        _Pragma("omp simd") for (int b = 0; b < BLK; b++) d[6 * i + j][b] = patch[i][4 * b + j]; \
                for (int j = 0; j < 6; j++)                             /* tmp = B^T d */               \
                    _Pragma("omp simd") for (int b = 0; b < BLK; b++) bt6_##SFX(&d[j][b], 6 * BLK, &tmp[j][b], 6 * BLK); \
                for (int i = 0; i < 6; i++)                             /* v = tmp B */                 \
                    _Pragma("omp simd") for (int b = 0; b < BLK; b++) bt6_##SFX(&tmp[6 * i][b], BLK, &v[6 * i][b], BLK); \
                T *dst = vout + (ty * tw + tx0) * ts;                                                   \
                for (int e = 0; e < 36; e++)                                                            \
                    for (int b = 0; b < nb; b++) dst[e * es + b * ts] = v[e][b];                        \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
void wino_output_##SFX(const T *restrict M, T *restrict y, long es, long N, long O, long Ho, long Wo,  \
                       long th, long tw, long o0, long o1) {                                            \
    long Tn = N * th * tw;                                                                              \
    for (long n = 0; n < N; n++)                                                                        \
    for (long o = o0; o < o1; o++) {                                                                    \
        const T *min = M + o * Tn + n * th * tw;                                                        \
        T *plane = y + (n * O + o) * Ho * Wo;                                                           \
        for (long ty = 0; ty < th; ty++)                                                                \
        for (long tx0 = 0; tx0 < tw; tx0 += BLK) {                                                      \
            int nb = tw - tx0 < BLK ? (int)(tw - tx0) : BLK;                                            \
            T m[36][BLK], tmp[24][BLK], r[16][BLK];                                                     \
            const T *src = min + ty * tw + tx0;                                                         \
            for (int e = 0; e < 36; e++)                                                                \
                for (int b = 0; b < BLK; b++) m[e][b] = b < nb ? src[e * es + b] : 0;                   \
            for (int j = 0; j < 6; j++)                                 /* tmp = A^T m, 4 x 6 */        \
                _Pragma("omp simd") for (int b = 0; b < BLK; b++) at4_##SFX(&m[j][b], 6 * BLK, &tmp[j][b], 6 * BLK); \
            for (int i = 0; i < 4; i++)                                 /* r = tmp A, 4 x 4 */          \
                _Pragma("omp simd") for (int b = 0; b < BLK; b++) at4_##SFX(&tmp[6 * i][b], BLK, &r[4 * i][b], BLK); \
            long y0 = 4 * ty, x0 = 4 * tx0;                                                             \
            int nr = Ho - y0 < 4 ? (int)(Ho - y0) : 4;                                                  \
            long nc = Wo - x0 < 4 * BLK ? Wo - x0 : 4 * BLK;                                            \
            for (int i = 0; i < nr; i++) {                                                              \
                T *row = plane + (y0 + i) * Wo + x0;                                                    \
                for (long q = 0; q < nc; q++) row[q] = r[4 * i + (q & 3)][q >> 2];                      \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
void wino_output_t_##SFX(const T *restrict g, T *restrict M, long es, long N, long O, long Ho, long Wo, \
                         long th, long tw, long o0, long o1) {                                          \
    long Tn = N * th * tw;                                                                              \
    for (long n = 0; n < N; n++)                                                                        \
    for (long o = o0; o < o1; o++) {                                                                    \
        T *mout = M + o * Tn + n * th * tw;                                                             \
        const T *plane = g + (n * O + o) * Ho * Wo;                                                     \
        for (long ty = 0; ty < th; ty++)                                                                \
        for (long tx0 = 0; tx0 < tw; tx0 += BLK) {                                                      \
            int nb = tw - tx0 < BLK ? (int)(tw - tx0) : BLK;                                            \
            T v[16][BLK], tmp[24][BLK], m[36][BLK], patch[4][4 * BLK];                                  \
            long y0 = 4 * ty, x0 = 4 * tx0, qb = Wo - x0 < 4 * BLK ? Wo - x0 : 4 * BLK;                 \
            for (int i = 0; i < 4; i++) {                /* rows of g, zero beyond the output */        \
                long q = 0;                                                                             \
                if (y0 + i < Ho)                                                                        \
                    for (; q < qb; q++) patch[i][q] = plane[(y0 + i) * Wo + x0 + q];                    \
                for (; q < 4 * BLK; q++) patch[i][q] = 0;                                               \
            }                                                                                           \
            for (int i = 0; i < 4; i++)                                                                 \
                for (int j = 0; j < 4; j++)                                                             \
                    _Pragma("omp simd") for (int b = 0; b < BLK; b++) v[4 * i + j][b] = patch[i][4 * b + j]; \
            for (int j = 0; j < 4; j++)                                 /* tmp = A v, 6 x 4 */          \
                _Pragma("omp simd") for (int b = 0; b < BLK; b++) a6_##SFX(&v[j][b], 4 * BLK, &tmp[j][b], 4 * BLK); \
            for (int i = 0; i < 6; i++)                                 /* m = tmp A^T, 6 x 6 */        \
                _Pragma("omp simd") for (int b = 0; b < BLK; b++) a6_##SFX(&tmp[4 * i][b], BLK, &m[6 * i][b], BLK); \
            T *dst = mout + ty * tw + tx0;                                                              \
            for (int e = 0; e < 36; e++)                                                                \
                for (int b = 0; b < nb; b++) dst[e * es + b] = m[e][b];                                 \
        }                                                                                               \
    }                                                                                                   \
}

#define BLK 16
TRANSFORMS(float, f32)
TRANSFORMS(double, f64)

/* The 36 products  M[e] = U[e] @ V[e]  ((O, C) @ (C, T)), e in [e0, e1), with the same plane stride
 * conventions as the transforms (the weight gradient calls it as Mg[e] (O, T) @ V^T[e] (T, C)). Register-blocked: 6 output channels x 32 tiles live in 12 vector
 * accumulators while the channel loop streams one row of V (two vectors) and six broadcasts of U.
 * Written with GCC vector extensions, so -march=native gives AVX-512 here (NumPy's OpenBLAS is pinned
 * to AVX2 kernels on these machines) and the code still compiles for any target. Doing the GEMMs in
 * this library also keeps OpenBLAS's worker thread, which spin-waits after each call, from competing
 * with the transforms for the second core (measured: transforms 2x slower right after np.matmul). */
#include <stdlib.h>
#include <string.h>

typedef float vf32 __attribute__((vector_size(64), aligned(4)));
typedef double vf64 __attribute__((vector_size(64), aligned(8)));

#define GEMM(T, V, SFX)                                                                                 \
enum { VL_##SFX = 64 / sizeof(T), NB_##SFX = 2 * (64 / sizeof(T)) };                                   \
static inline V ld_##SFX(const T *p) { V v; memcpy(&v, p, sizeof v); return v; }                        \
static inline void st_##SFX(T *p, V v) { memcpy(p, &v, sizeof v); }                                     \
/* rows x NB block of C = A (rows x K, lda) @ B (K x NB, ldb); rows <= 6 */                             \
static inline void block_##SFX(const T *A, long lda, const T *B, long ldb, T *Cm, long ldc, long K,    \
                               int rows) {                                                              \
    V acc[6][2] = {{{0}}};                                                                                \
    if (rows == 6) {                                                                                    \
        for (long k = 0; k < K; k++) {                                                                  \
            V b0 = ld_##SFX(B + k * ldb), b1 = ld_##SFX(B + k * ldb + VL_##SFX);                        \
            for (int r = 0; r < 6; r++) {                                                               \
                T a = A[r * lda + k];                                                                   \
                acc[r][0] += a * b0;                                                                    \
                acc[r][1] += a * b1;                                                                    \
            }                                                                                           \
        }                                                                                               \
    } else {                                                                                            \
        for (long k = 0; k < K; k++) {                                                                  \
            V b0 = ld_##SFX(B + k * ldb), b1 = ld_##SFX(B + k * ldb + VL_##SFX);                        \
            for (int r = 0; r < rows; r++) {                                                            \
                T a = A[r * lda + k];                                                                   \
                acc[r][0] += a * b0;                                                                    \
                acc[r][1] += a * b1;                                                                    \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
    for (int r = 0; r < rows; r++) {                                                                    \
        st_##SFX(Cm + r * ldc, acc[r][0]);                                                              \
        st_##SFX(Cm + r * ldc + VL_##SFX, acc[r][1]);                                                   \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
void wino_gemm_##SFX(const T *restrict U, long es_u, const T *restrict Vm, long es_v, T *restrict M,  \
                     long es_m, long O, long C, long Tn, long e0, long e1) {                            \
    long NB = NB_##SFX;                                                                                 \
    T *tail = malloc(sizeof(T) * (C * NB + 6 * NB));  /* last partial column block, zero-padded */      \
    if (!tail) return;                                                                                  \
    T *ctail = tail + C * NB;                                                                           \
    for (long e = e0; e < e1; e++) {                                                                    \
        const T *A = U + e * es_u, *B = Vm + e * es_v;                                                  \
        T *Cm = M + e * es_m;                                                                           \
        for (long t0 = 0; t0 < Tn; t0 += NB) {                                                          \
            long nt = Tn - t0 < NB ? Tn - t0 : NB;                                                      \
            const T *Bp = B + t0;                                                                       \
            long ldb = Tn;                                                                              \
            if (nt < NB) {                                                                              \
                for (long k = 0; k < C; k++) {                                                          \
                    for (long q = 0; q < nt; q++) tail[k * NB + q] = B[k * Tn + t0 + q];                \
                    for (long q = nt; q < NB; q++) tail[k * NB + q] = 0;                                \
                }                                                                                       \
                Bp = tail; ldb = NB;                                                                    \
            }                                                                                           \
            for (long o0 = 0; o0 < O; o0 += 6) {                                                        \
                int rows = O - o0 < 6 ? (int)(O - o0) : 6;                                              \
                if (nt == NB) {                                                                         \
                    block_##SFX(A + o0 * C, C, Bp, ldb, Cm + o0 * Tn + t0, Tn, C, rows);                \
                } else {                                                                                \
                    block_##SFX(A + o0 * C, C, Bp, ldb, ctail, NB, C, rows);                            \
                    for (int r = 0; r < rows; r++)                                                      \
                        for (long q = 0; q < nt; q++) Cm[(o0 + r) * Tn + t0 + q] = ctail[r * NB + q];   \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
    free(tail);                                                                                         \
}

GEMM(float, vf32, f32)
GEMM(double, vf64, f64)
