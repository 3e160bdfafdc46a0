/* Row softmax forward/backward for the compiler (suanli.compiler.rows): one pass per row with the
 * row in L1, instead of NumPy's 4-6 passes over the whole tensor. Task functions for the thread
 * pool (fused_pool.c): fn(argv, r0, r1) handles rows [r0, r1).
 *
 * argv = {x or y, [g,] out, dims} with dims = {n: row length, q: rows per matrix, causal: 0/1}.
 * Causal (top-left aligned, as torch): row r is query i = r % q and sees keys j <= i only; the
 * others get probability 0. Sums accumulate in double (float32 rows too). NaN propagates through
 * the max to the whole row, as in the NumPy reference. */
#include <math.h>

#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
double exp(double);

#define SOFTMAX(T, SFX, EXP)                                                              \
void softmax_##SFX(void **a, long r0, long r1) {                                          \
    const T *x = (const T *)a[0];                                                         \
    T *y = (T *)a[1];                                                                     \
    const long *d = (const long *)a[2];                                                   \
    long n = d[0], q = d[1], causal = d[2];                                               \
    for (long r = r0; r < r1; r++) {                                                      \
        const T *xr = x + r * n;                                                          \
        T *yr = y + r * n;                                                                \
        long valid = causal ? (r % q) + 1 : n;                                            \
        if (valid > n) valid = n;                                                         \
        T m = -INFINITY;                                                                  \
        int nan = 0;          /* a vectorizable max; NaN is tracked apart and propagates */ \
        _Pragma("omp simd reduction(max:m) reduction(|:nan)")                             \
        for (long j = 0; j < valid; j++) {                                                \
            m = xr[j] > m ? xr[j] : m;                                                    \
            nan |= xr[j] != xr[j];                                                        \
        }                                                                                 \
        if (nan) {            /* as NumPy: the whole row (masked keys too) is NaN */      \
            for (long j = 0; j < n; j++) yr[j] = NAN;                                     \
            continue;                                                                     \
        }                                                                                 \
        double s = 0;                                                                     \
        _Pragma("omp simd reduction(+:s)")                                                \
        for (long j = 0; j < valid; j++) {                                                \
            T e = EXP(xr[j] - m);                                                         \
            yr[j] = e;                                                                    \
            s += e;                                                                       \
        }                                                                                 \
        T st = (T)s;                                                                      \
        _Pragma("omp simd")                                                               \
        for (long j = 0; j < valid; j++) yr[j] = yr[j] / st;                              \
        for (long j = valid; j < n; j++) yr[j] = (T)0 / st;   /* NaN when the sum is, as NumPy */ \
    }                                                                                     \
}                                                                                         \
/* y * (g - sum(g * y)) */                                                                \
void softmax_grad_##SFX(void **a, long r0, long r1) {                                     \
    const T *y = (const T *)a[0];                                                         \
    const T *g = (const T *)a[1];                                                         \
    T *out = (T *)a[2];                                                                   \
    long n = ((const long *)a[3])[0];                                                     \
    for (long r = r0; r < r1; r++) {                                                      \
        const T *yr = y + r * n, *gr = g + r * n;                                         \
        T *o = out + r * n;                                                               \
        double s = 0;                                                                     \
        _Pragma("omp simd reduction(+:s)")                                                \
        for (long j = 0; j < n; j++) {                                                    \
            T p = gr[j] * yr[j];                                                          \
            o[j] = p;                                                                     \
            s += p;                                                                       \
        }                                                                                 \
        T st = (T)s;                                                                      \
        _Pragma("omp simd")                                                               \
        for (long j = 0; j < n; j++) o[j] = o[j] - yr[j] * st;                            \
    }                                                                                     \
}

SOFTMAX(float, f32, expf)
SOFTMAX(double, f64, exp)
