/* A strided, batched GEMM for the compiler's plans (suanli.compiler.codegen_rows.GemmKernel):
 * C[b1, b2] = A[b1, b2] @ B[b1, b2] for any element strides of A, B and the rows of C (unit stride
 * along C's columns), as a task function of the compiler's thread pool (fused_pool.c).
 *
 * Why our own: NumPy's OpenBLAS runs its AVX2 (Haswell) kernels on these machines, and its worker
 * threads busy-wait after each call on the core our other kernels need. This is the classic
 * GotoBLAS structure: each task owns a tile of C; it packs its rows of A into 6-row panels
 * (k-major) and, one 2-vector column block at a time, the block of B (zero-padded at the edge),
 * then runs a 6 x 2-vector register-blocked micro-kernel (12 accumulators) over K in KC-sized
 * steps so the packed slice of B stays in L1. Written with GCC vector extensions: -march=native
 * gives AVX-512 here and the code still compiles for any target. Transposed and permuted operands
 * are handled by the packing (no copies before the call).
 *
 * argv = {A, B, C, params, bias, packed}; bias (N contiguous values, or NULL) is added to every row
 * of C (a Linear layer's epilogue, while the tile is in cache); packed (or NULL) is B already in
 * the packed layout, (ceil(N / NB), K, NB) zero-padded -- a constant weight of an inference graph,
 * packed once when the plan is built; params (int64, strides in elements) =
 *   {M, K, N, nb2, tiles_m, tiles_n, mt, nct,
 *    a_b1, a_b2, a_m, a_k,  b_b1, b_b2, b_k, b_n,  c_b1, c_b2, c_m}
 * A task t is tile (tm, tn) of matrix (b1, b2): t = ((b1 * nb2 + b2) * tiles_m + tm) * tiles_n + tn;
 * a tile is mt rows (a multiple of 6) by nct columns (a multiple of the column block). Each C
 * element is written by one task with a fixed summation order, so results do not depend on the
 * thread count. Each function exists for float (suffix f32) and double (f64). */
#include <stdlib.h>
#include <string.h>

typedef float gv_f32 __attribute__((vector_size(64), aligned(4)));
typedef double gv_f64 __attribute__((vector_size(64), aligned(8)));

#define KC 256          /* K per micro-kernel call: the packed B slice (KC x 2 vectors) is 32 KiB */

