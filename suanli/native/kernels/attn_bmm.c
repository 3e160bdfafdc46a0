/* Batched small GEMMs (attention's q @ k^T and p @ v, and their gradients) for the compiler
 * (suanli.compiler.codegen_rows.BmmKernel): one BLAS call per matrix of a (B, H) batch, the batch
 * split between the pool's threads (fused_pool.c). np.matmul makes the same per-matrix BLAS calls
 * on one thread, and matrices this small (64 x 64 x 32) are below OpenBLAS's own threading
 * threshold, so at 2 threads this halves their time. Operands are strided views: each matrix
 * has unit stride along one axis (a transposed view passes CblasTrans), any batch strides.
 *
 * argv = {A, B, C, params, gemm} with params (int64) =
 *   {H, M, N, K, a_b, a_h, lda, a_trans, b_b, b_h, ldb, b_trans, c_b, c_h, ldc, ilp64}
 * strides in elements; gemm is cblas_[sd]gemm (ilp64: 64-bit integer arguments). */
#include <stdint.h>

typedef void (*gemm32_f)(int, int, int, int32_t, int32_t, int32_t, float, const float *, int32_t,
                         const float *, int32_t, float, float *, int32_t);
typedef void (*gemm64_f)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                         const float *, int64_t, float, float *, int64_t);
typedef void (*dgemm32_f)(int, int, int, int32_t, int32_t, int32_t, double, const double *, int32_t,
                          const double *, int32_t, double, double *, int32_t);
typedef void (*dgemm64_f)(int, int, int, int64_t, int64_t, int64_t, double, const double *, int64_t,
                          const double *, int64_t, double, double *, int64_t);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

#define BMM(T, SFX, G32, G64)                                                                   \
void attn_bmm_##SFX(void **a, long t0, long t1) {                                               \
    const T *A = (const T *)a[0], *B = (const T *)a[1];                                         \
    T *C = (T *)a[2];                                                                           \
    const int64_t *p = (const int64_t *)a[3];                                                   \
    int64_t H = p[0], M = p[1], N = p[2], K = p[3];                                             \
    int ta = p[7] ? TRANS : NO_TRANS, tb = p[11] ? TRANS : NO_TRANS;                            \
    for (long t = t0; t < t1; t++) {                                                            \
        int64_t b = t / H, h = t % H;                                                           \
        const T *Ai = A + b * p[4] + h * p[5], *Bi = B + b * p[8] + h * p[9];                   \
        T *Ci = C + b * p[12] + h * p[13];                                                      \
        if (p[15])                                                                              \
            ((G64)a[4])(ROW_MAJOR, ta, tb, M, N, K, 1, Ai, p[6], Bi, p[10], 0, Ci, p[14]);      \
        else                                                                                    \
            ((G32)a[4])(ROW_MAJOR, ta, tb, (int32_t)M, (int32_t)N, (int32_t)K, 1, Ai,           \
                        (int32_t)p[6], Bi, (int32_t)p[10], 0, Ci, (int32_t)p[14]);              \
    }                                                                                           \
}

BMM(float, f32, gemm32_f, gemm64_f)
BMM(double, f64, dgemm32_f, dgemm64_f)
