/* Direct convolution for small channel counts (LeNet-sized layers), forward and both adjoints, without
 * a batch-sized im2col matrix. groups == 1, any kernel size, padding, dilation; strides by working on
 * the stride-1 grid (see below).
 *
 *   dconv_fwd  x (N, C, H, W), w (O, C, kh, kw) -> y  (N, O, Ho, Wo)
 *   dconv_dx   g (N, O, Ho, Wo), w              -> dx (N, C, H, W)
 *   dconv_dw   x, g                             -> dw (O, C * kh * kw), this call's samples only
 *
 * Per sample, the input is zero-padded into a small buffer S (C, Hp, Wp) that stays in L1/L2. Output
 * positions run over whole padded rows ("wide": p = r * Wp + q, q < Wp), so tap k = (c, i, j) of every
 * position is the contiguous run S[koff[k] + p], koff[k] = c Hp Wp + i dh Wp + j dw: all three passes
 * are then register-blocked products with contiguous vector loads and no gathers. The Wp - Wo1 garbage
 * columns per row are dropped (forward) or carry a zero cotangent (gradients). A stride s works on the
 * stride-1 grid: the forward keeps every s-th position, the gradients see g with s - 1 zeros inserted
 * (s^2 times the work: the policy only picks this kernel for stride 1).
 *   forward      y[o, p]  = sum_k w[o, k] S[koff[k] + p]                     (O x K) @ (K x P)
 *   input grad   col[k, p] = sum_o w[o, k] G[o, p];  dS[koff[k] + p] += col  (K x O) @ (O x P), col2im
 *   weight grad  dw[o, k] = sum_n sum_p G[o, p] S[koff[k] + p]                (O x P) @ (P x K)
 * Sample ranges [n0, n1) let Python threads split a call (ctypes releases the GIL); each call is
 * single-threaded. GCC vector extensions: AVX-512 with -march=native. Suffix f32 = float, f64 = double. */
#include <stdlib.h>
#include <string.h>

typedef struct { long N, C, H, W, O, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Ho, Wo; } dgeo;

typedef float vf32 __attribute__((vector_size(64), aligned(4)));
typedef double vf64 __attribute__((vector_size(64), aligned(8)));

/* Sizes derived from the geometry; VL = lanes per vector. */
typedef struct { long Hp, Wp, H1, P, Pv, K, S; } dsizes;

static dsizes sizes(const dgeo *g, long VL) {
    dsizes z;
    z.Hp = g->H + g->pt + g->pb;
    z.Wp = g->W + g->pl + g->pr;
    z.H1 = (g->Ho - 1) * g->sh + 1;                  /* stride-1 rows the strided outputs need */
    z.P = z.H1 * z.Wp;                               /* wide positions */
    z.Pv = (z.P + VL - 1) / VL * VL;
    z.K = g->C * g->kh * g->kw;
    /* the last tap of the last vector reads S[koff[K-1] + Pv - 1] <= C Hp Wp + dw (kw-1) + Pv - P - 1 */
    z.S = g->C * z.Hp * z.Wp + g->dw * (g->kw - 1) + (z.Pv - z.P);
    return z;
}

static void tap_offsets(const dgeo *g, const dsizes *z, long *koff) {
    for (long c = 0, k = 0; c < g->C; c++)
        for (long i = 0; i < g->kh; i++)
            for (long j = 0; j < g->kw; j++, k++)
                koff[k] = c * z->Hp * z->Wp + i * g->dh * z->Wp + j * g->dw;
}

#define DIRECT(T, V, SFX)                                                                               \
enum { VL_##SFX = 64 / sizeof(T) };                                                                     \
static inline V ld_##SFX(const T *p) { V v; memcpy(&v, p, sizeof v); return v; }                        \
static inline void st_##SFX(T *p, V v) { memcpy(p, &v, sizeof v); }                                     \
/* short row copies (LeNet rows are 10-32 elements): a loop, not a memcpy call per row */               \
static inline void copy_##SFX(T *restrict d, const T *restrict s, long n) {                            \
    _Pragma("omp simd") for (long q = 0; q < n; q++) d[q] = s[q];                                       \
}                                                                                                       \
                                                                                                        \
