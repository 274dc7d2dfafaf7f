/* hwaware fixed-point kernels (loaded by _native.py; the contract is docs/fixedpoint.md).

   Built for the build machine's CPU (-march=native; the cache key holds the CPU's flags). Mode
   eyeriss has an AVX-512 path (BW + VBMI2 + VNNI) used when the compiler targets those
   instructions: hw_simd() says whether it is there, and the scalar loops below stay the reference
   path for every other case (grouped convolutions, shifts outside 1..30, other CPUs). */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

static inline __attribute__((always_inline)) int32_t cut16(int32_t q, const int saturate) {
  if (saturate) return q < -32768 ? -32768 : (q > 32767 ? 32767 : q);
  return (int32_t)(int16_t)(uint16_t)(uint32_t)q;
}

/* One product shifted and cut: *r = cut16(q), returns 1 when q left 16 bits.
   general = 0: int32 arithmetic, 1 <= s <= 30. general = 1: int64, any s (a left shift for s <= 0,
   capped at 32 bits, which leaves every flag and result unchanged since |x*w| <= 2**30). */
static inline __attribute__((always_inline)) int32_t product(int32_t xv, int32_t wv, int s, int64_t rnd,
                                                             int32_t *r, const int saturate,
                                                             const int general) {
  if (!general) {
    const int32_t q = (xv * wv + (int32_t)rnd) >> s;
    *r = cut16(q, saturate);
    return *r != q;
  }
  int64_t q = (int64_t)xv * wv;
  if (s > 0) q = (q + rnd) >> (s > 62 ? 62 : s);
  else q = (int64_t)((uint64_t)q << (-s > 32 ? 32 : -s));
  const int64_t c = saturate ? (q < -32768 ? -32768 : (q > 32767 ? 32767 : q))
                             : (int64_t)(int16_t)(uint16_t)(uint64_t)q;
  *r = (int32_t)c;
  return c != q;
}

/* Mode eyeriss. For p0 <= p < p1 (p = n*EF + ef) and output channel o = g*Mg + m:
     acc = sum_k cut16((X[p, g, k] * W[o, k] + rnd) >> s)
     t   = acc + bias[o];  y = wrap16(t);  relu: y = max(y, 0)
   y goes to out[n, o, ef] (N x M x EF int16). counts[0] += products that left 16 bits,
   counts[1] += outputs whose exact t left 16 bits. X: P x G x Kg, W: M x Kg (int16). */
static inline __attribute__((always_inline)) void eyeriss_body(
    const int16_t *X, const int16_t *W, const int32_t *bias, int16_t *out, int64_t p0, int64_t p1,
    int64_t G, int64_t Mg, int64_t Kg, int64_t EF, int s, int64_t rnd, int relu, int64_t *counts,
    const int saturate, const int general) {
  int64_t n_prod = 0, n_out = 0;
  const int64_t ldx = G * Kg, M = G * Mg;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p / EF, ef = p % EF;
    int16_t *o = out + n * M * EF + ef;
    for (int64_t g = 0; g < G; ++g) {
      const int16_t *x = X + p * ldx + g * Kg;
      int64_t m = g * Mg;
      const int64_t mend = m + Mg;
      int32_t acc[4];
      for (; m < mend; m += 4) {
        const int64_t left = mend - m;
        if (left >= 4) {
          const int16_t *w0 = W + m * Kg, *w1 = w0 + Kg, *w2 = w1 + Kg, *w3 = w2 + Kg;
          int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0;
          for (int64_t k = 0; k < Kg; ++k) {
            const int32_t xv = x[k];
            int32_t r0, r1, r2, r3;
            c0 += product(xv, w0[k], s, rnd, &r0, saturate, general);
            c1 += product(xv, w1[k], s, rnd, &r1, saturate, general);
            c2 += product(xv, w2[k], s, rnd, &r2, saturate, general);
            c3 += product(xv, w3[k], s, rnd, &r3, saturate, general);
            a0 += r0; a1 += r1; a2 += r2; a3 += r3;
          }
          acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
          n_prod += (int64_t)c0 + c1 + c2 + c3;
        } else {
          for (int64_t j = 0; j < left; ++j) {
            const int16_t *w0 = W + (m + j) * Kg;
            int32_t a0 = 0, c0 = 0;
            for (int64_t k = 0; k < Kg; ++k) {
              int32_t r0;
              c0 += product(x[k], w0[k], s, rnd, &r0, saturate, general);
              a0 += r0;
            }
            acc[j] = a0;
            n_prod += c0;
          }
        }
        const int64_t cnt = left < 4 ? left : 4;
        for (int64_t j = 0; j < cnt; ++j) {
          const int64_t t = (int64_t)acc[j] + (bias ? bias[m + j] : 0);
          n_out += (t < -32768) | (t > 32767);
          int32_t y = (int32_t)(int16_t)(uint16_t)(uint64_t)t;
          if (relu && y < 0) y = 0;
          o[(m + j) * EF] = (int16_t)y;
        }
      }
    }
  }
  counts[0] += n_prod;
  counts[1] += n_out;
}

