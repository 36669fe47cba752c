// The emulator's own test: its warp operations, barriers and tensor-core product compute what the
// CUDA and PTX documentation say, and each misuse it claims to catch is caught. Built and run by
// build.sh; exits non-zero with a message on the first failure.

#include "simt.h"

#include <sys/wait.h>

#include <random>

// ---- kernels that use the emulator correctly ----------------------------------------------------

// out[block] = sum of in[block * blockDim.x + t] over the block's threads (warp sums, then a
// shared partial per warp), the pattern of the crate's RMSNorm.
extern "C" __global__ void block_sum(float* out, const float* in) {
    __shared__ float partial[32];
    int t = threadIdx.x, warp = t >> 5, lane = t & 31;
    float v = in[blockIdx.x * blockDim.x + t];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (t == 0) {
        float s = 0.0f;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) s += partial[w];
        out[blockIdx.x] = s;
    }
}

// One m16n8k16 product per warp: each lane loads its fragments from row-major A (16x16) and B
// (16x8) with the index formulas of the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating
// point type"), and D = A B (+ the zero accumulator) is stored the same way.
extern "C" __global__ void mma_probe(float* d, const u16* a, const u16* b) {
    int lane = threadIdx.x & 31, group = lane >> 2, tig = lane % 4;
    u16 ae[8], be[4];
    for (int i = 0; i < 8; ++i) {
        int row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
        int col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
        ae[i] = a[row * 16 + col];
    }
    for (int i = 0; i < 4; ++i) {
        int row = tig * 2 + (i & 1) + (i >= 2 ? 8 : 0);
        be[i] = b[row * 8 + group];
    }
    u32 ar[4], b0 = be[0] | (u32)be[1] << 16, b1 = be[2] | (u32)be[3] << 16;
    for (int r = 0; r < 4; ++r) ar[r] = ae[2 * r] | (u32)ae[2 * r + 1] << 16;
    float acc[4] = {0, 0, 0, 0};
    mma_16816<false>(acc, ar, b0, b1);
    for (int i = 0; i < 4; ++i) {
        int row = i < 2 ? group : group + 8, col = tig * 2 + (i & 1);
        d[row * 8 + col] = acc[i];
    }
}

// out[i] = dynamic shared memory, written by thread i and read back by thread n - 1 - i.
extern "C" __global__ void shared_roundtrip(float* out, int n) {
    float* smem = emu::dynamic_shared;
    int t = threadIdx.x;
    for (int i = t; i < n; i += blockDim.x) smem[i] = (float)i;
    __syncthreads();
    for (int i = t; i < n; i += blockDim.x) out[i] = smem[n - 1 - i];
}

// ---- kernels that break CUDA's rules ------------------------------------------------------------

extern "C" __global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
    }
}

extern "C" __global__ void shuffle_after_return(float* out) {
    if (threadIdx.x & 1) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 2);
}

extern "C" __global__ void write_past_end(float* out, int n) { out[n + 4096] = 1.0f; }

#define FOCUSLLM_EMULATOR_EXTRA_KERNELS                                                          \
    {"block_sum", bind(block_sum)}, {"mma_probe", bind(mma_probe)},                                \
        {"shared_roundtrip", bind(shared_roundtrip)}, {"divergent_barrier", bind(divergent_barrier)}, \
        {"shuffle_after_return", bind(shuffle_after_return)}, {"write_past_end", bind(write_past_end)},

#include "driver.cpp"

// ---- the checks ----------------------------------------------------------------------------------

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    failures += !ok;
}

void* function(const char* name) {
    static void* module = nullptr;
    if (!module) {
        const char* ptx =
            ".version 8.0\n.target sm_90\n.entry block_sum(\n.entry mma_probe(\n.entry shared_roundtrip(\n"
            ".entry divergent_barrier(\n.entry shuffle_after_return(\n.entry write_past_end(\n";
        if (cuModuleLoadData(&module, ptx) != CUDA_SUCCESS) abort();
    }
    void* f = nullptr;
    if (cuModuleGetFunction(&f, module, name) != CUDA_SUCCESS) abort();
    return f;
}

CUdeviceptr upload(const void* data, size_t bytes) {
    CUdeviceptr p = 0;
    if (cuMemAlloc_v2(&p, bytes) != CUDA_SUCCESS || cuMemcpyHtoD_v2(p, data, bytes) != CUDA_SUCCESS) abort();
    return p;
}

template <typename T>
std::vector<T> download(CUdeviceptr p, size_t n) {
    std::vector<T> v(n);
    if (cuMemcpyDtoH_v2(v.data(), p, n * sizeof(T)) != CUDA_SUCCESS) abort();
    return v;
}

CUresult run(const char* name, unsigned grid, unsigned block, unsigned shared, std::vector<void*> args) {
    return cuLaunchKernel(function(name), grid, 1, 1, block, 1, 1, shared, nullptr, args.data(), nullptr);
}

void check_conversions() {
    bool ok = true;
    for (unsigned bits = 0; bits < 65536; ++bits) {
        _Float16 h;
        u16 b16 = (u16)bits;
        std::memcpy(&h, &b16, 2);
        float want = (float)h, got = f16_to_f32(b16);
        ok &= (std::isnan(want) && std::isnan(got)) || __float_as_uint(want) == __float_as_uint(got);
        if (!std::isnan(want)) ok &= f32_to_f16(got) == b16;
    }
    expect(ok, "f16 <-> f32 conversions agree with the compiler's _Float16 on all 65536 patterns");
}