/* dst (total elements, zeroed) gets src (C, H, W) at rows top + h zh, columns left + w zw of plane c  \
 * (plane stride `plane`, rows x cols each); what falls outside is dropped (negative top = crop) */     \
static void place_##SFX(const T *src, long C, long H, long W, long zh, long zw, long top, long left,   \
                        long rows, long cols, long plane, T *dst, long total) {                         \
    memset(dst, 0, sizeof(T) * total);                                                                  \
    for (long c = 0; c < C; c++)                                                                        \
        for (long h = 0; h < H; h++) {                                                                  \
            long r = top + h * zh;                                                                      \
            if (r < 0 || r >= rows) continue;                                                           \
            const T *s = src + (c * H + h) * W;                                                         \
            T *d = dst + c * plane + r * cols;                                                          \
            if (zw == 1) {                                                                              \
                long w0 = left < 0 ? -left : 0, w1 = cols - left < W ? cols - left : W;                 \
                copy_##SFX(d + left + w0, s + w0, w1 - w0);                                             \
            } else {                                                                                    \
                for (long w = 0; w < W; w++) {                                                          \
                    long q = left + w * zw;                                                             \
                    if (q >= 0 && q < cols) d[q] = s[w];                                                \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
}                                                                                                       \
                                                                                                        \
/* R rows x PB vectors:  Cm[coff[r] + v VL] = sum_q A[r ars + q aqs] B[boff[q] + v VL]; R, PB constant \
 * after inlining, so the accumulators live in registers */                                             \
static inline __attribute__((always_inline)) void panel_##SFX(                                          \
        const T *A, long ars, long aqs, const T *B, const long *boff, long Q, T *Cm, const long *coff,  \
        const int R, const int PB) {                                                                    \
    V acc[6][3];                                                                                        \
    for (int r = 0; r < R; r++)                                                                         \
        for (int v = 0; v < PB; v++) acc[r][v] = (V){0};                                                \
    for (long q = 0; q < Q; q++) {                                                                      \
        const T *b = B + boff[q];                                                                       \
        V bv[3];                                                                                        \
        for (int v = 0; v < PB; v++) bv[v] = ld_##SFX(b + v * VL_##SFX);                                \
        for (int r = 0; r < R; r++) {                                                                   \
            T a = A[r * ars + q * aqs];                                                                 \
            for (int v = 0; v < PB; v++) acc[r][v] += a * bv[v];                                        \
        }                                                                                               \
    }                                                                                                   \
    for (int r = 0; r < R; r++)                                                                         \
        for (int v = 0; v < PB; v++) st_##SFX(Cm + coff[r] + v * VL_##SFX, acc[r][v]);                  \
}                                                                                                       \
                                                                                                        \
/* Cm rows (coff) over Pv wide positions = A (rows x Q) @ B rows (boff); rows blocked by 6, positions  \
 * by 3 vectors (18 accumulators + 3 loads of 32 vector registers) */                                   \
static void product_##SFX(const T *A, long ars, long aqs, long rows, const T *B, const long *boff,     \
                          long Q, T *Cm, const long *coff, long Pv) {                                   \
    for (long p0 = 0; p0 < Pv; p0 += 3 * VL_##SFX) {                                                    \
        long left = (Pv - p0) / VL_##SFX;                                                               \
        int PB = left < 3 ? (int)left : 3;                                                              \
        for (long r0 = 0; r0 < rows; r0 += 6) {                                                         \
            int R = rows - r0 < 6 ? (int)(rows - r0) : 6;                                               \
            const T *Ar = A + r0 * ars;                                                                 \
            const long *cr = coff + r0;                                                                 \
            switch (R * 4 + PB) {                                                                    \
            case 1*4+1: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 1, 1); break;           \
            case 1*4+2: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 1, 2); break;           \
            case 1*4+3: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 1, 3); break;           \
            case 2*4+1: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 2, 1); break;           \
            case 2*4+2: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 2, 2); break;           \
            case 2*4+3: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 2, 3); break;           \
            case 3*4+1: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 3, 1); break;           \
            case 3*4+2: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 3, 2); break;           \
            case 3*4+3: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 3, 3); break;           \
            case 4*4+1: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 4, 1); break;           \
            case 4*4+2: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 4, 2); break;           \
            case 4*4+3: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 4, 3); break;           \
            case 5*4+1: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 5, 1); break;           \
            case 5*4+2: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 5, 2); break;           \
            case 5*4+3: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 5, 3); break;           \
            case 6*4+1: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 6, 1); break;           \
            case 6*4+2: panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 6, 2); break;           \
            default:    panel_##SFX(Ar, ars, aqs, B + p0, boff, Q, Cm + p0, cr, 6, 3); break;           \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
}                                                                                                       \
                                                                                                        \