#define EYERISS_ENTRY(NAME, SAT, GEN)                                                            \
  void NAME(const int16_t *X, const int16_t *W, const int32_t *bias, int16_t *out, int64_t p0,       \
            int64_t p1, int64_t G, int64_t Mg, int64_t Kg, int64_t EF, int s, int64_t rnd, int relu, \
            int64_t *counts) {                                                                      \
    eyeriss_body(X, W, bias, out, p0, p1, G, Mg, Kg, EF, s, rnd, relu, counts, SAT, GEN);          \
  }
EYERISS_ENTRY(hw_eyeriss_wrap, 0, 0)
EYERISS_ENTRY(hw_eyeriss_sat, 1, 0)
EYERISS_ENTRY(hw_eyeriss_wrap_any_shift, 0, 1)
EYERISS_ENTRY(hw_eyeriss_sat_any_shift, 1, 1)

/* Column matrix of an unpadded N x C x H x W int16 input for rows p0 <= p < p1 (p = (n*E + e)*F + f),
   columns (c, r, s); positions in the zero padding read code 0. limbs = 0: int16 columns in `hi`;
   limbs = 1: int8 hi = v >> 8 and lo = (v & 255) - 128 (the wide mode's limbs). */
void hw_im2col(const int16_t *x, void *hi, int8_t *lo, int64_t N, int64_t C, int64_t H, int64_t W,
               int64_t R, int64_t S, int64_t U, int64_t Uw, int64_t P, int64_t Pw, int64_t E, int64_t F,
               int64_t p0, int64_t p1, int limbs) {
  const int64_t K = C * R * S;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p / (E * F), e = (p / F) % E, f = p % F;
    int16_t *o16 = (int16_t *)hi + p * K;
    int8_t *oh = (int8_t *)hi + p * K, *ol = lo + p * K;
    int64_t k = 0;
    for (int64_t c = 0; c < C; ++c) {
      const int16_t *plane = x + (n * C + c) * H * W;
      for (int64_t r = 0; r < R; ++r) {
        const int64_t h = e * U + r - P, w0 = f * Uw - Pw;
        if (h >= 0 && h < H && w0 >= 0 && w0 + S <= W) {  /* interior: no padding to check */
          const int16_t *src = plane + h * W + w0;
          if (limbs) {
            for (int64_t q = 0; q < S; ++q) {
              oh[k + q] = (int8_t)(src[q] >> 8);
              ol[k + q] = (int8_t)((src[q] & 255) - 128);
            }
          } else {
            for (int64_t q = 0; q < S; ++q) o16[k + q] = src[q];
          }
          k += S;
          continue;
        }
        for (int64_t q = 0; q < S; ++q, ++k) {
          const int64_t w = f * Uw + q - Pw;
          const int16_t v = (h >= 0 && h < H && w >= 0 && w < W) ? plane[h * W + w] : 0;
          if (limbs) {
            oh[k] = (int8_t)(v >> 8);
            ol[k] = (int8_t)((v & 255) - 128);
          } else {
            o16[k] = v;
          }
        }
      }
    }
  }
}

