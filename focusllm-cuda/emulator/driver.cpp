// A stand-in for the CUDA driver library (libcuda.so.1) that runs the crate's kernels on the CPU,
// so the CUDA backend's tests (every operation, the fixtures against transformers, the FocusLLM
// engine) run in CI without a GPU: the backend, the binding and NVRTC are the real ones; only the
// driver is replaced. It says nothing about speed, and a sequential scheduler hides some races a
// GPU would show (see simt.h for the execution model, fibers.cpp for its scheduler).
//
// What it checks beyond running the kernels: launch shapes (block and grid limits, dynamic shared
// memory over the default without the opt-in attribute), copies that leave their allocation,
// kernel accesses past the end of an allocation (a guard page after each one), reads of memory
// nobody wrote (fresh allocations and dynamic shared memory are filled with NaN), divergent
// barriers and warp operations with exited lanes, and device memory running out.
//
// Settings (environment): FOCUSLLM_EMULATOR_CC compute capability, e.g. "9.0" (default) or "7.5";
// FOCUSLLM_EMULATOR_MEMORY_MIB device memory (default 4096); FOCUSLLM_EMULATOR_REVERSE=1 runs
// the threads of every phase in reverse order.

#include "simt.h"

#include <csignal>
#include <map>
#include <mutex>
#include <set>
#include <utility>

#include <sys/mman.h>
#include <unistd.h>

// The crate's kernel sources, as build.sh prepared them.
#include "kernels.inc"

#define EXPORT extern "C" __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_SUPPORTED = 801,
};

namespace {

// ---- settings --------------------------------------------------------------------------------

struct Settings {
    int major = 9, minor = 0;
    size_t memory = size_t(4096) << 20;
    bool reverse = false;

