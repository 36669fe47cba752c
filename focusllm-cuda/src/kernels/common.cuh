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

// ggml's block-quantised types, read in place from their GGUF bytes: blocks of 32 elements (Q8_0,
// Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL), each an f16 scale d (and for Q4_1/Q5_1 an f16 minimum m) before
// its quants, or super-blocks of 256 (the K types, IQ4_XS) with groups of 16 or 32. Element i of a
// tensor is element i % size of block i / size; in the 4-bit types of 32 byte j holds element j
// (low nibble) and j + 16 (high nibble). The arithmetic is the CPU backend's (focusllm-core's
// quant.rs, `decode_block`): the group scale times the quant, then the group offset added, never
// fused, so the values are bit-identical.
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

struct WQ5_0 {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 5) * 22;
        int j = (int)(i & 31);
        u32 high = (u32)b[2] | ((u32)b[3] << 8) | ((u32)b[4] << 16) | ((u32)b[5] << 24);
        return __fmul_rn(f16_at(b), (float)((nibble(b + 6, j) | (int)(((high >> j) & 1u) << 4)) - 16));
    }
};
struct WQ5_1 {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 5) * 24;
        int j = (int)(i & 31);
        u32 high = (u32)b[4] | ((u32)b[5] << 8) | ((u32)b[6] << 16) | ((u32)b[7] << 24);
        float q = (float)(nibble(b + 8, j) | (int)(((high >> j) & 1u) << 4));
        return __fadd_rn(__fmul_rn(f16_at(b), q), f16_at(b + 2));
    }
};
// IQ4_NL's and IQ4_XS's 16 levels.
__device__ __forceinline__ float iq4_level(int n) {
    const signed char levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    return (float)levels[n & 15];
}
struct WIQ4_NL {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 5) * 18;
        return __fmul_rn(f16_at(b), iq4_level(nibble(b + 2, (int)(i & 31))));
    }
};
// Q2_K (84 bytes): 16 scale/minimum nibbles, 64 bytes of 2-bit quants, d, dmin.
struct WQ2_K {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 8) * 84;
        int e = (int)(i & 255);
        int sm = b[e / 16];
        int q = (b[16 + (e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        float scale = __fmul_rn(f16_at(b + 80), (float)(sm & 15));
        return __fadd_rn(__fmul_rn(scale, (float)q), -__fmul_rn(f16_at(b + 82), (float)(sm >> 4)));
    }
};
// Q3_K (110 bytes): 32 bytes of high-bit masks, 64 of 2-bit quants, 12 of 6-bit scales, d.
struct WQ3_K {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 8) * 110;
        int e = (int)(i & 255), g = e / 16;
        int low = (b[96 + g % 8] >> (4 * (g / 8))) & 15;
        int high = (b[104 + g % 4] >> (2 * (g / 4))) & 3;
        float scale = __fmul_rn(f16_at(b + 108), (float)((low | (high << 4)) - 32));
        int q = (b[32 + (e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        int hbit = (b[e % 32] >> (e / 32)) & 1;
        return __fmul_rn(scale, (float)(q - (hbit ? 0 : 4)));
    }
};
// Q4_K's and Q5_K's 6-bit scale and minimum of group g, from their 12 bytes at s.
__device__ __forceinline__ void k_scale_min(const u8* s, int g, int* sc, int* m) {
    if (g < 4) {
        *sc = s[g] & 63;
        *m = s[g + 4] & 63;
    } else {
        *sc = (s[g + 4] & 15) | ((s[g - 4] >> 6) << 4);
        *m = (s[g + 4] >> 4) | ((s[g] >> 6) << 4);
    }
}
// Q4_K (144 bytes): d, dmin, 12 bytes of scales and minimums, 128 of nibbles; Q5_K (176 bytes)
// has 32 bytes of fifth bits before the nibbles.
template <bool FIFTH>
__device__ __forceinline__ float k_quant(const u8* b, int e) {
    int sc, m;
    k_scale_min(b + 4, e / 32, &sc, &m);
    const u8* qs = b + (FIFTH ? 48 : 16);
    int q = (qs[(e / 64) * 32 + e % 32] >> (4 * ((e % 64) / 32))) & 15;
    if (FIFTH) q |= ((b[16 + e % 32] >> (e / 32)) & 1) << 4;
    float scale = __fmul_rn(f16_at(b), (float)sc);
    return __fadd_rn(__fmul_rn(scale, (float)q), -__fmul_rn(f16_at(b + 2), (float)m));
}
struct WQ4_K {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        return k_quant<false>(p + (i >> 8) * 144, (int)(i & 255));
    }
};
struct WQ5_K {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        return k_quant<true>(p + (i >> 8) * 176, (int)(i & 255));
    }
};
// Q6_K (210 bytes): 128 bytes of low nibbles, 64 of high bit pairs, 16 signed scales, d.
struct WQ6_K {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 8) * 210;
        int e = (int)(i & 255), h = e / 128;
        int low = (b[h * 64 + e % 64] >> (4 * ((e % 128) / 64))) & 15;
        int high = (b[128 + h * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        float scale = __fmul_rn(f16_at(b + 208), (float)(signed char)b[192 + e / 16]);
        return __fmul_rn(scale, (float)((low | (high << 4)) - 32));
    }
};
// IQ4_XS (136 bytes): d, 16 bits of high scale pairs, 4 bytes of low scale nibbles, 128 of nibbles.
struct WIQ4_XS {
    typedef u8 T;
    static __device__ __forceinline__ float load(const u8* p, long long i) {
        const u8* b = p + (i >> 8) * 136;
        int e = (int)(i & 255), g = e / 32, j = e % 32;
        int high = ((b[2] | (b[3] << 8)) >> (2 * g)) & 3;
        int low = (b[4 + g / 2] >> (4 * (g % 2))) & 15;
        float scale = __fmul_rn(f16_at(b), (float)((low | (high << 4)) - 32));
        return __fmul_rn(scale, iq4_level((b[8 + g * 16 + j % 16] >> (4 * (j / 16))) & 15));
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