int dconv_fwd_##SFX(const T *restrict x, const T *restrict w, T *restrict y, const dgeo *g,            \
                    long n0, long n1) {                                                                 \
    dsizes z = sizes(g, VL_##SFX);                                                                      \
    long O = g->O, *koff = malloc(sizeof(long) * (z.K + O));                                            \
    T *S = malloc(sizeof(T) * (z.S + O * z.Pv));                                                        \
    if (!koff || !S) { free(koff); free(S); return -1; }                                                \
    long *coff = koff + z.K;                                                                            \
    T *wide = S + z.S;                                                                                  \
    tap_offsets(g, &z, koff);                                                                           \
    for (long o = 0; o < O; o++) coff[o] = o * z.Pv;                                                    \
    for (long n = n0; n < n1; n++) {                                                                    \
        place_##SFX(x + n * g->C * g->H * g->W, g->C, g->H, g->W, 1, 1, g->pt, g->pl, z.Hp, z.Wp,       \
                    z.Hp * z.Wp, S, z.S);                                                               \
        product_##SFX(w, z.K, 1, O, S, koff, z.K, wide, coff, z.Pv);                                    \
        T *out = y + n * O * g->Ho * g->Wo;                                                             \
        for (long o = 0; o < O; o++)                                                                    \
            for (long r = 0; r < g->Ho; r++) {                                                          \
                const T *src = wide + o * z.Pv + r * g->sh * z.Wp;                                      \
                T *dst = out + (o * g->Ho + r) * g->Wo;                                                 \
                if (g->sw == 1) copy_##SFX(dst, src, g->Wo);                                            \
                else for (long q = 0; q < g->Wo; q++) dst[q] = src[q * g->sw];                          \
            }                                                                                           \
    }                                                                                                   \
    free(koff); free(S);                                                                                \
    return 0;                                                                                           \
}                                                                                                       \
                                                                                                        \
