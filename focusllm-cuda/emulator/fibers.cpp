// The fibers of simt.h: switching between them, and the scheduler that runs one block of a
// kernel to its end, releasing barriers and reporting their misuse.

#include "simt.h"

namespace emu {

Block block;
Dim3 block_idx, block_dim, grid_dim;
float* dynamic_shared = nullptr;

#if defined(__x86_64__)
// switch_stacks(&from_sp, to_sp): pushes the callee-saved registers, stores the stack pointer,
// loads the other one and pops its registers; `ret` resumes where that context switched away.
extern "C" void emu_switch_stacks(void** from_sp, void* to_sp);
asm(R"(
    .text
    .p2align 4
    .type emu_switch_stacks, @function
emu_switch_stacks:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch_stacks, .-emu_switch_stacks
)");

void start(Context* ctx, char* stack, size_t size, void (*entry)()) {
    // The first switch pops six zero registers and returns into `entry`, with the stack aligned
    // as at a function's entry (the slot above is the return address `entry` never uses).
    auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t(15);
    auto* sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;
    *--sp = reinterpret_cast<void*>(entry);
    for (int i = 0; i < 6; ++i) *--sp = nullptr;
    ctx->sp = sp;
}

void switch_to(Context* from, Context* to) { emu_switch_stacks(&from->sp, to->sp); }
#else
void start(Context* ctx, char* stack, size_t size, void (*entry)()) {
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = stack;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = nullptr;
    makecontext(&ctx->uc, entry, 0);
}

void switch_to(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
#endif

Kernel running;

namespace {

const size_t FIBER_STACK = 64 * 1024;
std::vector<char*> stacks;  // one per thread of the largest block so far, reused

void fiber_entry() {
    (*running.call)(running.params);
    Fiber* f = block.current;
    f->state = State::Done;
    switch_to(&f->ctx, &block.scheduler);
    abort();  // a finished fiber is never resumed
}

std::string block_name() {
    char buf[64];
    snprintf(buf, sizeof buf, "block (%u,%u,%u)", block_idx.x, block_idx.y, block_idx.z);
    return buf;
}

}  // namespace

std::string where() {
    char buf[64];
    const Fiber* f = block.current;
    snprintf(buf, sizeof buf, ", thread (%u,%u,%u)", f ? f->idx.x : 0, f ? f->idx.y : 0, f ? f->idx.z : 0);
    return block_name() + buf;
}

bool run_block(unsigned threads, bool reverse) {
    auto& b = block;
    b.fibers.resize(threads);
    while (stacks.size() < threads) stacks.push_back(static_cast<char*>(malloc(FIBER_STACK)));
    for (unsigned i = 0; i < threads; ++i) {
        Fiber& f = b.fibers[i];
        unsigned x = i % block_dim.x, rest = i / block_dim.x;
        f.idx = Dim3{x, rest % block_dim.y, rest / block_dim.y};
        f.state = State::Ready;
        f.stack = stacks[i];
        f.exchanges = 0;
        start(&f.ctx, f.stack, FIBER_STACK, fiber_entry);
    }
    for (;;) {
        for (unsigned k = 0; k < threads; ++k) {
            Fiber& f = b.fibers[reverse ? threads - 1 - k : k];
            if (f.state != State::Ready) continue;
            b.current = &f;
            switch_to(&b.scheduler, &f.ctx);
            if (!b.fault.empty()) return false;
        }
        b.current = nullptr;
        // Every thread now waits at a barrier or has returned. Release warps first.
        bool released = false;
        for (unsigned w = 0; w * 32 < threads; ++w) {
            unsigned lo = w * 32, hi = std::min(threads, lo + 32), waiting = 0, done = 0;
            for (unsigned i = lo; i < hi; ++i) {
                waiting += b.fibers[i].state == State::WaitWarp;
                done += b.fibers[i].state == State::Done;
            }
            if (waiting == 0) continue;
            if (waiting == 32) {
                for (unsigned i = lo; i < hi; ++i) b.fibers[i].state = State::Ready;
                released = true;
            } else if (waiting + done == hi - lo) {
                b.fault = block_name() + ": a warp operation in warp " + std::to_string(w) + " while " +
                          std::to_string(done) + " of its lanes have returned (or the warp is partial)";
                return false;
            }
        }
        if (released) continue;
        unsigned alive = 0, at_barrier = 0;
        for (auto& f : b.fibers) {
            alive += f.state != State::Done;
            at_barrier += f.state == State::WaitBlock;
        }
        if (alive == 0) return true;
        if (at_barrier != alive) {
            b.fault = block_name() + ": threads wait at different barriers (__syncthreads against a warp operation)";
            return false;
        }
        for (auto& f : b.fibers)
            if (f.state == State::WaitBlock) f.state = State::Ready;
    }
}

void fault(const std::string& what) {
    block.fault = where() + ": " + what;
    block.current->state = State::Done;
    switch_to(&block.current->ctx, &block.scheduler);
    abort();  // never resumed
}

}  // namespace emu
