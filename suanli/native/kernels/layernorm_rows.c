/* The layer-norm core (suanli's `standardize` primitive over trailing axes) and its gradient, one
 * row at a time with the row in L1, for the compiler (suanli.compiler.rows). Task functions for the
 * thread pool (fused_pool.c): fn(argv, r0, r1) handles rows [r0, r1). Statistics accumulate in
 * double (float32 rows too), so results are at least as accurate as the NumPy reference.
 *
 *   standardize:      argv = {x, y, dims},    y = (x - mean) * rstd, rstd = 1 / sqrt(var + eps)
 *   standardize_grad: argv = {x, y, g, out, dims},
 *                     out = rstd * (g - mean(g) - y * mean(g * y))   (rstd recomputed from x)
 * dims = {n: row length} and eps is passed as a double through argv's last slot. */
#include <math.h>

#define LAYERNORM(T, SFX)                                                                 \
static double rstd_##SFX(const T *xr, long n, double eps, double *mean_out) {             \
    double s = 0;                                                                         \
    _Pragma("omp simd reduction(+:s)")                                                    \
    for (long j = 0; j < n; j++) s += xr[j];                                              \
    double mean = s / n, v = 0;                                                           \
    _Pragma("omp simd reduction(+:v)")                                                    \
    for (long j = 0; j < n; j++) { double c = xr[j] - mean; v += c * c; }                 \
    *mean_out = mean;                                                                     \
    return 1.0 / sqrt(v / n + eps);                                                       \
}                                                                                         \
void standardize_##SFX(void **a, long r0, long r1) {                                      \
    const T *x = (const T *)a[0];                                                         \
    T *y = (T *)a[1];                                                                     \
    long n = ((const long *)a[2])[0];                                                     \
    double eps = *(const double *)a[3];                                                   \
    for (long r = r0; r < r1; r++) {                                                      \
        const T *xr = x + r * n;                                                          \
        T *yr = y + r * n;                                                                \
        double mean, rstd = rstd_##SFX(xr, n, eps, &mean);                                \
        _Pragma("omp simd")                                                               \
        for (long j = 0; j < n; j++) yr[j] = (T)((xr[j] - mean) * rstd);                  \
    }                                                                                     \
}                                                                                         \
void standardize_grad_##SFX(void **a, long r0, long r1) {                                 \
    const T *x = (const T *)a[0], *y = (const T *)a[1], *g = (const T *)a[2];             \
    T *out = (T *)a[3];                                                                   \
    long n = ((const long *)a[4])[0];                                                     \
    double eps = *(const double *)a[5];                                                   \
    for (long r = r0; r < r1; r++) {                                                      \
        const T *xr = x + r * n, *yr = y + r * n, *gr = g + r * n;                        \
        T *o = out + r * n;                                                               \
        double mean, rstd = rstd_##SFX(xr, n, eps, &mean);                                \
        double sg = 0, sgy = 0;                                                           \
        _Pragma("omp simd reduction(+:sg, sgy)")                                          \
        for (long j = 0; j < n; j++) { sg += gr[j]; sgy += (double)gr[j] * yr[j]; }       \
        double mg = sg / n, mgy = sgy / n;                                                \
        _Pragma("omp simd")                                                               \
        for (long j = 0; j < n; j++) o[j] = (T)(rstd * (gr[j] - mg - yr[j] * mgy));       \
    }                                                                                     \
}                                                                                         \
/* layer norm with a weight, backward in one pass: gx = standardize_grad(x, y, g * w) and this   \
 * task's partial of dw = sum over rows of g * y. Task t covers rows [t * rb, (t + 1) * rb);    \
 * argv = {x, y, g, w, out, partials (tasks x n doubles), dims = {n, rows, rb}, &eps} */       \
void standardize_grad_affine_##SFX(void **a, long t0, long t1) {                          \
    const T *x = (const T *)a[0], *y = (const T *)a[1], *g = (const T *)a[2];             \
    const T *w = (const T *)a[3];                                                         \
    T *out = (T *)a[4];                                                                   \
    double *part = (double *)a[5];                                                        \
    const long *d = (const long *)a[6];                                                   \
    long n = d[0], rows = d[1], rb = d[2];                                                \
    double eps = *(const double *)a[7];                                                   \
    for (long t = t0; t < t1; t++) {                                                      \
        double *pw = part + t * n;                                                        \
        for (long j = 0; j < n; j++) pw[j] = 0;                                           \
        long r1 = (t + 1) * rb < rows ? (t + 1) * rb : rows;                              \
        for (long r = t * rb; r < r1; r++) {                                              \
            const T *xr = x + r * n, *yr = y + r * n, *gr = g + r * n;                    \
            T *o = out + r * n;                                                           \
            double mean, rstd = rstd_##SFX(xr, n, eps, &mean);                            \
            double sg = 0, sgy = 0;                                                       \
            _Pragma("omp simd reduction(+:sg, sgy)")                                      \
            for (long j = 0; j < n; j++) {                                                \
                T gw = gr[j] * w[j];                                                      \
                sg += gw;                                                                 \
                sgy += (double)gw * yr[j];                                                \
                pw[j] += (double)(gr[j] * yr[j]);                                         \
            }                                                                             \
            double mg = sg / n, mgy = sgy / n;                                            \
            _Pragma("omp simd")                                                           \
            for (long j = 0; j < n; j++)                                                  \
                o[j] = (T)(rstd * ((T)(gr[j] * w[j]) - mg - yr[j] * mgy));                \
        }                                                                                 \
    }                                                                                     \
}

LAYERNORM(float, f32)
LAYERNORM(double, f64)