int dconv_dx_##SFX(const T *restrict gr, const T *restrict w, T *restrict dx, const dgeo *g,           \
                   long n0, long n1) {                                                                  \
    dsizes z = sizes(g, VL_##SFX);                                                                      \
    long O = g->O, K = z.K, *koff = malloc(sizeof(long) * (2 * K + O));                                 \
    T *dS = malloc(sizeof(T) * (z.S + O * z.Pv + K * z.Pv));                                            \
    if (!koff || !dS) { free(koff); free(dS); return -1; }                                              \
    long *goff = koff + K, *coff = goff + O;                                                            \
    T *G = dS + z.S, *col = G + O * z.Pv;                                                               \
    tap_offsets(g, &z, koff);                                                                           \
    for (long o = 0; o < O; o++) goff[o] = o * z.Pv;                                                    \
    for (long k = 0; k < K; k++) coff[k] = k * z.Pv;                                                    \
    for (long n = n0; n < n1; n++) {                                                                    \
        /* g with stride - 1 zeros between entries, on the wide stride-1 grid (zero garbage columns) */ \
        place_##SFX(gr + n * O * g->Ho * g->Wo, O, g->Ho, g->Wo, g->sh, g->sw, 0, 0, z.H1, z.Wp, z.Pv,  \
                    G, O * z.Pv);                                                                       \
        product_##SFX(w, 1, K, K, G, goff, O, col, coff, z.Pv);          /* col = w^T G */              \
        memset(dS, 0, sizeof(T) * z.S);                                                                 \
        for (long t = 0; t < K; t++) {              /* col2im, one tap at a time; col is 0 past P */    \
            /* channel fastest: consecutive taps write planes apart, so a load never waits on the      \
             * previous tap's overlapping store */                                                     \
            long k = (t % g->C) * (K / g->C) + t / g->C;                                                \
            T *d = dS + koff[k];                                                                        \
            const T *c = col + k * z.Pv;                                                                \
            for (long p = 0; p < z.Pv; p += VL_##SFX)                                                   \
                st_##SFX(d + p, ld_##SFX(d + p) + ld_##SFX(c + p));                                     \
        }                                                                                               \
        T *out = dx + n * g->C * g->H * g->W;                                                           \
        for (long c = 0; c < g->C; c++)                                                                 \
            for (long h = 0; h < g->H; h++)                                                             \
                copy_##SFX(out + (c * g->H + h) * g->W, dS + (c * z.Hp + h + g->pt) * z.Wp + g->pl,      \
                           g->W);                                                                       \
    }                                                                                                   \
    free(koff); free(dS);                                                                               \
    return 0;                                                                                           \
}                                                                                                       \
                                                                                                        \
/* dw[o, k] over samples [n0, n1) (overwritten). Small weights (O K vectors fit in 512 KiB): samples   \
 * are taken in chunks whose padded inputs and cotangents fit in L1 (~24 KiB), and each 4 x 4 (o, k)   \
 * block's accumulator vectors are kept across chunks in `part` (L2), reduced across lanes once at the \
 * end (chunks of ~512 KiB reduced per chunk ran from L2: 2x slower on LeNet's C3). Large weights:     \
 * `part` would spill to memory, so chunks of ~512 KiB are reduced into dw per chunk instead. */        \