/* Shift by s (floor or nearest; s <= 0 is an exact left shift), cut to `bits` (wrap or saturate).
   Exact for |t| < 2**61; *over = 1 when the shifted value did not fit. */
static inline int64_t shift_cut(int64_t t, int s, int nearest, int saturate, int bits, int *over) {
  const int64_t lo = -((int64_t)1 << (bits - 1)), hi = ((int64_t)1 << (bits - 1)) - 1;
  int64_t q;
  if (s > 0) {
    const int sc = s > 62 ? 62 : s;
    if (nearest) t += (int64_t)1 << (sc - 1);
    q = t >> sc;
  } else {
    const int k = -s;
    int64_t c = t < lo - 1 ? lo - 1 : (t > hi + 1 ? hi + 1 : t);
    c = (int64_t)((uint64_t)c << (k < bits + 1 ? k : bits + 1));
    *over = (c < lo) | (c > hi);
    if (saturate) return c < lo ? lo : (c > hi ? hi : c);
    if (k >= bits) return 0;
    q = (int64_t)(((uint64_t)t & (((uint64_t)1 << bits) - 1)) << k);
    const uint64_t mask = ((uint64_t)1 << bits) - 1, u = ((uint64_t)q) & mask;
    return (int64_t)(u ^ ((uint64_t)1 << (bits - 1))) - ((int64_t)1 << (bits - 1));
  }
  *over = (q < lo) | (q > hi);
  if (saturate) return q < lo ? lo : (q > hi ? hi : q);
  const uint64_t mask = ((uint64_t)1 << bits) - 1, u = ((uint64_t)q) & mask;
  return (int64_t)(u ^ ((uint64_t)1 << (bits - 1))) - ((int64_t)1 << (bits - 1));
}

/* Mode wide, from int8-limb GEMMs (x = 256*xh + xl + 128, w likewise), P x (M+1) int32 each,
   whose column M multiplies by ones (so hh[p, M] = sum of xh, lh[p, M] = sum of xl):
     t = 65536*hh + 256*(hl + lh) + ll + 128*(256*hh[p, M] + lh[p, M]) + 128*colsum[o] + 16384*K
   or, when hh is NULL, t = ll64[p, o] (an exact int64 sum, P x M). Then + bias[o], shift/cut,
   ReLU, out[n, o, ef]. Returns how many outputs left the range. */
static inline __attribute__((always_inline)) int64_t finalize_body(
    const int32_t *hh, const int32_t *hl, const int32_t *lh, const int32_t *ll, const int64_t *ll64,
    const int64_t *colsum, int64_t K, const int64_t *bias, int16_t *out, int64_t p0, int64_t p1,
    int64_t M, int64_t EF, int s, int nearest, int saturate, int bits, int relu, const int fast) {
  int64_t n_over = 0;
  const int64_t lo = -((int64_t)1 << (bits - 1)), hi = ((int64_t)1 << (bits - 1)) - 1;
  const int64_t rnd = (fast && nearest) ? ((int64_t)1 << (s - 1)) : 0;
  /* tiles of 64 rows x 64 channels: reads along m, writes along ef stay in cache */
  for (int64_t pt = p0; pt < p1; pt += 64) {
    const int64_t pe = pt + 64 < p1 ? pt + 64 : p1;
    for (int64_t mt = 0; mt < M; mt += 64) {
      const int64_t me = mt + 64 < M ? mt + 64 : M;
      for (int64_t p = pt; p < pe; ++p) {
        const int64_t n = p / EF, ef = p % EF;
        int16_t *o = out + n * M * EF + ef;
        const int64_t r = p * (M + 1) + M;
        const int64_t rows = hh ? 128 * (256 * (int64_t)hh[r] + lh[r]) + 16384 * K : 0;
        for (int64_t m = mt; m < me; ++m) {
          int64_t t;
          if (hh) {
            const int64_t i = p * (M + 1) + m;
            t = ((int64_t)hh[i] << 16) + (((int64_t)hl[i] + lh[i]) << 8) + ll[i] + 128 * colsum[m] + rows;
          } else {
            t = ll64[p * M + m];
          }
          if (bias) t += bias[m];
          int64_t y;
          if (fast) {  /* 1 <= s <= 62, 16-bit output */
            const int64_t q = (t + rnd) >> s;
            const int ov = (q < lo) | (q > hi);
            n_over += ov;
            y = saturate ? (q < lo ? lo : (q > hi ? hi : q)) : (int64_t)(int16_t)(uint16_t)(uint64_t)q;
          } else {
            int over = 0;
            y = shift_cut(t, s, nearest, saturate, bits, &over);
            n_over += over;
          }
          if (relu && y < 0) y = 0;
          o[m * EF] = (int16_t)y;
        }
      }
    }
  }
  return n_over;
}

