// Shared by every kernel file (prepended to each source before NVRTC compiles it, so no include
// path or CUDA header is needed: the crate builds and its kernels compile with NVRTC alone).
//
// Half-precision values travel as raw 16-bit patterns (`u16`); conversions are written here with
// the PTX instructions cuda_fp16.h itself uses, so the source does not depend on that header.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

#define NEG_INF (__int_as_float(0xff800000))

// The CPU emulator of the tests (emulator/) brings portable twins of the PTX helpers.
#ifndef FOCUSLLM_EMULATOR
// IEEE half -> f32 (exact).
__device__ __forceinline__ float f16_to_f32(u16 x) {
    float f;
    asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(x));
    return f;
}

// f32 -> IEEE half, round to nearest even.
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(f));
    return h;
}
#endif

// bfloat16 -> f32 (exact).
__device__ __forceinline__ float bf16_to_f32(u16 x) {
    return __uint_as_float(((u32)x) << 16);
}

// f32 -> bfloat16, round to nearest even (finite inputs; NaN stays NaN).
__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (u16)((u >> 16) | 0x40u);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
}

// Weight element readers, one per storage type, so templates can take the type as a tag.
// `load(p, i)` is element i of the whole tensor (row-major), for every type.
struct WF32 {
    typedef float T;
    static __device__ __forceinline__ float load(const float* p, long long i) { return p[i]; }
};
struct WF16 {
    typedef u16 T;
    static __device__ __forceinline__ float load(const u16* p, long long i) { return f16_to_f32(p[i]); }
};
struct WBF16 {
    typedef u16 T;
    static __device__ __forceinline__ float load(const u16* p, long long i) { return bf16_to_f32(p[i]); }
};

// ggml's block-quantised types, read in place from their GGUF bytes: blocks of 32 elements, each
// an f16 scale d (and for Q4_1 an f16 minimum m) before its quants. Element i of a tensor is
// element i % 32 of block i / 32; in the 4-bit types byte j holds element j (low nibble) and
// j + 16 (high nibble). The arithmetic is the CPU backend's (focusllm-core's quant.rs): the scale
// times the quant, then Q4_1's minimum added, never fused, so the values are bit-identical.
__device__ __forceinline__ float f16_at(const u8* p) {
    return f16_to_f32((u16)(p[0] | (p[1] << 8)));
}
__device__ __forceinline__ int nibble(const u8* quants, int j) {
    u8 q = quants[j & 15];
    return j < 16 ? (q & 15) : (q >> 4);
}
struct WQ8_0 {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 5) * 34;
        return __fmul_rn((float)(signed char)b[2 + (i & 31)], f16_at(b));
    }
};
struct WQ4_0 {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 5) * 18;
        return __fmul_rn(f16_at(b), (float)(nibble(b + 2, (int)(i & 31)) - 8));
    }
};
struct WQ4_1 {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 5) * 20;
        return __fadd_rn(__fmul_rn(f16_at(b), (float)nibble(b + 4, (int)(i & 31))), f16_at(b + 2));
    }
};

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
