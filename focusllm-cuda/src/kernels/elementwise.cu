// Row-wise and elementwise operations on f32 activations: embedding, RMSNorm, RoPE, SwiGLU,
// GeGLU, scaling, residual add, row scatter. Grids are 1-D or 2-D; every kernel checks its own bounds.

// out[r, c] = table[ids[r], c], converted to f32. Grid: (rows, ceil(cols/256)).
template <typename W>
__device__ void embedding_impl(float* out, const typename W::T* table, const u32* ids, int rows, int cols) {
    int r = blockIdx.x;
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (r >= rows || c >= cols) return;
    long long src = (long long)ids[r] * cols + c;
    out[(long long)r * cols + c] = W::load(table, src);
}

// One entry point per weight type: embedding_<type>.
#define EMBEDDING_ENTRY(suffix, W)                                                                      \
    extern "C" __global__ void embedding_##suffix(float* out, const W::T* table, const u32* ids,        \
                                                  int rows, int cols) {                                  \
        embedding_impl<W>(out, table, ids, rows, cols);                                                  \
    }
EMBEDDING_ENTRY(f32, WF32)
EMBEDDING_ENTRY(f16, WF16)
EMBEDDING_ENTRY(bf16, WBF16)
EMBEDDING_ENTRY(q8_0, WQ8_0)
EMBEDDING_ENTRY(q4_0, WQ4_0)
EMBEDDING_ENTRY(q4_1, WQ4_1)
EMBEDDING_ENTRY(q5_0, WQ5_0)
EMBEDDING_ENTRY(q5_1, WQ5_1)
EMBEDDING_ENTRY(q2_k, WQ2_K)
EMBEDDING_ENTRY(q3_k, WQ3_K)
EMBEDDING_ENTRY(q4_k, WQ4_K)
EMBEDDING_ENTRY(q5_k, WQ5_K)
EMBEDDING_ENTRY(q6_k, WQ6_K)
EMBEDDING_ENTRY(iq4_nl, WIQ4_NL)
EMBEDDING_ENTRY(iq4_xs, WIQ4_XS)

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight. One block of 256 threads per row.
extern "C" __global__ void rms_norm(float* out, const float* x, const float* weight, int rows, int cols, float eps) {
    __shared__ float partial[32];
    int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (long long)r * cols;
    float* outr = out + (long long)r * cols;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = xr[c];
        ss = fmaf(v, v, ss);
    }
    ss = warp_sum(ss);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) partial[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        int nwarps = (blockDim.x + 31) >> 5;
        float v = lane < nwarps ? partial[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) partial[0] = v;
    }
    __syncthreads();
    float inv = rsqrtf(partial[0] / (float)cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        outr[c] = weight[c] * (xr[c] * inv);
    }
}

// Half-split rotary embedding ("rotate_half"): in every head, element i pairs with i + half.
// Row r sits at positions[r], whose cosines and sines are row positions[r] of the model's table
// ([positions, head_dim], cosines first, computed on the host). One thread per (row, head, i < half).
extern "C" __global__ void rope(float* out, const float* x, const u32* positions, const float* table,
                                int rows, int cols, int head_dim) {
    int half = head_dim >> 1;
    int heads = cols / head_dim;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)rows * heads * half;
    if (idx >= total) return;
    int i = (int)(idx % half);
    long long rh = idx / half;
    int h = (int)(rh % heads);
    int r = (int)(rh / heads);
    const float* cs = table + (long long)positions[r] * head_dim;
    float c = cs[i];
    float s = cs[i + half];
    long long base = (long long)r * cols + (long long)h * head_dim;
    float x1 = x[base + i];
    float x2 = x[base + i + half];
    out[base + i] = x1 * c - x2 * s;
    out[base + i + half] = x2 * c + x1 * s;
}

// out = silu(gate) * up.
extern "C" __global__ void swiglu(float* out, const float* gate, const float* up, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

// out = gelu_tanh(gate) * up (GeGLU), tanh's argument clamped where tanh is +-1 in f32.
extern "C" __global__ void geglu(float* out, const float* gate, const float* up, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i];
    float u = fminf(fmaxf(0.7978846f * (g + 0.044715f * g * g * g), -15.0f), 15.0f);
    out[i] = 0.5f * g * (1.0f + tanhf(u)) * up[i];
}

// out = x * factor.
extern "C" __global__ void scale(float* out, const float* x, float factor, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = x[i] * factor;
}

// out = a + b.
extern "C" __global__ void add(float* out, const float* a, const float* b, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = a[i] + b[i];
}

// dst[rows[i], c] = src[i, c]. Grid: (n, ceil(cols/256)).
extern "C" __global__ void scatter_rows(float* dst, const float* src, const u32* rows, int n, int cols) {
    int i = blockIdx.x;
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (i >= n || c >= cols) return;
    dst[(long long)rows[i] * cols + c] = src[(long long)i * cols + c];
}