int64_t hw_wide_finalize(const int32_t *hh, const int32_t *hl, const int32_t *lh, const int32_t *ll,
                         const int64_t *ll64, const int64_t *colsum, int64_t K,
                         const int64_t *bias, int16_t *out, int64_t p0, int64_t p1, int64_t M,
                         int64_t EF, int s, int nearest, int saturate, int bits, int relu) {
  if (s >= 1 && s <= 62 && bits == 16)
    return finalize_body(hh, hl, lh, ll, ll64, colsum, K, bias, out, p0, p1, M, EF, s, nearest,
                         saturate, bits, relu, 1);
  return finalize_body(hh, hl, lh, ll, ll64, colsum, K, bias, out, p0, p1, M, EF, s, nearest, saturate,
                       bits, relu, 0);
}

/* ---- NHWC column matrices and tiled finalize (groups = 1) --------------------------------------- */

/* Rows p0 <= p < p1 (p = (n*E + e)*F + f) of the column matrix of a zero-padded NHWC input
   xp (N x Hp x Wp x C, elements of `esz` bytes), columns (r, s, c): row r of a patch is one
   contiguous run of S*C elements whatever the stride. Row p goes to out + (p - p0)*ld bytes. */
void hw_im2col_nhwc(const void *xp, void *out, int64_t ld, int64_t esz, int64_t Hp, int64_t Wp,
                    int64_t C, int64_t R, int64_t S, int64_t U, int64_t Uw, int64_t E, int64_t F,
                    int64_t p0, int64_t p1) {
  const char *x = (const char *)xp;
  const int64_t run = S * C * esz;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p / (E * F), e = (p / F) % E, f = p % F;
    char *dst = (char *)out + (p - p0) * ld;
    const char *src = x + ((n * Hp + e * U) * Wp + f * Uw) * C * esz;
    for (int64_t r = 0; r < R; ++r) memcpy(dst + r * run, src + r * Wp * C * esz, (size_t)run);
  }
}

/* Mode wide from three int8 GEMMs over a tile of rows p0 <= p < p1 (x = 256*xh + xl + 128, w alike):
     hh = xh.[wh | 1]  (T x (M+1)),  mix = [xh | xl].[wl ; wh]  (T x M),  ll = xl.[wl | 1]  (T x (M+1))
     t  = 65536*hh + 256*mix + ll + 128*(256*hh[., M] + ll[., M]) + 128*colsum[m] + 16384*K
   then + bias, shift by s (1..62), cut to 16 bits, ReLU, out[n, m, ef]. Returns the outputs cut. */
