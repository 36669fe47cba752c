// CUDA's execution model on one CPU thread, for running the crate's kernel sources unchanged in
// tests on machines without a GPU (see build.sh and driver.cpp).
//
// A launch runs its blocks one after another. Inside a block every CUDA thread is a fiber
// with its own stack; the scheduler runs each fiber until it reaches a barrier or
// returns. `__syncthreads` releases when every live thread of the block waits there; warp
// operations (shuffles, the emulated tensor-core product) release when all 32 lanes of the warp
// wait at one. Divergent barriers and warp operations with exited lanes are reported as kernel
// faults instead of hanging. `FOCUSLLM_EMULATOR_REVERSE=1` runs the fibers of every phase in
// reverse order: a result that depends on the order of threads between barriers (a race) then
// differs between the two orders.
//
// Only what the crate's kernels use is provided; a kernel using anything else fails to compile
// here, which is the cue to add it.

#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace emu {

/// A suspended execution context. On x86-64 a switch saves six registers and the stack pointer
/// (no system call, unlike swapcontext); elsewhere it is a ucontext.
struct Context {
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
};

/// Prepares `ctx` to run `entry` (which must never return) on `stack`.
void start(Context* ctx, char* stack, size_t size, void (*entry)());

/// Saves the running context in `from` and resumes `to`.
void switch_to(Context* from, Context* to);

struct Dim3 {
    unsigned x, y, z;
};

enum class State { Ready, WaitBlock, WaitWarp, Done };

struct Fiber {
    Context ctx;
    Dim3 idx;
    State state;
    char* stack;
    int exchanges;  // warp operations done: their parity picks the half of the exchange buffers
};

/// The block being run: its fibers, the current one and the per-thread exchange slots.
struct Block {
    std::vector<Fiber> fibers;
    Fiber* current = nullptr;
    Context scheduler;
    // Exchange buffers of the warp operations, in two halves used by turns: a lane that has
    // read its warp's values and moved on writes the other half, so one barrier per operation
    // is enough (the next use of this half waits behind the next operation's barrier, which
    // every lane reaches only after reading).
    std::vector<uint64_t> slots;  // two per thread: shuffle values
    std::vector<uint32_t> frags;  // two times eight words per thread: tensor-core fragments
    std::string fault;            // set by a fiber that faulted; the scheduler stops the launch
};

extern Block block;
extern Dim3 block_idx, block_dim, grid_dim;
extern float* dynamic_shared;

inline int thread_rank() {
    const Fiber* f = block.current;
    return (int)(f->idx.x + block_dim.x * (f->idx.y + block_dim.y * f->idx.z));
}

/// Hands control back to the scheduler with this fiber in `state`.
inline void wait(State state) {
    Fiber* f = block.current;
    f->state = state;
    switch_to(&f->ctx, &block.scheduler);
}

/// Stops the running kernel: records `what`, retires this fiber for good and ends the launch
/// with an error.
[[noreturn]] void fault(const std::string& what);

/// A kernel with its arguments: the driver unpacks `params` (pointers to each argument, as
/// cuLaunchKernel receives them) into a call of the kernel function.
typedef std::function<void(void**)> Call;

/// The kernel being launched; `name` is null between launches.
struct Kernel {
    const Call* call = nullptr;
    void** params = nullptr;
    const char* name = nullptr;
};

extern Kernel running;

/// Runs block `block_idx` of `running` with `threads` fibers (each phase in reverse order when
/// `reverse`); false, with `block.fault` set, when the kernel broke one of CUDA's rules.
bool run_block(unsigned threads, bool reverse);

/// "block (x,y,z), thread (x,y,z)" of the running fiber, for fault messages.
std::string where();

/// The half of the exchange buffers the calling thread's next warp operation uses (0 or 1).
inline int next_half() {
    return block.current->exchanges++ & 1;
}

/// Exchanges 64 bits with lane `src` of the calling warp (every lane must take part).
inline uint64_t warp_exchange(uint64_t v, int src) {
    int t = thread_rank();
    uint64_t* slots = &block.slots[next_half() * block.fibers.size()];
    slots[t] = v;
    wait(State::WaitWarp);
    return slots[(t & ~31) | (src & 31)];
}

}  // namespace emu

// ---- CUDA's names ----------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
// `__shared__` arrays become function statics: blocks run one at a time, so every thread of the
// running block sees the same array, as on the GPU. (build.sh rewrites `extern __shared__`
// declarations into the launch's dynamic buffer.)
#define __shared__ static

#define threadIdx (emu::block.current->idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

struct __attribute__((aligned(8))) float2 {
    float x, y;
};