    Settings() {
        if (const char* cc = getenv("FOCUSLLM_EMULATOR_CC")) {
            int a = 0, b = 0;
            if (sscanf(cc, "%d.%d", &a, &b) == 2 && a > 0) major = a, minor = b;
        }
        if (const char* m = getenv("FOCUSLLM_EMULATOR_MEMORY_MIB")) {
            long long mib = atoll(m);
            if (mib > 0) memory = size_t(mib) << 20;
        }
        const char* r = getenv("FOCUSLLM_EMULATOR_REVERSE");
        reverse = r && strcmp(r, "1") == 0;
    }
};

Settings& settings() {
    static Settings s;
    return s;
}

const size_t DEFAULT_SHARED = 48 * 1024;
const size_t OPTIN_SHARED = 227 * 1024;

std::recursive_mutex api;  // the emulator runs one call at a time

// ---- memory ------------------------------------------------------------------------------------

struct Allocation {
    void* map;
    size_t map_len;
    size_t size;
};

std::map<uintptr_t, Allocation> allocations;  // by device address
size_t allocated = 0;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

CUresult allocate(CUdeviceptr* out, size_t size) {
    if (!out || size == 0) return CUDA_ERROR_INVALID_VALUE;
    size_t body = round_up(size, 256);
    if (body > settings().memory - allocated) return CUDA_ERROR_OUT_OF_MEMORY;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t map_len = round_up(body, page) + page;
    void* map = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    char* guard = (char*)map + map_len - page;
    mprotect(guard, page, PROT_NONE);  // a kernel running off the end faults here
    char* p = guard - body;
    memset(p, 0xff, body);  // NaN in every f32: reading what was never written shows
    allocations[(uintptr_t)p] = Allocation{map, map_len, size};
    allocated += body;
    *out = (CUdeviceptr)(uintptr_t)p;
    return CUDA_SUCCESS;
}

CUresult release(CUdeviceptr ptr) {
    auto it = allocations.find((uintptr_t)ptr);
    if (it == allocations.end()) return CUDA_ERROR_INVALID_VALUE;
    allocated -= round_up(it->second.size, 256);
    munmap(it->second.map, it->second.map_len);
    allocations.erase(it);
    return CUDA_SUCCESS;
}

/// Whether `[ptr, ptr + bytes)` lies inside one allocation.
bool inside(CUdeviceptr ptr, size_t bytes) {
    auto it = allocations.upper_bound((uintptr_t)ptr);
    if (it == allocations.begin()) return false;
    --it;
    return (uintptr_t)ptr + bytes <= it->first + it->second.size;
}

// ---- modules and kernels ------------------------------------------------------------------------

typedef emu::Call Call;

template <typename... A, size_t... I>
void call_with(void (*k)(A...), void** params, std::index_sequence<I...>) {
    k(*static_cast<A*>(params[I])...);
}

template <typename... A>
Call bind(void (*k)(A...)) {
    return [k](void** params) { call_with(k, params, std::index_sequence_for<A...>{}); };
}

const std::map<std::string, Call>& kernels() {
    static const std::map<std::string, Call> table = {
#include "kernel_table.inc"  // every kernel of the sources, listed by build.sh
#ifdef FOCUSLLM_EMULATOR_EXTRA_KERNELS
        FOCUSLLM_EMULATOR_EXTRA_KERNELS  // selftest.cpp's
#endif
    };
    return table;
}

struct Function {
    std::string name;
    Call call;
    size_t max_dynamic_shared = DEFAULT_SHARED;
};

struct Module {
    std::set<std::string> entries;             // the `.entry` names of its PTX
    std::map<std::string, Function> functions;  // looked up so far: one handle per name
};

struct sigaction previous_segv;

void on_segv(int sig, siginfo_t* info, void* ctx) {
    if (emu::running.name) {
        std::string msg = "CUDA emulator: kernel `" + std::string(emu::running.name) + "`, " + emu::where() +
                          " touched memory outside every allocation (address " +
                          std::to_string((uintptr_t)info->si_addr) + ")\n";
        ssize_t ignored = write(2, msg.data(), msg.size());
        (void)ignored;
    }
    if (previous_segv.sa_flags & SA_SIGINFO) {
        previous_segv.sa_sigaction(sig, info, ctx);
    } else if (previous_segv.sa_handler != SIG_DFL && previous_segv.sa_handler != SIG_IGN) {
        previous_segv.sa_handler(sig);
    } else {
        signal(sig, SIG_DFL);  // returning re-runs the access, which now ends the process
    }
}

void install_segv_reporter() {
    static bool done = false;
    if (done) return;
    done = true;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
}

CUresult launch(Function* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                unsigned shared, void** params) {
    auto fail = [&](const std::string& why, CUresult code) {
        fprintf(stderr, "CUDA emulator: kernel `%s`: %s\n", f->name.c_str(), why.c_str());
        return code;
    };
    unsigned long long threads = (unsigned long long)bx * by * bz;
    if (threads == 0 || threads > 1024 || bx > 1024 || by > 1024 || bz > 64)
        return fail("block of " + std::to_string(bx) + "x" + std::to_string(by) + "x" + std::to_string(bz) +
                        " threads is outside the device's limits", CUDA_ERROR_INVALID_VALUE);
    if (gx == 0 || gy == 0 || gz == 0 || gx > 0x7fffffffu || gy > 65535 || gz > 65535)
        return fail("grid of " + std::to_string(gx) + "x" + std::to_string(gy) + "x" + std::to_string(gz) +
                        " blocks is outside the device's limits", CUDA_ERROR_INVALID_VALUE);
    if (shared > f->max_dynamic_shared)
        return fail(std::to_string(shared) + " bytes of dynamic shared memory, " +
                        std::to_string(f->max_dynamic_shared) + " allowed (raise it with the function attribute)",
                    CUDA_ERROR_INVALID_VALUE);
    std::vector<float> dynamic(round_up(shared, 4) / 4 + 1, std::nanf(""));
    emu::dynamic_shared = dynamic.data();
    emu::block_dim = emu::Dim3{bx, by, bz};
    emu::grid_dim = emu::Dim3{gx, gy, gz};
    emu::block.slots.assign(2 * threads, 0);
    emu::block.frags.assign(2 * threads * 8, 0);
    emu::block.fault.clear();
    emu::running = emu::Kernel{&f->call, params, f->name.c_str()};
    install_segv_reporter();
    bool ok = true;
    for (unsigned z = 0; z < gz && ok; ++z)
        for (unsigned y = 0; y < gy && ok; ++y)
            for (unsigned x = 0; x < gx && ok; ++x) {
                emu::block_idx = emu::Dim3{x, y, z};
                std::fill(dynamic.begin(), dynamic.end(), std::nanf(""));
                ok = emu::run_block((unsigned)threads, settings().reverse);
            }
    emu::running = emu::Kernel{};
    if (!ok) {
        std::string why = emu::block.fault;
        emu::block.fault.clear();
        return fail(why, CUDA_ERROR_LAUNCH_FAILED);
    }
    return CUDA_SUCCESS;
}

int context_token, stream_token, event_token;  // addresses serve as handles
thread_local void* current_context = nullptr;
bool initialised = false;

}  // namespace


