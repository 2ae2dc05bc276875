// Element-wise and pooling kernels of the int8 OpenCL backend. Rounding follows onnxruntime's MLAS:
// divide (QuantizeLinear), clamp, round half to even (convert_int_rte), add the zero point.
// Build with -cl-fp32-correctly-rounded-divide-sqrt so x / scale is the IEEE quotient MLAS computes.
// Compile-time: IN_T, OUT_T.
#pragma OPENCL FP_CONTRACT OFF

__kernel void quantize(__global const float* X, __global OUT_T* Y, const float scale, const int zp,
                       const int qmin, const int qmax) {
  const size_t i = get_global_id(0);
  float v = clamp(X[i] / scale, (float)(qmin - zp), (float)(qmax - zp));
  Y[i] = (OUT_T)(convert_int_rte(v) + zp);
}

__kernel void dequantize(__global const IN_T* X, __global float* Y, const float scale, const int zp) {
  const size_t i = get_global_id(0);
  Y[i] = (float)((int)X[i] - zp) * scale;
}

__kernel void relu(__global const IN_T* X, __global IN_T* Y) {
  const size_t i = get_global_id(0);
  Y[i] = X[i] > (IN_T)0 ? X[i] : (IN_T)0;
}

// QLinearAdd with MLAS's scale ratios; B is broadcast over A by repetition (b_size divides a's size).
__kernel void qadd(__global const IN_T* A, __global const IN_T* B, __global IN_T* Y, const int b_size,
                   const float ratio_a, const int a_zp, const float ratio_b, const int b_zp, const int y_zp,
                   const int qmin, const int qmax) {
  const size_t i = get_global_id(0);
  const float va = ratio_a * (float)((int)A[i] - a_zp);
  const float vb = ratio_b * (float)((int)B[i % b_size] - b_zp);
  const float v = clamp(va + vb, (float)(qmin - y_zp), (float)(qmax - y_zp));
  Y[i] = (IN_T)(convert_int_rte(v) + y_zp);
}

// NCHW max pooling; padded positions never win (they are skipped).
__kernel void max_pool(__global const IN_T* X, __global IN_T* Y, const int H, const int W, const int OH, const int OW,
                       const int KH, const int KW, const int SH, const int SW, const int PT, const int PL,
                       const int DH, const int DW) {
  const size_t o = get_global_id(0);
  const size_t nc = o / (OH * OW);
  const int p = o % (OH * OW), oy = p / OW, ox = p % OW;
  __global const IN_T* plane = X + nc * H * W;
  IN_T best = 0;
  int found = 0;
  for (int i = 0; i < KH; i++) {
    const int y = oy * SH - PT + i * DH;
    if (y < 0 || y >= H) continue;
    for (int j = 0; j < KW; j++) {
      const int x = ox * SW - PL + j * DW;
      if (x < 0 || x >= W) continue;
      const IN_T v = plane[y * W + x];
      if (!found || v > best) best = v;
      found = 1;
    }
  }
  Y[o] = best;
}

// Softmax over the last axis, one row per work-item.
__kernel void softmax_rows(__global const float* X, __global float* Y, const int L) {
  const size_t r = get_global_id(0);
  __global const float* x = X + r * L;
  __global float* y = Y + r * L;
  float m = x[0];
  for (int i = 1; i < L; i++) m = fmax(m, x[i]);
  float s = 0.0f;
  for (int i = 0; i < L; i++) {
    const float e = exp(x[i] - m);
    y[i] = e;
    s += e;
  }
  for (int i = 0; i < L; i++) y[i] = y[i] / s;
}
