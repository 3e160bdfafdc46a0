/* float32 erf and GELU in one pass each (the NumPy path needs ~23 passes for the same formula),
 * vectorized by the compiler. */

/* erf(x) = x * P(x^2) / Q(x^2) on x clipped to [-4, 4] (the coefficients of Eigen's
 * generic_fast_erf_float; the NumPy path evaluates the same formula). NaN propagates. */
static inline float erf_rational(float x) {
    float c = x < -4.f ? -4.f : (x > 4.f ? 4.f : x);
    if (x != x) c = x;
    float x2 = c * c;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return c * p / q;
}

void erf_f32(const float *x, float *out, long n) {
    #pragma omp simd
    for (long i = 0; i < n; i++) out[i] = erf_rational(x[i]);
}

void gelu_f32(const float *x, float *out, long n) {
    #pragma omp simd
    for (long i = 0; i < n; i++) {
        float v = x[i];
        out[i] = v * 0.5f * (1.0f + erf_rational(v * 0.70710678118654752f));
    }
}