int64_t hw_wide_finalize3(const int32_t *hh, const int32_t *mix, const int32_t *ll, const int64_t *colsum,
                          int64_t K, const int64_t *bias, int16_t *out, int64_t p0, int64_t p1, int64_t M,
                          int64_t EF, int s, int nearest, int saturate, int relu) {
  int64_t n_over = 0;
  const int64_t rnd = nearest ? ((int64_t)1 << (s - 1)) : 0;
  for (int64_t pt = p0; pt < p1; pt += 64) {
    const int64_t pe = pt + 64 < p1 ? pt + 64 : p1;
    for (int64_t mt = 0; mt < M; mt += 64) {
      const int64_t me = mt + 64 < M ? mt + 64 : M;
      for (int64_t p = pt; p < pe; ++p) {
        const int64_t i = p - p0, n = p / EF, ef = p % EF;
        const int32_t *h = hh + i * (M + 1), *x = mix + i * M, *l = ll + i * (M + 1);
        const int64_t rows = 128 * (256 * (int64_t)h[M] + l[M]) + 16384 * K;
        int16_t *o = out + n * M * EF + ef;
        for (int64_t m = mt; m < me; ++m) {
          int64_t t = ((int64_t)h[m] << 16) + ((int64_t)x[m] << 8) + l[m] + 128 * colsum[m] + rows;
          if (bias) t += bias[m];
          const int64_t q = (t + rnd) >> s;
          const int ov = (q < -32768) | (q > 32767);
          n_over += ov;
          int64_t y = saturate ? (q < -32768 ? -32768 : (q > 32767 ? 32767 : q))
                               : (int64_t)(int16_t)(uint16_t)(uint64_t)q;
          if (relu && y < 0) y = 0;
          o[m * EF] = (int16_t)y;
        }
      }
    }
  }
  return n_over;
}

/* ---- mode eyeriss, AVX-512 ------------------------------------------------------------------------ */
#if defined(__AVX512BW__) && defined(__AVX512VBMI2__) && defined(__AVX512VNNI__)
#include <immintrin.h>
int hw_simd(void) { return 1; }

/* One 32-lane vector of products x*w (lanes = 16 channels x 2 adjacent k) shifted and cut:
   lo/hi = low/high 16 bits of the exact 32-bit products (vpmullw/vpmulhw); rounding `nearest` adds
   2**(s-1) to the pair with the carry; s <= 15: bits s..s+15 (a funnel shift, vpshrdvw), the
   product left 16 bits iff hi is outside [-2**(s-1), 2**(s-1)) (lanes counted in *cnt; saturate
   then writes 32767 or -32768 by the sign); s >= 16: hi >> (s - 16), which always fits
   (|x*w| <= 2**30). */
static inline __attribute__((always_inline)) __m512i cut_products(
    __m512i xb, __m512i wv, const int s16, const int nearest, const int saturate, const int count,
    __m512i *cnt,
    const __m512i clo, const __m512i chi, const __m512i vs, const __m512i hb, const __m512i top,
    const __m512i one, const __m128i sh) {
  __m512i lo = _mm512_mullo_epi16(xb, wv), hi = _mm512_mulhi_epi16(xb, wv);
  if (nearest) {
    lo = _mm512_add_epi16(lo, clo);
    hi = _mm512_add_epi16(hi, chi);
    hi = _mm512_mask_add_epi16(hi, _mm512_cmplt_epu16_mask(lo, clo), hi, one); /* the carry */
  }
  if (s16) return _mm512_sra_epi16(hi, sh);
  __m512i r = _mm512_shrdv_epi16(lo, hi, vs);
  if (!count) return r; /* the caller proved that no product of this tile can leave 16 bits */
  const __mmask32 ov = _mm512_cmpge_epu16_mask(_mm512_add_epi16(hi, hb), top);
  *cnt = _mm512_mask_add_epi16(*cnt, ov, *cnt, one);
  if (saturate)
    r = _mm512_mask_mov_epi16(r, ov, _mm512_xor_si512(_mm512_srai_epi16(hi, 15), _mm512_set1_epi16(0x7FFF)));
  return r;
}

/* res[i][j][0..16) = sums over k of the cut products of row i (x + i*ldx, K padded to even with a
   zero) and channel block j (wb + j*Kp*32: per k pair, 16 channels x 2 codes). vpdpwssd against
   ones adds each lane pair into an int32 per channel (exact: |sum| <= K * 2**15 < 2**31). */
