// Dense products against weights: out[m, n] = x[m, k] . w[n, k] (+ bias[n]), f32 activations,
// f32/f16/bf16 weights or ggml's quantised blocks (every type the crate reads, read in place, dequantised as loaded), f32
// accumulation. Three kernels, chosen by the host:
//   linear_gemv_*  few rows (decode): one warp per output column, every weight read once for all
//                  rows (memory-bound: the weights' bytes are the cost).
//   linear_mma_*   many rows, f16/bf16 weights, sm_80 and newer: tensor-core mma.sync m16n8k16.
//                  The f32 activations are split into TERMS half-precision parts
//                  (x = h0 + h1 + ...; two for f16, three for bf16), each multiplied exactly on the
//                  tensor cores, so the product keeps close to f32 precision instead of rounding
//                  the activations to 16 bits.
//   linear_tiled_* many rows, any other weight type or architecture: 64x64 shared-memory tiles,
//                  4x4 outputs per thread, CUDA cores.

#define GEMV_MAX_ROWS 8
#define GEMV_WARPS 8

template <typename W>
__device__ void gemv_impl(float* out, const float* x, const typename W::T* w, const float* bias,
                          int m, int k, int n) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int j = blockIdx.x * GEMV_WARPS + warp;
    if (j >= n) return;
    long long wr = (long long)j * k;  // the row's first element
    float acc[GEMV_MAX_ROWS];
#pragma unroll
    for (int r = 0; r < GEMV_MAX_ROWS; ++r) acc[r] = 0.0f;
    if ((k & 1) == 0) {
        // Two consecutive weights per lane per step: 64 elements per warp access.
        for (int kk = lane * 2; kk < k; kk += 64) {
            float w0 = W::load(w, wr + kk);
            float w1 = W::load(w, wr + kk + 1);
#pragma unroll
            for (int r = 0; r < GEMV_MAX_ROWS; ++r) {
                if (r < m) {
                    float2 xv = *reinterpret_cast<const float2*>(x + (long long)r * k + kk);
                    acc[r] = fmaf(w0, xv.x, acc[r]);
                    acc[r] = fmaf(w1, xv.y, acc[r]);
                }
            }
        }
    } else {
        for (int kk = lane; kk < k; kk += 32) {
            float wv = W::load(w, wr + kk);
#pragma unroll
            for (int r = 0; r < GEMV_MAX_ROWS; ++r) {
                if (r < m) acc[r] = fmaf(wv, x[(long long)r * k + kk], acc[r]);
            }
        }
    }
    float b = bias ? bias[j] : 0.0f;
#pragma unroll
    for (int r = 0; r < GEMV_MAX_ROWS; ++r) {
        float v = warp_sum(acc[r]);
        if (lane == 0 && r < m) out[(long long)r * n + j] = v + b;
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA-core tiled product: 256 threads, 64x64 outputs per block, K in steps of 16.
#define TL_BM 64
#define TL_BN 64
#define TL_BK 16

template <typename W>
__device__ void tiled_impl(float* out, const float* x, const typename W::T* w, const float* bias,
                           int m, int k, int n) {
    __shared__ float As[TL_BK][TL_BM + 4];
    __shared__ float Bs[TL_BK][TL_BN + 4];
    int tid = threadIdx.x;
    int tx = tid & 15, ty = tid >> 4;  // thread's outputs: rows ty + 16*i, cols tx + 16*j
    int m0 = blockIdx.y * TL_BM, n0 = blockIdx.x * TL_BN;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < k; k0 += TL_BK) {
#pragma unroll
        for (int i = 0; i < (TL_BM * TL_BK) / 256; ++i) {
            int idx = tid + i * 256;
            int r = idx >> 4, c = idx & 15;
            int gr = m0 + r, gc = k0 + c;
            As[c][r] = (gr < m && gc < k) ? x[(long long)gr * k + gc] : 0.0f;
            int gn = n0 + r;
            Bs[c][r] = (gn < n && gc < k) ? W::load(w, (long long)gn * k + gc) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TL_BK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int r = m0 + ty + 16 * i;
        if (r >= m) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int c = n0 + tx + 16 * j;
            if (c < n) out[(long long)r * n + c] = acc[i][j] + (bias ? bias[c] : 0.0f);
        }
    }
}

// The GEMV and CUDA-core entry points, one pair per weight type: linear_gemv_<type> and
// linear_tiled_<type>.
#define LINEAR_ENTRIES(suffix, W)                                                                       \
    extern "C" __global__ void linear_gemv_##suffix(float* out, const float* x, const W::T* w,          \
                                                    const float* bias, int m, int k, int n) {            \
        gemv_impl<W>(out, x, w, bias, m, k, n);                                                          \
    }                                                                                                    \
    extern "C" __global__ void linear_tiled_##suffix(float* out, const float* x, const W::T* w,         \
                                                     const float* bias, int m, int k, int n) {           \
        tiled_impl<W>(out, x, w, bias, m, k, n);                                                         \
    }
