// int8 GEMM for QLinearConv / QLinearMatMul / QGemm / MatMulInteger, exact int32 accumulation.
//
// Operands arrive "centered" as int16: A' = A - a_zp (packed by pack_rows / im2col below) and
// W' = W - w_zp (packed once on the host, [N, Kp], K contiguous, Kp a multiple of VW, zero padded).
// int16 products summed in pairs into int32 is exactly x86's pmaddwd, which LLVM selects for the
// even/odd multiply-add below; the 8-bit vpmaddubsw route would saturate (onnxruntime's AVX2 u8s8
// kernels do exactly that), so it is not used. Each work-item computes a TM x TN tile of outputs.
//
// Compile-time: TM, TN (tile), VW (int16 elements per vector: 8 or 16), VH = VW / 2,
// OUT_MODE (0 requantize to OUT_T, 1 int32, 2 float), OUT_T.
#pragma OPENCL FP_CONTRACT OFF

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
typedef CAT(short, VW) sv_t;
typedef CAT(int, VH) iv_t;
#define VLOAD CAT(vload, VW)
#define TO_IV CAT(convert_int, VH)

inline int hsum(iv_t v) {
#if VH == 8
  int4 t = v.lo + v.hi;
#else
  int4 t = v;
#endif
  int2 u = t.lo + t.hi;
  return u.x + u.y;
}

// Y index of output (row r, column c): rows are (image, pixel) pairs when P > 1 (convolution,
// NCHW output with P pixels per image and ldc channels), plain rows when P == 1.
__kernel void qgemm(__global const short* A, __global const short* W, __global const int* bias,
                    __global const float* mult, __global OUT_T* Y, __global int* ACC, const int M, const int N,
                    const int Kp, const int P, const int ldc, const int col0, const int y_zp, const int qmin,
                    const int qmax, const int store_acc) {
  const int j0 = get_global_id(0) * TN;
  const int i0 = get_global_id(1) * TM;
  if (j0 >= N || i0 >= M) return;
  iv_t acc[TM][TN];
  __global const short* a_rows[TM];
  __global const short* w_rows[TN];
  for (int i = 0; i < TM; i++) a_rows[i] = A + (size_t)min(i0 + i, M - 1) * Kp;  // clamped: stores are guarded
  for (int j = 0; j < TN; j++) w_rows[j] = W + (size_t)min(j0 + j, N - 1) * Kp;
  for (int i = 0; i < TM; i++)
    for (int j = 0; j < TN; j++) acc[i][j] = 0;
  for (int k = 0; k < Kp; k += VW) {
    sv_t a[TM], w[TN];
    for (int i = 0; i < TM; i++) a[i] = VLOAD(0, a_rows[i] + k);
    for (int j = 0; j < TN; j++) w[j] = VLOAD(0, w_rows[j] + k);
    for (int i = 0; i < TM; i++)
      for (int j = 0; j < TN; j++)
        acc[i][j] += TO_IV(a[i].even) * TO_IV(w[j].even) + TO_IV(a[i].odd) * TO_IV(w[j].odd);
  }
  for (int i = 0; i < TM; i++) {
    const int r = i0 + i;
    if (r >= M) break;
    const size_t base = (size_t)(r / P) * ldc * P + (r % P);
    for (int j = 0; j < TN; j++) {
      const int c = j0 + j;
      if (c >= N) break;
      const int s = hsum(acc[i][j]) + bias[c];
      const size_t at = base + (size_t)(col0 + c) * P;
      if (store_acc) ACC[at] = s;
#if OUT_MODE == 0
      // onnxruntime's MlasRequantizeOutput: float multiply, clamp, round half to even, add zero point.
      float v = (float)s * mult[c];
      v = clamp(v, (float)(qmin - y_zp), (float)(qmax - y_zp));
      Y[at] = (OUT_T)(convert_int_rte(v) + y_zp);
#elif OUT_MODE == 1
      Y[at] = s;
#else
      Y[at] = (float)s * mult[c];
#endif
    }
  }
}

// [rows, K] IN_T -> [rows, Kp] int16 minus the zero point, zero padded to Kp.
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