static inline __attribute__((always_inline)) int64_t eyeriss_tile(
    const int16_t *x, int64_t ldx, const int16_t *wb, int64_t Kp, const int rb, const int nb, int s,
    const int s16, const int nearest, const int saturate, const int count, int32_t *res) {
  const __m512i one = _mm512_set1_epi16(1);
  const int sl = s - 1 < 16 ? s - 1 : 0;
  const __m512i clo = _mm512_set1_epi16(s - 1 < 16 ? (int16_t)(uint16_t)(1u << (s - 1)) : 0);
  const __m512i chi = _mm512_set1_epi16(s - 1 >= 16 ? (int16_t)(1 << (s - 17)) : 0);
  const __m512i vs = _mm512_set1_epi16((int16_t)(s & 15));
  const __m512i hb = _mm512_set1_epi16((int16_t)(1 << sl));
  const __m512i top = _mm512_set1_epi16((int16_t)(uint16_t)(1u << (s < 16 ? s : 15)));
  const __m128i sh = _mm_cvtsi32_si128(s >= 16 ? s - 16 : 0);
  __m512i acc[4][2], cnt = _mm512_setzero_si512();
  for (int i = 0; i < rb; ++i)
    for (int j = 0; j < nb; ++j) acc[i][j] = _mm512_setzero_si512();
  int64_t n_prod = 0;
  for (int64_t k0 = 0; k0 < Kp; k0 += 2048) { /* 16-bit lane counters: flush before they fill */
    const int64_t k1 = k0 + 2048 < Kp ? k0 + 2048 : Kp;
    for (int64_t kp = k0; kp < k1; ++kp) {
      __m512i w[2];
      for (int j = 0; j < nb; ++j) w[j] = _mm512_loadu_si512((const void *)(wb + (j * Kp + kp) * 32));
      for (int i = 0; i < rb; ++i) {
        int32_t pair;
        memcpy(&pair, x + i * ldx + 2 * kp, 4);
        const __m512i xb = _mm512_set1_epi32(pair);
        for (int j = 0; j < nb; ++j)
          acc[i][j] = _mm512_dpwssd_epi32(
              acc[i][j], cut_products(xb, w[j], s16, nearest, saturate, count, &cnt, clo, chi, vs, hb, top, one, sh),
              one);
      }
    }
    const __m512i c32 = _mm512_add_epi32(_mm512_and_si512(cnt, _mm512_set1_epi32(0xFFFF)),
                                         _mm512_srli_epi32(cnt, 16));
    n_prod += _mm512_reduce_add_epi32(c32);
    cnt = _mm512_setzero_si512();
  }
  for (int i = 0; i < rb; ++i)
    for (int j = 0; j < nb; ++j) _mm512_storeu_si512((void *)(res + (i * 2 + j) * 16), acc[i][j]);
  return n_prod;
}

/* Largest |code| of n int16 values (32768 for -32768). */
static int64_t max_abs16(const int16_t *v, int64_t n) {
  int32_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t a = v[i] < 0 ? -(int32_t)v[i] : v[i];
    m = a > m ? a : m;
  }
  return m;
}

#define HW_TILE(RB, NB, COUNT) eyeriss_tile(x, ldx, wb, Kp, RB, NB, s, s16, nearest, saturate, COUNT, res)

