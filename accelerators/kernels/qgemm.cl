// int8 GEMM for QLinearConv / QLinearMatMul / QGemm / MatMulInteger, exact int32 accumulation.
//
// Operands arrive "centered" as int16: A' = A - a_zp (packed per call by pack_rows / im2col below,
// [M, Kp]) and W' = W - w_zp (packed once at load, [N, Kp]); both K contiguous, Kp a multiple of
// VW, zero padded. |A'|, |W'| <= 255, so every int16 product and every sum of two fits in int32:
// multiplying int16 pairs and adding each even/odd pair into an int32 lane is exact. That is x86's
// pmaddwd. The 8-bit vpmaddubsw route would saturate its int16 pair sums (onnxruntime's AVX2 u8s8
// kernels do exactly that), so it is not used.
//
// Each work-item computes a TM x TN tile of outputs with TM * TN int32 vector accumulators that stay
// in registers (TM * TN + TM + 1 <= 16 for AVX2's 16 ymm registers): per step along K it loads TM
// rows of A and, one at a time, TN rows of W, and does TM * TN pair multiply-adds. The tile is
// spelled out with the preprocessor (FOR_TM / FOR_TN) instead of loops over private arrays: PoCL's
// pipeline neither fully unrolls such loops nor promotes the arrays to registers, which leaves the
// accumulators on the stack. Dimension 0 of the range walks tiles of rows, so consecutive work-items
// (and PoCL's work-groups, which its threads take in order) share one TN-row panel of W (hot in L1)
// while A streams through L2.
//
// Multiply-add: where the compiler targets AVX2 (PoCL on x86) it is the pmaddwd builtin itself;
// LLVM does not reliably match the portable even/odd expression (PoCL's LLVM 14 turns it into
// shuffles and vpmulld, 4x slower). Any other device compiles the portable expression (forced
// with -DPORTABLE_MADD, which the tests do to check that path on the CPU too).
//
// Compile-time: TM, TN (1..8), VW (int16 lanes per vector: 8 or 16), OUT_MODE (0 requantize to OUT_T,
// 1 int32, 2 float), OUT_T, IN_T (the packing kernels' input type).
#pragma OPENCL FP_CONTRACT OFF

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
typedef CAT(short, VW) sv_t;
#if VW == 16
typedef int8 iv_t;
#define AS_IV as_int8
#define TO_IV convert_int8
#else
typedef int4 iv_t;
#define AS_IV as_int4
#define TO_IV convert_int4
#endif

#if defined(__has_builtin) && !defined(PORTABLE_MADD)
#if VW == 16 && defined(__AVX2__) && __has_builtin(__builtin_ia32_pmaddwd256)
#define MADD_BUILTIN __builtin_ia32_pmaddwd256
#elif VW == 8 && defined(__SSE2__) && __has_builtin(__builtin_ia32_pmaddwd128)
#define MADD_BUILTIN __builtin_ia32_pmaddwd128
#endif
#endif
#ifdef MADD_BUILTIN
#define MADD(a, w) AS_IV(MADD_BUILTIN((a), (w)))
#else
#define MADD(a, w) (TO_IV((a).even) * TO_IV((w).even) + TO_IV((a).odd) * TO_IV((w).odd))
#endif

inline int hsum(iv_t v) {
#if VW == 16
  int4 t = v.lo + v.hi;
#else
  int4 t = v;
#endif
  int2 u = t.lo + t.hi;
  return u.x + u.y;
}

// X(index, arg) repeated TM or TN times; two families so that one can expand inside the other.
#define RI1(X, arg) X(0, arg)
#define RI2(X, arg) RI1(X, arg) X(1, arg)
#define RI3(X, arg) RI2(X, arg) X(2, arg)
#define RI4(X, arg) RI3(X, arg) X(3, arg)
#define RI5(X, arg) RI4(X, arg) X(4, arg)
#define RI6(X, arg) RI5(X, arg) X(5, arg)
#define RI7(X, arg) RI6(X, arg) X(6, arg)
#define RI8(X, arg) RI7(X, arg) X(7, arg)
#define RJ1(X, arg) X(0, arg)
#define RJ2(X, arg) RJ1(X, arg) X(1, arg)
#define RJ3(X, arg) RJ2(X, arg) X(2, arg)
#define RJ4(X, arg) RJ3(X, arg) X(3, arg)
#define RJ5(X, arg) RJ4(X, arg) X(4, arg)
#define RJ6(X, arg) RJ5(X, arg) X(5, arg)
#define RJ7(X, arg) RJ6(X, arg) X(6, arg)
#define RJ8(X, arg) RJ7(X, arg) X(7, arg)
#define FOR_TM CAT(RI, TM)
#define FOR_TN CAT(RJ, TN)