inline void __syncthreads() { emu::wait(emu::State::WaitBlock); }
inline void __trap() { emu::fault("__trap() called"); }

inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
inline float __uint_as_float(unsigned x) { float f; std::memcpy(&f, &x, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned x; std::memcpy(&x, &f, 4); return x; }
// Round-to-nearest product and sum, never contracted into an fma (the build targets baseline
// x86-64, which has none, and does not ask for -ffp-contract across these calls).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline int __float_as_int(float f) { int x; std::memcpy(&x, &f, 4); return x; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

inline void check_full_mask(unsigned mask) {
    if (mask != 0xffffffffu) emu::fault("warp operation with a partial mask (not emulated)");
}

inline float __shfl_sync(unsigned mask, float v, int src) {
    check_full_mask(mask);
    return __uint_as_float((unsigned)emu::warp_exchange(__float_as_uint(v), src));
}
inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
    check_full_mask(mask);
    int lane = emu::thread_rank() & 31;
    return __uint_as_float((unsigned)emu::warp_exchange(__float_as_uint(v), lane ^ lane_mask));
}

// ---- Portable twins of the kernels' PTX helpers (FOCUSLLM_EMULATOR hides the PTX versions) ---

typedef unsigned short u16;
typedef unsigned int u32;

inline float f16_to_f32(u16 x) {
    // Exact, by bits (the compiler's _Float16 widening is a slow library call without F16C).
    u32 sign = (u32)(x & 0x8000u) << 16, exp = (x >> 10) & 0x1fu, man = x & 0x3ffu;
    if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));  // inf, NaN
    if (exp != 0) return __uint_as_float(sign | ((exp + 112) << 23) | (man << 13));
    return __uint_as_float(sign) + (sign ? -1.0f : 1.0f) * (float)man * 0x1p-24f;  // zero, subnormal
}

inline u16 f32_to_f16(float f) {
    _Float16 h = (_Float16)f;  // round to nearest even, as cvt.rn.f16.f32
    u16 x;
    std::memcpy(&x, &h, 2);
    return x;
}

/// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: the warp's fragments are gathered, and each
/// lane adds its four elements of A(16x16) . B(16x8), laid out as PTX's ISA describes (lane
/// l holds rows l/4 and l/4 + 8, columns 2(l%4) + {0, 1} (+ 8) of A; rows 2(l%4) + {0, 1} (+ 8),
/// column l/4 of B; and rows l/4 (+ 8), columns 2(l%4) + {0, 1} of D).
template <bool BF16>
inline void mma_16816(float* d, const u32* a, u32 b0, u32 b1) {
    int t = emu::thread_rank();
    uint32_t* frags = &emu::block.frags[emu::next_half() * emu::block.fibers.size() * 8];
    uint32_t* mine = &frags[t * 8];
    mine[0] = a[0], mine[1] = a[1], mine[2] = a[2], mine[3] = a[3], mine[4] = b0, mine[5] = b1;
    emu::wait(emu::State::WaitWarp);
    auto half = [](uint32_t word, int hi) -> float {
        u16 bits = (u16)(hi ? word >> 16 : word & 0xffffu);
        return BF16 ? __uint_as_float((u32)bits << 16) : f16_to_f32(bits);
    };
    const uint32_t* warp = &frags[(t & ~31) * 8];
    int lane = t & 31, g = lane >> 2, c = (lane & 3) * 2;
    // Rows g and g + 8 of A come from lanes 4g..4g+3; columns c and c + 1 of B from lanes
    // 4c..4c+3 and 4(c+1)..4(c+1)+3.
    float A[2][16], B[2][16];
    for (int q = 0; q < 4; ++q) {
        const uint32_t* f = warp + (4 * g + q) * 8;
        for (int e = 0; e < 2; ++e) {
            A[0][2 * q + e] = half(f[0], e);
            A[1][2 * q + e] = half(f[1], e);
            A[0][2 * q + 8 + e] = half(f[2], e);
            A[1][2 * q + 8 + e] = half(f[3], e);
        }
        for (int j = 0; j < 2; ++j) {
            const uint32_t* fb = warp + (4 * (c + j) + q) * 8;
            for (int e = 0; e < 2; ++e) {
                B[j][2 * q + e] = half(fb[4], e);
                B[j][2 * q + 8 + e] = half(fb[5], e);
            }
        }
    }
    for (int i = 0; i < 4; ++i) {
        float s = 0.0f;
        for (int k = 0; k < 16; ++k) s = std::fma(A[i >> 1][k], B[i & 1][k], s);  // products are exact
        d[i] += s;
    }
}