LINEAR_ENTRIES(f32, WF32)
LINEAR_ENTRIES(f16, WF16)
LINEAR_ENTRIES(bf16, WBF16)
LINEAR_ENTRIES(q8_0, WQ8_0)
LINEAR_ENTRIES(q4_0, WQ4_0)
LINEAR_ENTRIES(q4_1, WQ4_1)
LINEAR_ENTRIES(q5_0, WQ5_0)
LINEAR_ENTRIES(q5_1, WQ5_1)
LINEAR_ENTRIES(q2_k, WQ2_K)
LINEAR_ENTRIES(q3_k, WQ3_K)
LINEAR_ENTRIES(q4_k, WQ4_K)
LINEAR_ENTRIES(q5_k, WQ5_K)
LINEAR_ENTRIES(q6_k, WQ6_K)
LINEAR_ENTRIES(iq4_nl, WIQ4_NL)
LINEAR_ENTRIES(iq4_xs, WIQ4_XS)

// ---------------------------------------------------------------------------------------------
// Tensor-core product: 128 threads (4 warps, 2x2), 64x64 outputs per block, each warp 32x32
// (2 m16 tiles x 4 n8 tiles), K in steps of 32. Shared rows are padded to 40 halves so the
// fragment loads of a warp fall in distinct banks.
#define MM_BM 64
#define MM_BN 64
#define MM_BK 32
#define MM_LD (MM_BK + 8)

// (The CPU emulator of the tests brings its own mma_16816.)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(FOCUSLLM_EMULATOR)
template <bool BF16>
__device__ __forceinline__ void mma_16816(float* d, const u32* a, u32 b0, u32 b1) {
    if (BF16) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}
#endif

template <bool BF16, int TERMS>
__device__ void mma_impl(float* out, const float* x, const u16* w, const float* bias, int m, int k, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    __shared__ __align__(16) u16 As[TERMS][MM_BM][MM_LD];
    __shared__ __align__(16) u16 Bs[MM_BN][MM_LD];
    int tid = threadIdx.x;
    int warp = tid >> 5, lane = tid & 31;
    int g = lane >> 2, t4 = lane & 3;
    int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    int m0 = blockIdx.y * MM_BM, n0 = blockIdx.x * MM_BN;
    float acc[2][4][4];
#pragma unroll
    for (int a = 0; a < 2; ++a)
#pragma unroll
        for (int b = 0; b < 4; ++b)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.0f;

    for (int k0 = 0; k0 < k; k0 += MM_BK) {
#pragma unroll 4
        for (int i = 0; i < (MM_BM * MM_BK) / 128; ++i) {
            int idx = tid + i * 128;
            int r = idx >> 5, c = idx & 31;
            int gr = m0 + r, gc = k0 + c;
            float v = (gr < m && gc < k) ? x[(long long)gr * k + gc] : 0.0f;
#pragma unroll
            for (int t = 0; t < TERMS; ++t) {
                u16 h = BF16 ? f32_to_bf16(v) : f32_to_f16(v);
                As[t][r][c] = h;
                v -= BF16 ? bf16_to_f32(h) : f16_to_f32(h);
            }
            int gn = n0 + r;
            Bs[r][c] = (gn < n && gc < k) ? w[(long long)gn * k + gc] : (u16)0;
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < MM_BK; ks += 16) {
            u32 b[4][2];
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) {
                const u16* bp = &Bs[wn + nt * 8 + g][ks + t4 * 2];
                b[nt][0] = *reinterpret_cast<const u32*>(bp);
                b[nt][1] = *reinterpret_cast<const u32*>(bp + 8);
            }
#pragma unroll
            for (int t = TERMS - 1; t >= 0; --t) {  // smallest parts first
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    const u16* ap = &As[t][wm + mt * 16 + g][ks + t4 * 2];
                    u32 a[4];
                    a[0] = *reinterpret_cast<const u32*>(ap);
                    a[1] = *reinterpret_cast<const u32*>(ap + 8 * MM_LD);
                    a[2] = *reinterpret_cast<const u32*>(ap + 8);
                    a[3] = *reinterpret_cast<const u32*>(ap + 8 * MM_LD + 8);
#pragma unroll
                    for (int nt = 0; nt < 4; ++nt) mma_16816<BF16>(acc[mt][nt], a, b[nt][0], b[nt][1]);
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
            int row = m0 + wm + mt * 16 + g;
            int col = n0 + wn + nt * 8 + t4 * 2;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                int r = row + h * 8;
                if (r >= m) continue;
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    int c = col + e;
                    if (c < n) out[(long long)r * n + c] = acc[mt][nt][h * 2 + e] + (bias ? bias[c] : 0.0f);
                }
            }
        }
    }
#else
    // The host launches these kernels only on sm_80 and newer.
    __trap();
#endif
}

extern "C" __global__ void linear_mma_f16(float* out, const float* x, const u16* w, const float* bias, int m, int k, int n) {
    mma_impl<false, 2>(out, x, w, bias, m, k, n);
}
extern "C" __global__ void linear_mma_bf16(float* out, const float* x, const u16* w, const float* bias, int m, int k, int n) {
    mma_impl<true, 3>(out, x, w, bias, m, k, n);
}