static inline __attribute__((always_inline)) void eyeriss_simd_body(
    const int16_t *X, int64_t ldx, const int16_t *Wp, int64_t Kp, int64_t M, const int32_t *bias,
    int16_t *out, int64_t p0, int64_t p1, int64_t EF, int s, int relu, int64_t *counts, const int s16,
    const int nearest, const int saturate) {
  const int64_t nblk = (M + 15) / 16;
  int64_t cb = ((int64_t)1 << 20) / (Kp * 64); /* channel blocks whose weights fit ~1 MB of L2 */
  cb = cb < 2 ? 2 : cb & ~(int64_t)1;
  if (cb > 64) cb = 64;
  int64_t n_prod = 0, n_out = 0;
  int32_t res[4 * 2 * 16];
  /* A tile needs no overflow counting (nor saturation) when max|x| * max|w| < 2**(s+15) - 2**s:
     then no product, rounded, leaves 16 bits. s >= 16 never overflows (|x*w| <= 2**30). */
  const int64_t safe = s16 ? 0 : ((int64_t)1 << (s + 15)) - ((int64_t)1 << s);
  int64_t wmax[64];
  for (int64_t b0 = 0; b0 < nblk; b0 += cb) {
    const int64_t b1 = b0 + cb < nblk ? b0 + cb : nblk;
    for (int64_t b = b0; b < b1; b += 2)
      wmax[b - b0] = max_abs16(Wp + b * Kp * 32, (b1 - b >= 2 ? 2 : 1) * Kp * 32);
    for (int64_t p = p0; p < p1;) {
      const int rb = p1 - p >= 4 ? 4 : 1;
      const int64_t xmax = s16 ? 0 : max_abs16(X + (p - p0) * ldx, (rb - 1) * ldx + 2 * Kp);
      for (int64_t b = b0; b < b1; b += 2) {
        const int nb = b1 - b >= 2 ? 2 : 1;
        const int16_t *x = X + (p - p0) * ldx, *wb = Wp + b * Kp * 32;
        if (!s16 && xmax * wmax[b - b0] >= safe) {
          if (rb == 4 && nb == 2) n_prod += HW_TILE(4, 2, 1);
          else if (rb == 4) n_prod += HW_TILE(4, 1, 1);
          else if (nb == 2) n_prod += HW_TILE(1, 2, 1);
          else n_prod += HW_TILE(1, 1, 1);
        } else {
          if (rb == 4 && nb == 2) HW_TILE(4, 2, 0);
          else if (rb == 4) HW_TILE(4, 1, 0);
          else if (nb == 2) HW_TILE(1, 2, 0);
          else HW_TILE(1, 1, 0);
        }
        for (int i = 0; i < rb; ++i) {
          const int64_t n = (p + i) / EF, ef = (p + i) % EF;
          int16_t *o = out + n * M * EF + ef;
          for (int j = 0; j < nb; ++j)
            for (int l = 0; l < 16; ++l) {
              const int64_t m = (b + j) * 16 + l;
              if (m >= M) break;
              const int64_t t = (int64_t)res[(i * 2 + j) * 16 + l] + (bias ? bias[m] : 0);
              n_out += (t < -32768) | (t > 32767);
              int32_t y = (int32_t)(int16_t)(uint16_t)(uint64_t)t;
              if (relu && y < 0) y = 0;
              o[m * EF] = (int16_t)y;
            }
        }
      }
      p += rb;
    }
  }
  counts[0] += n_prod;
  counts[1] += n_out;
}
#undef HW_TILE

/* Mode eyeriss, groups = 1, 1 <= s <= 30: rows p0 <= p < p1 of X ((p1 - p0) x ldx int16, the
   column matrix from row p0, K padded to even with zeros), Wp packed per 16-channel block
   (blocks x Kp x 16 x 2, zero beyond M and K); out, bias, counts as in eyeriss_body. */
void hw_eyeriss_simd(const int16_t *X, int64_t ldx, const int16_t *Wp, int64_t Kp, int64_t M,
                     const int32_t *bias, int16_t *out, int64_t p0, int64_t p1, int64_t EF, int s,
                     int nearest, int saturate, int relu, int64_t *counts) {
#define HW_EYE(S16, NR, SAT) \
  eyeriss_simd_body(X, ldx, Wp, Kp, M, bias, out, p0, p1, EF, s, relu, counts, S16, NR, SAT)
  const int s16 = s >= 16;
  if (s16) { /* products never leave 16 bits: the overflow rule does not matter */
    if (nearest) HW_EYE(1, 1, 0); else HW_EYE(1, 0, 0);
  } else {
    if (nearest) { if (saturate) HW_EYE(0, 1, 1); else HW_EYE(0, 1, 0); }
    else { if (saturate) HW_EYE(0, 0, 1); else HW_EYE(0, 0, 0); }
  }
#undef HW_EYE
}
#else
int hw_simd(void) { return 0; }
void hw_eyeriss_simd(const int16_t *X, int64_t ldx, const int16_t *Wp, int64_t Kp, int64_t M,
                     const int32_t *bias, int16_t *out, int64_t p0, int64_t p1, int64_t EF, int s,
                     int nearest, int saturate, int relu, int64_t *counts) {
  (void)X; (void)ldx; (void)Wp; (void)Kp; (void)M; (void)bias; (void)out; (void)p0; (void)p1;
  (void)EF; (void)s; (void)nearest; (void)saturate; (void)relu; (void)counts;
}
#endif