int dconv_dw_##SFX(const T *restrict x, const T *restrict gr, T *restrict dw, const dgeo *g,           \
                   long n0, long n1) {                                                                  \
    dsizes z = sizes(g, VL_##SFX);                                                                      \
    long O = g->O, K = z.K, OB = (O + 3) / 4, KB = (K + 3) / 4;                                         \
    long per = (z.S + VL_##SFX - 1) / VL_##SFX * VL_##SFX + O * z.Pv;    /* G rows vector-aligned */    \
    int keep = O * K * (long)sizeof(V) <= (512L << 10);                                                 \
    long chunk = (keep ? 24L << 10 : 512L << 10) / (long)(sizeof(T) * per);                            \
    if (chunk < 1) chunk = 1;                                                                           \
    long *koff = malloc(sizeof(long) * (K + 3));                                                        \
    size_t bytes = sizeof(T) * (per * chunk + 4 * z.Pv);                                                \
    T *buf = aligned_alloc(64, (bytes + 63) / 64 * 64);     /* aligned_alloc wants a multiple of 64 */  \
    V *part = aligned_alloc(64, sizeof(V) * 16 * (keep ? OB * KB : 1));                                 \
    if (!koff || !buf || !part) { free(koff); free(buf); free(part); return -1; }                       \
    tap_offsets(g, &z, koff);                                                                           \
    for (long k = K; k < K + 3; k++) koff[k] = koff[K - 1];     /* taps past the end: duplicates */     \
    memset(part, 0, sizeof(V) * 16 * (keep ? OB * KB : 1));                                             \
    memset(dw, 0, sizeof(T) * O * K);                                                                   \
    T *zero = buf + per * chunk;                                 /* G rows past the end: zeros */       \
    memset(zero, 0, sizeof(T) * 4 * z.Pv);                                                              \
    for (long c0 = n0; c0 < n1; c0 += chunk) {                                                          \
        long nb = n1 - c0 < chunk ? n1 - c0 : chunk;                                                    \
        for (long b = 0; b < nb; b++) {                                                                 \
            T *S = buf + b * per;                                                                       \
            place_##SFX(x + (c0 + b) * g->C * g->H * g->W, g->C, g->H, g->W, 1, 1, g->pt, g->pl, z.Hp,  \
                        z.Wp, z.Hp * z.Wp, S, z.S);                                                     \
            place_##SFX(gr + (c0 + b) * O * g->Ho * g->Wo, O, g->Ho, g->Wo, g->sh, g->sw, 0, 0, z.H1,   \
                        z.Wp, z.Pv, S + per - O * z.Pv, O * z.Pv);                                      \
        }                                                                                               \
        for (long ob = 0; ob < OB; ob++)                                                                \
            for (long kb = 0; kb < KB; kb++) {                                                          \
                V *pp = part + (keep ? 16 * (ob * KB + kb) : 0), acc[4][4];                             \
                for (int r = 0; r < 4; r++)                                                             \
                    for (int c = 0; c < 4; c++) acc[r][c] = pp[4 * r + c];                              \
                for (long b = 0; b < nb; b++) {                                                         \
                    const T *S = buf + b * per, *G[4], *s[4];                                           \
                    for (int r = 0; r < 4; r++)                                                         \
                        G[r] = 4 * ob + r < O ? S + per + (4 * ob + r - O) * z.Pv : zero + r * z.Pv;    \
                    for (int c = 0; c < 4; c++) s[c] = S + koff[4 * kb + c];                            \
                    for (long p = 0; p < z.Pv; p += VL_##SFX) {                                         \
                        V a[4], v[4];                                                                   \
                        for (int r = 0; r < 4; r++) a[r] = *(const V *)__builtin_assume_aligned(G[r] + p, 64); \
                        for (int c = 0; c < 4; c++) v[c] = ld_##SFX(s[c] + p);                          \
                        /* keep the 8 operands in registers (GCC otherwise re-loads them per FMA) */   \
                        __asm__("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]));                   \
                        __asm__("" : "+v"(v[0]), "+v"(v[1]), "+v"(v[2]), "+v"(v[3]));                   \
                        for (int r = 0; r < 4; r++)                                                     \
                            for (int c = 0; c < 4; c++) acc[r][c] += a[r] * v[c];                       \
                    }                                                                                   \
                }                                                                                       \
                if (keep) {                                                                             \
                    for (int r = 0; r < 4; r++)                                                         \
                        for (int c = 0; c < 4; c++) pp[4 * r + c] = acc[r][c];                          \
                    continue;                                                                           \
                }                                                                                       \
                for (int r = 0; r < 4 && 4 * ob + r < O; r++)                                           \
                    for (int c = 0; c < 4 && 4 * kb + c < K; c++) {                                     \
                        T sum = 0;                                                                      \
                        for (int l = 0; l < VL_##SFX; l++) sum += acc[r][c][l];                         \
                        dw[(4 * ob + r) * K + 4 * kb + c] += sum;                                       \
                    }                                                                                   \
            }                                                                                           \
    }                                                                                                   \
    for (long o = 0; o < O && keep; o++)                                                                \
        for (long k = 0; k < K; k++) {                                                                  \
            V v = part[16 * ((o / 4) * KB + k / 4) + 4 * (o % 4) + k % 4];                              \
            T sum = 0;                                                                                  \
            for (int l = 0; l < VL_##SFX; l++) sum += v[l];                                             \
            dw[o * K + k] = sum;                                                                        \
        }                                                                                               \
    free(koff); free(buf); free(part);                                                                  \
    return 0;                                                                                           \
}

DIRECT(float, vf32, f32)
DIRECT(double, vf64, f64)