// ---- the driver API (only what the binding calls for this crate) -------------------------------

#define LOCK std::lock_guard<std::recursive_mutex> lock(api)
#define NEED_INIT \
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED

EXPORT CUresult cuInit(unsigned) {
    LOCK;
    initialised = true;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDriverGetVersion(int* v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = 13000;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGetErrorString(CUresult e, const char** s) {
    static const std::map<int, const char*> text = {
        {CUDA_SUCCESS, "no error"},
        {CUDA_ERROR_INVALID_VALUE, "invalid argument"},
        {CUDA_ERROR_OUT_OF_MEMORY, "out of memory"},
        {CUDA_ERROR_NOT_INITIALIZED, "initialization error"},
        {CUDA_ERROR_INVALID_DEVICE, "invalid device ordinal"},
        {CUDA_ERROR_INVALID_IMAGE, "device kernel image is invalid"},
        {CUDA_ERROR_INVALID_CONTEXT, "invalid device context"},
        {CUDA_ERROR_INVALID_HANDLE, "invalid resource handle"},
        {CUDA_ERROR_NOT_FOUND, "named symbol not found"},
        {CUDA_ERROR_LAUNCH_FAILED, "unspecified launch failure"},
        {CUDA_ERROR_NOT_SUPPORTED, "operation not supported"},
    };
    auto it = text.find(e);
    if (!s || it == text.end()) return CUDA_ERROR_INVALID_VALUE;
    *s = it->second;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGetErrorName(CUresult e, const char** s) { return cuGetErrorString(e, s); }

EXPORT CUresult cuDeviceGetCount(int* n) {
    NEED_INIT;
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *n = 1;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    NEED_INIT;
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    snprintf(name, (size_t)len, "focusllm CUDA emulator (CPU, sm_%d%d)", settings().major, settings().minor);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice d) {
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!uuid) return CUDA_ERROR_INVALID_VALUE;
    memset(uuid, 0x42, 16);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }
EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice d) {
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    *bytes = settings().memory;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetAttribute(int* v, int attribute, CUdevice d) {
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    switch (attribute) {
        case 1: *v = 1024; break;                          // max threads per block
        case 2: *v = 1024; break;                          // max block x
        case 3: *v = 1024; break;                          // max block y
        case 4: *v = 64; break;                            // max block z
        case 5: *v = 0x7fffffff; break;                    // max grid x
        case 6: case 7: *v = 65535; break;                 // max grid y, z
        case 8: *v = (int)DEFAULT_SHARED; break;           // shared memory per block
        case 10: *v = 32; break;                           // warp size
        case 16: *v = 4; break;                            // multiprocessors
        case 75: *v = settings().major; break;             // compute capability
        case 76: *v = settings().minor; break;
        case 97: *v = (int)OPTIN_SHARED; break;            // shared memory per block, opt-in
        case 115: *v = 0; break;                           // memory pools: no (plain allocations)
        default: *v = 0;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(void** ctx, CUdevice d) {
    NEED_INIT;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    *ctx = &context_token;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { return d == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }
EXPORT CUresult cuCtxSetCurrent(void* ctx) {
    if (ctx && ctx != &context_token) return CUDA_ERROR_INVALID_CONTEXT;
    current_context = ctx;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxGetCurrent(void** ctx) {
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    *ctx = current_context;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxGetDevice(CUdevice* d) {
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    if (!current_context) return CUDA_ERROR_INVALID_CONTEXT;
    *d = 0;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxSynchronize() { return current_context ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT; }

// Work runs when it is queued, so streams and events have nothing to wait for.
EXPORT CUresult cuStreamCreate(void** s, unsigned) {
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    *s = &stream_token;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamDestroy_v2(void*) { return CUDA_SUCCESS; }
EXPORT CUresult cuStreamSynchronize(void*) { return current_context ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT; }
EXPORT CUresult cuStreamQuery(void*) { return CUDA_SUCCESS; }
EXPORT CUresult cuStreamWaitEvent(void*, void*, unsigned) { return CUDA_SUCCESS; }
EXPORT CUresult cuEventCreate(void** e, unsigned) {
    if (!e) return CUDA_ERROR_INVALID_VALUE;
    *e = &event_token;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventRecord(void*, void*) { return CUDA_SUCCESS; }
EXPORT CUresult cuEventSynchronize(void*) { return CUDA_SUCCESS; }
EXPORT CUresult cuEventQuery(void*) { return CUDA_SUCCESS; }
EXPORT CUresult cuEventDestroy_v2(void*) { return CUDA_SUCCESS; }

EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    LOCK;
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = settings().memory;
    *free_bytes = settings().memory - allocated;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    LOCK;
    NEED_INIT;
    return allocate(p, bytes);
}
EXPORT CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, void*) { return cuMemAlloc_v2(p, bytes); }
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) {
    LOCK;
    return release(p);
}
EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, void*) { return cuMemFree_v2(p); }

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, void*) {
    LOCK;
    if (bytes == 0) return CUDA_SUCCESS;
    if (!src || !inside(dst, bytes)) return CUDA_ERROR_INVALID_VALUE;
    memcpy((void*)(uintptr_t)dst, src, bytes);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, void*) {
    LOCK;
    if (bytes == 0) return CUDA_SUCCESS;
    if (!dst || !inside(src, bytes)) return CUDA_ERROR_INVALID_VALUE;
    memcpy(dst, (const void*)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, void*) {
    LOCK;
    if (bytes == 0) return CUDA_SUCCESS;
    if (!inside(dst, bytes) || !inside(src, bytes)) return CUDA_ERROR_INVALID_VALUE;
    memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
    return cuMemcpyHtoDAsync_v2(dst, src, bytes, nullptr);
}
EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
    return cuMemcpyDtoHAsync_v2(dst, src, bytes, nullptr);
}
EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, void*) {
    LOCK;
    if (n == 0) return CUDA_SUCCESS;
    if (!inside(dst, n)) return CUDA_ERROR_INVALID_VALUE;
    memset((void*)(uintptr_t)dst, value, n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleLoadData(void** module, const void* image) {
    LOCK;
    NEED_INIT;
    if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
    std::string ptx(static_cast<const char*>(image));
    if (ptx.find(".version") == std::string::npos || ptx.find(".target") == std::string::npos)
        return CUDA_ERROR_INVALID_IMAGE;
    auto* m = new Module;
    for (size_t at = ptx.find(".entry "); at != std::string::npos; at = ptx.find(".entry ", at + 1)) {
        size_t start = at + 7, end = ptx.find_first_of("( \n", start);
        m->entries.insert(ptx.substr(start, end - start));
    }
    *module = m;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuModuleUnload(void* module) {
    LOCK;
    delete static_cast<Module*>(module);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuModuleGetFunction(void** function, void* module, const char* name) {
    LOCK;
    if (!function || !module || !name) return CUDA_ERROR_INVALID_VALUE;
    auto* m = static_cast<Module*>(module);
    auto k = kernels().find(name);
    if (!m->entries.count(name) || k == kernels().end()) return CUDA_ERROR_NOT_FOUND;
    auto it = m->functions.try_emplace(name, Function{name, k->second}).first;
    *function = &it->second;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuFuncSetAttribute(void* function, int attribute, int value) {
    LOCK;
    if (!function) return CUDA_ERROR_INVALID_HANDLE;
    if (attribute == 8) {  // max dynamic shared memory
        if (value < 0 || (size_t)value > OPTIN_SHARED) return CUDA_ERROR_INVALID_VALUE;
        static_cast<Function*>(function)->max_dynamic_shared = (size_t)value;
        return CUDA_SUCCESS;
    }
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuFuncGetAttribute(int* v, int attribute, void* function) {
    if (!v || !function) return CUDA_ERROR_INVALID_VALUE;
    *v = attribute == 0 ? 1024 : attribute == 8 ? (int)static_cast<Function*>(function)->max_dynamic_shared : 0;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned shared, void*, void** params, void** extra) {
    LOCK;
    if (!function) return CUDA_ERROR_INVALID_HANDLE;
    if (!current_context) return CUDA_ERROR_INVALID_CONTEXT;
    if (!params || extra) return CUDA_ERROR_INVALID_VALUE;
    return launch(static_cast<Function*>(function), gx, gy, gz, bx, by, bz, shared, params);
}

// NVRTC loads the driver when it can and asks for its private tables; it does without them.
EXPORT CUresult cuGetExportTable(const void** table, const void*) {
    if (table) *table = nullptr;
    return CUDA_ERROR_NOT_FOUND;
}