/* N x C x H x W int16 -> zero-padded N x Hp x Wp x C (Hp = H + 2P, Wp = W + 2Pw), images n0 <= n < n1:
   int16 codes into `hi` (limbs = 0), or the int8 limbs v >> 8 into `hi` and (v & 255) - 128 into
   `lo` (limbs = 1; the padding holds the limbs of code 0: 0 and -128). */
void hw_to_nhwc(const int16_t *x, void *hi, int8_t *lo, int64_t C, int64_t H, int64_t W, int64_t P,
                int64_t Pw, int64_t n0, int64_t n1, int limbs) {
  const int64_t Hp = H + 2 * P, Wp = W + 2 * Pw;
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t h = 0; h < Hp; ++h) {
      for (int64_t w = 0; w < Wp; ++w) {
        const int64_t o = ((n * Hp + h) * Wp + w) * C;
        const int inside = h >= P && h < P + H && w >= Pw && w < Pw + W;
        const int16_t *src = x + ((n * C) * H + (h - P)) * W + (w - Pw);
        if (limbs) {
          int8_t *oh = (int8_t *)hi + o, *ol = lo + o;
          if (!inside) { memset(oh, 0, (size_t)C); memset(ol, -128, (size_t)C); continue; }
          for (int64_t c = 0; c < C; ++c) {
            const int16_t v = src[c * H * W];
            oh[c] = (int8_t)(v >> 8);
            ol[c] = (int8_t)((v & 255) - 128);
          }
        } else {
          int16_t *o16 = (int16_t *)hi + o;
          if (!inside) { memset(o16, 0, (size_t)C * 2); continue; }
          for (int64_t c = 0; c < C; ++c) o16[c] = src[c * H * W];
        }
      }
    }
  }
}

/* Residual add, elements i0 <= i < i1: t = (a << la) + (b << lb) (exact in int64: la, lb <= 40),
   then shift by s, cut to `bits` (shift_cut), ReLU. Returns how many outputs left the range. */
int64_t hw_add(const int16_t *a, const int16_t *b, int16_t *out, int64_t i0, int64_t i1, int la, int lb,
               int s, int nearest, int saturate, int bits, int relu) {
  int64_t n_over = 0;
  if (s >= 1 && s <= 62 && bits == 16) { /* the common case, in a loop the compiler vectorizes */
    const int64_t rnd = nearest ? ((int64_t)1 << (s - 1)) : 0;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t q = ((((int64_t)a[i] << la) + ((int64_t)b[i] << lb)) + rnd) >> s;
      n_over += (q < -32768) | (q > 32767);
      int64_t y = saturate ? (q < -32768 ? -32768 : (q > 32767 ? 32767 : q)) : (int64_t)(int16_t)(uint16_t)(uint64_t)q;
      if (relu && y < 0) y = 0;
      out[i] = (int16_t)y;
    }
    return n_over;
  }
  for (int64_t i = i0; i < i1; ++i) {
    int over = 0;
    int64_t y = shift_cut(((int64_t)a[i] << la) + ((int64_t)b[i] << lb), s, nearest, saturate, bits, &over);
    n_over += over;
    if (relu && y < 0) y = 0;
    out[i] = (int16_t)y;
  }
  return n_over;
}