void check_block_sum() {
    for (int reverse = 0; reverse < 2; ++reverse) {
        settings().reverse = reverse;
        const unsigned blocks = 3, threads = 256;
        std::vector<float> in(blocks * threads);
        for (size_t i = 0; i < in.size(); ++i) in[i] = (float)(i % 7) - 3.0f;
        CUdeviceptr din = upload(in.data(), in.size() * 4), dout = 0;
        cuMemAlloc_v2(&dout, blocks * 4);
        CUresult r = run("block_sum", blocks, threads, 0, {&dout, &din});
        auto out = download<float>(dout, blocks);
        bool ok = r == CUDA_SUCCESS;
        for (unsigned b = 0; b < blocks; ++b) {
            float want = 0;
            for (unsigned t = 0; t < threads; ++t) want += in[b * threads + t];
            ok &= out[b] == want;
        }
        expect(ok, std::string("warp shuffles and __syncthreads sum a block") + (reverse ? " (reverse order)" : ""));
        cuMemFree_v2(din), cuMemFree_v2(dout);
    }
    settings().reverse = false;
}

void check_mma() {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> small(-8, 8);
    std::vector<u16> a(256), b(128);
    std::vector<float> af(256), bf(128);
    for (int i = 0; i < 256; ++i) af[i] = small(rng) / 4.0f, a[i] = f32_to_f16(af[i]);
    for (int i = 0; i < 128; ++i) bf[i] = small(rng) / 8.0f, b[i] = f32_to_f16(bf[i]);
    CUdeviceptr da = upload(a.data(), 512), db = upload(b.data(), 256), dd = 0;
    cuMemAlloc_v2(&dd, 128 * 4);
    CUresult r = run("mma_probe", 1, 32, 0, {&dd, &da, &db});
    auto d = download<float>(dd, 128);
    bool ok = r == CUDA_SUCCESS;
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 8; ++j) {
            float want = 0;
            for (int k = 0; k < 16; ++k) want += af[i * 16 + k] * bf[k * 8 + j];  // exact: small dyadics
            ok &= d[i * 8 + j] == want;
        }
    expect(ok, "the emulated m16n8k16 product equals A B with the PTX ISA's fragment layout");
    cuMemFree_v2(da), cuMemFree_v2(db), cuMemFree_v2(dd);
}

void check_shared_memory() {
    int n = 16384;  // 64 KiB: over the 48 KiB a kernel gets without opting in
    CUdeviceptr out = 0;
    cuMemAlloc_v2(&out, n * 4);
    expect(run("shared_roundtrip", 1, 128, n * 4, {&out, &n}) == CUDA_ERROR_INVALID_VALUE,
           "64 KiB of dynamic shared memory without the opt-in attribute is refused");
    cuFuncSetAttribute(function("shared_roundtrip"), 8, n * 4);
    CUresult r = run("shared_roundtrip", 1, 128, n * 4, {&out, &n});
    auto v = download<float>(out, n);
    bool ok = r == CUDA_SUCCESS;
    for (int i = 0; i < n; ++i) ok &= v[i] == (float)(n - 1 - i);
    expect(ok, "with the attribute raised, 64 KiB of dynamic shared memory works");
    cuMemFree_v2(out);
}

void check_faults() {
    CUdeviceptr out = 0;
    cuMemAlloc_v2(&out, 1024 * 4);
    expect(download<float>(out, 1).size() == 1 && std::isnan(download<float>(out, 1)[0]),
           "fresh device memory reads as NaN");
    expect(run("divergent_barrier", 1, 32, 0, {&out}) == CUDA_ERROR_LAUNCH_FAILED,
           "__syncthreads against a shuffle in the same warp is a launch failure");
    expect(run("shuffle_after_return", 1, 32, 0, {&out}) == CUDA_ERROR_LAUNCH_FAILED,
           "a full-warp shuffle after lanes returned is a launch failure");
    expect(run("block_sum", 1, 2048, 0, {&out, &out}) == CUDA_ERROR_INVALID_VALUE,
           "a block of 2048 threads is refused");
    expect(cuLaunchKernel(function("block_sum"), 1, 70000, 1, 32, 1, 1, 0, nullptr,
                          std::vector<void*>{&out, &out}.data(), nullptr) == CUDA_ERROR_INVALID_VALUE,
           "a grid of 70000 blocks in y is refused");
    float host[8] = {};
    expect(cuMemcpyHtoD_v2(out + 1020 * 4, host, sizeof host) == CUDA_ERROR_INVALID_VALUE,
           "a copy running past its allocation is refused");
    CUdeviceptr huge = 0;
    expect(cuMemAlloc_v2(&huge, settings().memory + 1) == CUDA_ERROR_OUT_OF_MEMORY,
           "an allocation over the device's memory is out of memory");
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int n = 1024;
        run("write_past_end", 1, 1, 0, {&out, &n});
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "a kernel writing past its allocation faults");
    cuMemFree_v2(out);
}

}  // namespace

int main() {
    cuInit(0);
    void* ctx = nullptr;
    cuDevicePrimaryCtxRetain(&ctx, 0);
    cuCtxSetCurrent(ctx);
    check_conversions();
    check_block_sum();
    check_mma();
    check_shared_memory();
    check_faults();
    if (failures) {
        printf("%d emulator self-checks failed\n", failures);
        return 1;
    }
    return 0;
}