#define GEMM_KERNEL(T, V, SFX)                                                                          \
enum { VL_##SFX = 64 / sizeof(T), NB_##SFX = 2 * (64 / sizeof(T)) };                                   \
static inline V gld_##SFX(const T *p) { V v; memcpy(&v, p, sizeof v); return v; }                      \
static inline void gst_##SFX(T *p, V v) { memcpy(p, &v, sizeof v); }                                   \
                                                                                                        \
/* C (6 x NB, ldc) (+)= Ap (k-major, 6 per k) @ Bp (k x NB); add: accumulate into C */                   \
static inline void micro_##SFX(const T *restrict Ap, const T *restrict Bp, long kc, T *restrict Cm,     \
                               long ldc, int add) {                                                     \
    V acc[6][2] = {{{0}}};                                                                              \
    for (long k = 0; k < kc; k++) {                                                                     \
        V b0 = gld_##SFX(Bp + k * NB_##SFX), b1 = gld_##SFX(Bp + k * NB_##SFX + VL_##SFX);              \
        for (int r = 0; r < 6; r++) {                                                                   \
            T a = Ap[k * 6 + r];                                                                        \
            acc[r][0] += a * b0;                                                                        \
            acc[r][1] += a * b1;                                                                        \
        }                                                                                               \
    }                                                                                                   \
    for (int r = 0; r < 6; r++) {                                                                       \
        if (add) {                                                                                      \
            acc[r][0] += gld_##SFX(Cm + r * ldc);                                                       \
            acc[r][1] += gld_##SFX(Cm + r * ldc + VL_##SFX);                                            \
        }                                                                                               \
        gst_##SFX(Cm + r * ldc, acc[r][0]);                                                             \
        gst_##SFX(Cm + r * ldc + VL_##SFX, acc[r][1]);                                                  \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
void gemm_##SFX(void **argv, long t0, long t1) {                                                       \
    const T *A = (const T *)argv[0], *B = (const T *)argv[1];                                           \
    T *C = (T *)argv[2];                                                                                \
    const long *p = (const long *)argv[3];                                                              \
    const T *bias = (const T *)argv[4], *packed = (const T *)argv[5];                                   \
    long M = p[0], K = p[1], N = p[2], nb2 = p[3], tiles_m = p[4], tiles_n = p[5], mt = p[6], nct = p[7]; \
    long a_b1 = p[8], a_b2 = p[9], a_m = p[10], a_k = p[11];                                            \
    long b_b1 = p[12], b_b2 = p[13], b_k = p[14], b_n = p[15];                                          \
    long c_b1 = p[16], c_b2 = p[17], c_m = p[18];                                                       \
    long NB = NB_##SFX;                                                                                 \
    T *Ap = aligned_alloc(64, sizeof(T) * (((mt * K + 6 * K + 15) / 16) * 16));                          \
    T *Bp = aligned_alloc(64, sizeof(T) * (K * NB + 16));                                               \
    T *ct = aligned_alloc(64, sizeof(T) * 6 * NB);   /* a partial 6 x NB tile of C */                   \
    if (!Ap || !Bp || !ct) { free(Ap); free(Bp); free(ct); return; }                                     \
    long per_mat = tiles_m * tiles_n;                                                                   \
    for (long t = t0; t < t1; t++) {                                                                    \
        long mat = t / per_mat, r = t % per_mat, tm = r / tiles_n, tn = r % tiles_n;                    \
        long b1 = mat / nb2, b2 = mat % nb2;                                                            \
        const T *Am = A + b1 * a_b1 + b2 * a_b2, *Bm = B + b1 * b_b1 + b2 * b_b2;                       \
        T *Cmat = C + b1 * c_b1 + b2 * c_b2;                                                            \
        long m0 = tm * mt, m1 = m0 + mt < M ? m0 + mt : M;                                              \
        long n0 = tn * nct, n1 = n0 + nct < N ? n0 + nct : N;                                           \
        if (m0 >= m1 || n0 >= n1) continue;                                                             \
        long blocks = (m1 - m0 + 5) / 6;                                                                \
        for (long i = 0; i < blocks; i++) {        /* pack rows of A: 6-row panels, k-major */         \
            T *dst = Ap + i * 6 * K;                                                                    \
            long rows = m1 - (m0 + i * 6) < 6 ? m1 - (m0 + i * 6) : 6;                                  \
            const T *src = Am + (m0 + i * 6) * a_m;                                                     \
            for (long k = 0; k < K; k++) {                                                              \
                for (long q = 0; q < rows; q++) dst[k * 6 + q] = src[q * a_m + k * a_k];                \
                for (long q = rows; q < 6; q++) dst[k * 6 + q] = 0;                                     \
            }                                                                                           \
        }                                                                                               \
        for (long c0 = n0; c0 < n1; c0 += NB) {                                                         \
            long nc = n1 - c0 < NB ? n1 - c0 : NB;                                                      \
            const T *Bk = packed ? packed + (c0 / NB) * K * NB : Bp;                                    \
            for (long k = 0; k < (packed ? 0 : K); k++) { /* pack a column block of B, zero-padded */   \
                const T *src = Bm + k * b_k + c0 * b_n;                                                 \
                T *dst = Bp + k * NB;                                                                   \
                if (b_n == 1) memcpy(dst, src, sizeof(T) * nc);                                         \
                else for (long q = 0; q < nc; q++) dst[q] = src[q * b_n];                               \
                for (long q = nc; q < NB; q++) dst[q] = 0;                                              \
            }                                                                                           \
            for (long k0 = 0; k0 < K; k0 += KC) {                                                       \
                long kc = K - k0 < KC ? K - k0 : KC;                                                    \
                for (long i = 0; i < blocks; i++) {                                                     \
                    long row = m0 + i * 6, rows = m1 - row < 6 ? m1 - row : 6;                          \
                    const T *a = Ap + i * 6 * K + k0 * 6, *b = Bk + k0 * NB;                            \
                    if (rows == 6 && nc == NB) {                                                        \
                        micro_##SFX(a, b, kc, Cmat + row * c_m + c0, c_m, k0 > 0);                      \
                    } else {                                                                            \
                        if (k0 > 0)                                                                     \
                            for (long q = 0; q < rows; q++)                                             \
                                memcpy(ct + q * NB, Cmat + (row + q) * c_m + c0, sizeof(T) * nc);       \
                        micro_##SFX(a, b, kc, ct, NB, k0 > 0);                                          \
                        for (long q = 0; q < rows; q++)                                                 \
                            memcpy(Cmat + (row + q) * c_m + c0, ct + q * NB, sizeof(T) * nc);           \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
            if (bias)                                                                                   \
                for (long row = m0; row < m1; row++)                                                    \
                    for (long q = 0; q < nc; q++) Cmat[row * c_m + c0 + q] += bias[c0 + q];             \
        }                                                                                               \
    }                                                                                                   \
    free(Ap); free(Bp); free(ct);                                                                       \
}

GEMM_KERNEL(float, gv_f32, f32)
GEMM_KERNEL(double, gv_f64, f64)