// rows past M / columns past N read the last valid row (stores are guarded)
#define DECL_A(i, _) __global const sv_t* pa##i = (__global const sv_t*)(A + (size_t)(i0 + i < M ? i0 + i : M - 1) * Kp);
#define DECL_W(j, _) __global const sv_t* pw##j = (__global const sv_t*)(W + (size_t)(j0 + j < N ? j0 + j : N - 1) * Kp);
#define DECL_ACC_IJ(i, j) iv_t acc##i##_##j = 0;
#define DECL_ACC(j, _) FOR_TM(DECL_ACC_IJ, j)
#define LOAD_A(i, _) const sv_t a##i = pa##i[kv];
#define STEP_IJ(i, j) acc##i##_##j += MADD(a##i, w##j);
#define STEP(j, _) { const sv_t w##j = pw##j[kv]; FOR_TM(STEP_IJ, j) }
#define ROW_BASE(i, _) const size_t yrow##i = (size_t)((i0 + i) / P) * ldc * P + (size_t)((i0 + i) % P);
#define STORE_IJ(i, j) if (i0 + i < M && j0 + j < N) store(hsum(acc##i##_##j), yrow##i, j0 + j, bias, mult, Y, ACC, P, col0, y_zp, lo, hi, store_acc);
#define STORE(j, _) FOR_TM(STORE_IJ, j)

// Output (row r, column c) goes to Y[yrow(r) + (col0 + c) * P], yrow(r) = (r / P) * ldc * P + r % P:
// rows are (image, pixel) pairs when P > 1 (convolution, NCHW output with P pixels per image and ldc
// channels), plain rows when P == 1.
inline void store(int s, size_t yrow, int c, __global const int* bias, __global const float* mult, __global OUT_T* Y,
                  __global int* ACC, int P, int col0, int y_zp, float lo, float hi, int store_acc) {
  s += bias[c];
  const size_t at = yrow + (size_t)(col0 + c) * P;
  if (store_acc) ACC[at] = s;
#if OUT_MODE == 0
  // onnxruntime's MlasRequantizeOutput: float multiply, clamp to [qmin - zp, qmax - zp], round half
  // to even (MLAS: cvtps2dq / nearbyintf under the default rounding mode), add the zero point. The
  // rounding is the classic 1.5 * 2^23 trick: for |v| < 2^22 the sum's ulp is 1, so the IEEE
  // round-to-nearest-even addition does the rounding and the subtraction is exact (|v| <= 255 after
  // the clamp; FP_CONTRACT is off and no fast-math flag is passed, so nothing reassociates it). It
  // is inline arithmetic where PoCL's rint/convert_int_rte are library calls or branches.
  float v = (float)s * mult[c];
  v = v < lo ? lo : (v > hi ? hi : v);
  v = (v + 12582912.0f) - 12582912.0f;
  Y[at] = (OUT_T)((int)v + y_zp);
#elif OUT_MODE == 1
  Y[at] = s;
#else
  Y[at] = (float)s * mult[c];
#endif
}

__kernel void qgemm(__global const short* A, __global const short* W, __global const int* bias,
                    __global const float* mult, __global OUT_T* Y, __global int* ACC, const int M, const int N,
                    const int Kp, const int P, const int ldc, const int col0, const int y_zp, const int qmin,
                    const int qmax, const int store_acc) {
  const int i0 = get_global_id(0) * TM;
  const int j0 = get_global_id(1) * TN;
  if (i0 >= M || j0 >= N) return;
  FOR_TM(DECL_A, _)
  FOR_TN(DECL_W, _)
  FOR_TN(DECL_ACC, _)
  const int nv = Kp / VW;
  for (int kv = 0; kv < nv; kv++) {
    FOR_TM(LOAD_A, _)
    FOR_TN(STEP, _)
  }
  const float lo = (float)(qmin - y_zp), hi = (float)(qmax - y_zp);
  FOR_TM(ROW_BASE, _)
  FOR_TN(STORE, _)
}

// [rows, K] IN_T -> [rows, Kp] int16 minus the zero point, zero padded to Kp. One element per
// work-item: PoCL vectorizes this across the work-items of a work-group by itself (measured: 16
// elements per work-item with an inner loop is 2x slower).
__kernel void pack_rows(__global const IN_T* X, __global short* out, const int K, const int Kp, const int zp) {
  const int k = get_global_id(0);
  const int r = get_global_id(1);
  out[(size_t)r * Kp + k] = k < K ? (short)((int)X[(size_t)r * K + k] - zp) : (short)0;
}

// NCHW IN_T -> [N*OH*OW, Kp] int16 patches minus the zero point (so padding is exactly 0),
// k = (c * KH + i) * KW + j over the channels [c0, c0 + CG) of one group.
__kernel void im2col(__global const IN_T* X, __global short* out, const int C, const int H, const int Wd,
                     const int c0, const int CG, const int KH, const int KW, const int OH, const int OW,
                     const int SH, const int SW, const int PT, const int PL, const int DH, const int DW,
                     const int Kp, const int zp) {
  const int k = get_global_id(0);
  const int r = get_global_id(1);
  short v = 0;
  if (k < CG * KH * KW) {
    const int c = k / (KH * KW), ij = k % (KH * KW), i = ij / KW, j = ij % KW;
    const int n = r / (OH * OW), p = r % (OH * OW), oy = p / OW, ox = p % OW;
    const int y = oy * SH - PT + i * DH, x = ox * SW - PL + j * DW;
    if (y >= 0 && y < H && x >= 0 && x < Wd) v = (short)((int)X[(((size_t)n * C + c0 + c) * H + y) * Wd + x] - zp);
  }
  out[(size_t)r * Kp + k] = v;
}
