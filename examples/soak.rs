//! Soak test: one [`Llm`] shared by many threads, each generating in a loop with random prompts,
//! plain and FocusLLM inputs, documents read once and asked, random (sometimes invalid) options
//! and random cancellation before the prefill, inside it and inside decoding, all through one
//! small chunk cache (`--chunk-cache-mib`) that the threads fill and evict. It fails (exit
//! status 1) on a panic, a generation that neither finishes nor errors as its case says, no
//! progress for `--stall-secs` (a deadlock), or, between rounds after the first, live heap bytes
//! growing past `--heap-growth-mb` (a leak) or resident memory past `--rss-growth-mb`.
//! `--latency` instead measures how long a cancellation takes to return mid-prefill, for plain
//! attention and for a FocusLLM read of `--focus-tokens` tokens.
//!
//! ```text
//! cargo run --release --example soak -- --threads 8 --generations 300
//! cargo run --release --example soak -- --latency
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use focusllm::{
    CancelToken, Control, DecodeMode, Device, Error, FinishReason, FocusConfig, GenerateOptions, Llm, Progress,
    ProgressCallback, Sampling, TokenStream,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
#[command(about = "Soak one Llm with concurrent, cancelled and invalid generations")]
struct Args {
    /// A GGUF file or model directory (default: the cached default model, fetched if missing).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Generating threads sharing the one `Llm`.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Generations in all (over every thread).
    #[arg(long, default_value_t = 300)]
    generations: usize,
    /// CPU backend worker threads (default: every core).
    #[arg(long)]
    cpu_threads: Option<usize>,
    /// Seed of the random cases.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most growth of live heap bytes outside the chunk cache, in MiB, between rounds after the
    /// first (a leak).
    #[arg(long, default_value_t = 8)]
    heap_growth_mb: u64,
    /// Most growth of resident memory, in MiB, between rounds after the first.
    #[arg(long, default_value_t = 64)]
    rss_growth_mb: u64,
    /// The model's chunk cache, in MiB, shared and evicted by every thread (0: off).
    #[arg(long, default_value_t = 16)]
    chunk_cache_mib: u64,
    /// Seconds without a finished generation that count as a deadlock.
    #[arg(long, default_value_t = 300)]
    stall_secs: u64,
    /// Measure cancellation latency mid-prefill instead.
    #[arg(long)]
    latency: bool,
    /// Tokens of the FocusLLM input whose read `--latency` cancels.
    #[arg(long, default_value_t = 131_072)]
    focus_tokens: usize,
    /// Tokens of the plain-attention prompt whose prefill `--latency` cancels.
    #[arg(long, default_value_t = 7_500)]
    plain_tokens: usize,
    /// Cancellations per kind `--latency` measures.
    #[arg(long, default_value_t = 3)]
    trials: usize,
}

/// Words the random prompts are made of.
const WORDS: &[&str] = &[
    "the", "harbour", "gate", "opens", "at", "dawn", "and", "a", "keeper", "writes", "weather", "in", "her", "book",
    "ships", "pass", "north", "seven", "green", "lamps", "river", "code", "is", "42", "über", "café", "—", "东京", "?",
];

/// The resident set size of this process in bytes (Linux), or 0 where unknown.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn text(rng: &mut StdRng, words: usize) -> String {
    (0..words).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
}

/// Small FocusLLM sizes, so that inputs of a few thousand tokens have several chunks.
fn small_focus(rng: &mut StdRng) -> FocusConfig {
    let decode = [DecodeMode::CachedLocal, DecodeMode::Exact, DecodeMode::FrozenMemory, DecodeMode::MinEntropy]
        [rng.random_range(0..4)];
    FocusConfig {
        local_window: 256,
        chunk_size: 256,
        query_len: Some(64),
        threshold: Some(512),
        chunk_batch: rng.random_range(1..4),
        decode,
        ..FocusConfig::default()
    }
}

/// When a case cancels its generation.
#[derive(Debug, Clone, Copy)]
enum Cancel {
    Never,
    BeforePrefill,
    MidPrefill,
    MidDecode(usize),
}

/// What one case must end in.
#[derive(Debug)]
enum Expect {
    /// Tokens up to the budget (or a stop), or `Cancelled` when the case cancels.
    Run,
    /// A typed error before any token.
    Refused(&'static str),
}

/// Drains a stream, cancelling mid-decode when asked; returns the tokens and why it ended.
fn drain(mut stream: TokenStream<'_>, cancel: &CancelToken, when: Cancel) -> Result<(usize, FinishReason), Error> {
    let mut n = 0;
    for token in stream.by_ref() {
        token?;
        n += 1;
        if matches!(when, Cancel::MidDecode(k) if n == k) {
            cancel.cancel();
        }
    }
    Ok((n, stream.finish_reason().expect("a drained stream has a finish reason")))
}

/// Runs one random case; `Err` describes a failure of the library.
fn case(llm: &Llm, rng: &mut StdRng) -> Result<&'static str, String> {
    let cancel = CancelToken::new();
    let mut when = match rng.random_range(0..10) {
        0 => Cancel::BeforePrefill,
        1 | 2 => Cancel::MidPrefill,
        3 | 4 => Cancel::MidDecode(rng.random_range(1..4)),
        _ => Cancel::Never,
    };
    let long = rng.random_bool(0.3);
    let words = if long { rng.random_range(600..1400) } else { rng.random_range(5..250) };
    let mut ids = llm.tokenizer().encode(&text(rng, words)).map_err(|e| e.to_string())?;
    let mut options = GenerateOptions {
        max_tokens: rng.random_range(0..12),
        sampling: Sampling {
            temperature: [0.0, 0.7, 1.2][rng.random_range(0..3)],
            top_k: [0, 40][rng.random_range(0..2)],
            seed: rng.random(),
            ..Sampling::default()
        },
        focus: rng.random_bool(0.7).then(|| small_focus(rng)),
        ..Default::default()
    };
    let mut expect = Expect::Run;
    match rng.random_range(0..12) {
        0 => {
            options.sampling.temperature = -1.0;
            expect = Expect::Refused("a negative temperature");
        }
        1 => {
            options.sampling.top_p = 2.0;
            expect = Expect::Refused("top_p above 1");
        }
        2 => {
            ids.push(llm.config().vocab_size as u32 + 7);
            expect = Expect::Refused("an id outside the vocabulary");
        }
        3 => {
            options.memory_budget = Some(1024);
            expect = Expect::Refused("a budget of 1 KiB");
        }
        4 if options.focus.is_some() => {
            options.focus.as_mut().unwrap().chunk_size = 0;
            expect = Expect::Refused("a chunk size of 0");
        }
        _ => {}
    }
    if matches!(expect, Expect::Refused(_)) {
        when = Cancel::Never;
    }
    if matches!(when, Cancel::BeforePrefill) {
        cancel.cancel();
    }
    if matches!(when, Cancel::MidPrefill) {
        let trigger = cancel.clone();
        options.progress = Some(ProgressCallback::new(move |p| {
            if matches!(p, Progress::Prefill { done, .. } if done >= 1) {
                trigger.cancel();
            }
        }));
    }
    options.cancel = Some(cancel.clone());
    // A third of the FocusLLM cases read a document once and ask it.
    let document = options.focus.is_some() && matches!(expect, Expect::Run) && rng.random_bool(0.3);
    let result = if document {
        let split = ids.len() * 9 / 10;
        let control =
            Control { cancel: Some(cancel.clone()), progress: options.progress.clone(), ..Control::default() };
        let focus = options.focus.clone().unwrap();
        llm.read(&ids[..split], &focus, control)
            .and_then(|doc| drain(doc.ask_ids(&ids[split..], &options)?, &cancel, when))
    } else {
        llm.generate_ids(&ids, &options).and_then(|s| drain(s, &cancel, when))
    };
    let cancels = !matches!(when, Cancel::Never);
    match (expect, result) {
        (Expect::Refused(why), Ok(_)) => Err(format!("{why} was not refused")),
        (Expect::Refused(_), Err(Error::Cancelled)) => Err("an invalid case was cancelled, not refused".into()),
        (Expect::Refused(_), Err(_)) => Ok("refused"),
        (Expect::Run, Err(Error::Cancelled)) if cancels => Ok("cancelled"),
        (Expect::Run, Err(e)) => Err(format!("a valid case failed: {e}")),
        (Expect::Run, Ok((_, FinishReason::Cancelled))) if cancels => Ok("cancelled"),
        (Expect::Run, Ok((n, reason))) => {
            if matches!(when, Cancel::MidDecode(k) if n >= k) {
                return Err(format!("cancelled after {n} tokens, yet it ended with {reason:?}"));
            }
            if n > options.max_tokens {
                return Err(format!("{n} tokens past a budget of {}", options.max_tokens));
            }
            Ok("finished")
        }
    }
}

/// Heap bytes live now, counted by [`Counting`].
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting live bytes: a leak shows as live bytes that stay after every
/// generation has ended, whatever the allocator keeps mapped (which resident memory shows).
struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract;
// the counter is only arithmetic on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's `layout` is passed on as `GlobalAlloc::alloc` requires.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from `System`) with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller guarantees `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Hands the allocator's free pages back to the system (glibc keeps them mapped otherwise), so
/// that resident memory between rounds shows what is held, not the last round's high water mark.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions; it only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / 1048576.0
}

/// Runs the generations in `ROUNDS` rounds, every thread busy in each; between rounds, with no
/// generation in flight, records live heap bytes and resident memory. Round 1 warms up (RoPE
/// tables grow to the longest input, allocator arenas fill); a leak shows as live bytes after a
/// later round above those after round 1.
fn soak(llm: Arc<Llm>, args: &Args) -> bool {
    const ROUNDS: usize = 4;
    let done = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let outcomes = Mutex::new(std::collections::BTreeMap::<&'static str, usize>::new());
    let t0 = Instant::now();
    trim();
    let loaded = (LIVE.load(Ordering::SeqCst) as i64, rss() as i64);
    println!("| after | generations | seconds | live heap | of it chunk cache | RSS |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| loading | 0 | {:.0} | {:.1} MiB | 0 MiB | {:.1} MiB |",
        t0.elapsed().as_secs_f64(),
        mib(loaded.0),
        mib(loaded.1)
    );
    let mut checkpoints = Vec::new();
    let mut rngs: Vec<StdRng> =
        (0..args.threads).map(|t| StdRng::seed_from_u64(args.seed.wrapping_mul(1000).wrapping_add(t as u64))).collect();
    for round in 1..=ROUNDS {
        let target = args.generations * round / ROUNDS;
        let started = AtomicUsize::new(done.load(Ordering::SeqCst));
        std::thread::scope(|s| {
            let handles: Vec<_> = rngs
                .iter_mut()
                .map(|rng| {
                    let (llm, started, done, failures, outcomes) = (&llm, &started, &done, &failures, &outcomes);
                    s.spawn(move || {
                        while started.fetch_add(1, Ordering::SeqCst) < target {
                            match case(llm, rng) {
                                Ok(outcome) => *outcomes.lock().unwrap().entry(outcome).or_default() += 1,
                                Err(e) => failures.lock().unwrap().push(e),
                            }
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            let (mut last_done, mut last_change) = (0, Instant::now());
            while handles.iter().any(|h| !h.is_finished()) {
                std::thread::sleep(Duration::from_millis(200));
                let n = done.load(Ordering::SeqCst);
                if n != last_done {
                    (last_done, last_change) = (n, Instant::now());
                }
                if last_change.elapsed() > Duration::from_secs(args.stall_secs) {
                    eprintln!("no generation finished for {} s: deadlock", args.stall_secs);
                    std::process::exit(1);
                }
            }
            for h in handles {
                if h.join().is_err() {
                    failures.lock().unwrap().push("a generating thread panicked".into());
                }
            }
        });
        trim();
        // The chunk cache fills and evicts up to its own byte limit (checked below), so a leak is
        // live bytes beyond what it holds.
        let cache = llm.chunk_cache_stats();
        let live = LIVE.load(Ordering::SeqCst) as i64;
        let point = (live - cache.bytes as i64, rss() as i64);
        println!(
            "| round {round} | {} | {:.0} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            done.load(Ordering::SeqCst),
            t0.elapsed().as_secs_f64(),
            mib(live),
            mib(cache.bytes as i64),
            mib(point.1)
        );
        if cache.bytes > cache.limit {
            failures
                .lock()
                .unwrap()
                .push(format!("the chunk cache holds {} bytes over its limit {}", cache.bytes, cache.limit));
        }
        checkpoints.push(point);
    }
    let warm = checkpoints[0];
    let heap_growth = checkpoints.iter().map(|c| c.0 - warm.0).max().unwrap_or(0);
    let rss_growth = checkpoints.iter().map(|c| c.1 - warm.1).max().unwrap_or(0);
    let failures = failures.into_inner().unwrap();
    println!();
    println!("outcomes: {:?}", outcomes.into_inner().unwrap());
    println!("chunk cache: {:?}", llm.chunk_cache_stats());
    println!(
        "after warm-up: live heap outside the chunk cache grew at most {:.2} MiB (bound {} MiB), RSS at most {:.1} MiB (bound {} MiB); {} failures",
        mib(heap_growth),
        args.heap_growth_mb,
        mib(rss_growth),
        args.rss_growth_mb,
        failures.len()
    );
    for f in &failures {
        eprintln!("failure: {f}");
    }
    let leaked = heap_growth > (args.heap_growth_mb * 1048576) as i64;
    let grew = rss_growth > (args.rss_growth_mb * 1048576) as i64;
    failures.is_empty() && !leaked && !grew
}

/// Seconds from `cancel()` to the return of `work`, cancelled `after` into it.
fn latency(after: Duration, work: impl FnOnce(Control) -> focusllm::Result<()>) -> Result<f64, String> {
    let cancel = CancelToken::new();
    let cancelled_at = Arc::new(Mutex::new(None::<Instant>));
    let (trigger, at) = (cancel.clone(), cancelled_at.clone());
    let timer = std::thread::spawn(move || {
        std::thread::sleep(after);
        *at.lock().unwrap() = Some(Instant::now());
        trigger.cancel();
    });
    let result = work(Control { cancel: Some(cancel), ..Control::default() });
    let returned = Instant::now();
    timer.join().unwrap();
    match result {
        Err(Error::Cancelled) => Ok(returned.duration_since(cancelled_at.lock().unwrap().unwrap()).as_secs_f64()),
        Ok(()) => Err("the work ended before it was cancelled".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Work that a [`Control`] cancels.
type Work<'a> = Box<dyn FnOnce(Control) -> focusllm::Result<()> + 'a>;

fn measure_latency(llm: &Llm, args: &Args) -> bool {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let tokens = |n: usize, rng: &mut StdRng| {
        let mut ids = Vec::new();
        while ids.len() < n {
            ids.extend(llm.tokenizer().encode(&text(rng, 2000)).unwrap());
        }
        ids.truncate(n);
        ids
    };
    let plain = tokens(args.plain_tokens, &mut rng);
    let long = tokens(args.focus_tokens, &mut rng);
    // The sizes the shipped adapter was trained with (L = S = 512, Q = 256), as `ask` reads.
    let focus = FocusConfig {
        local_window: 512,
        chunk_size: 512,
        query_len: Some(256),
        decode: DecodeMode::CachedLocal,
        ..FocusConfig::default()
    };
    println!("| input | tokens | cancelled after | returned after cancel |");
    println!("|---|---|---|---|");
    let mut ok = true;
    for _ in 0..args.trials {
        let after = Duration::from_millis(rng.random_range(300..4000));
        let runs: [(&str, usize, Work<'_>); 2] = [
            (
                "plain attention",
                plain.len(),
                Box::new(|c| {
                    let options = GenerateOptions { cancel: c.cancel, max_tokens: 1, ..Default::default() };
                    llm.generate_ids(&plain, &options).map(|_| ())
                }),
            ),
            ("FocusLLM read", long.len(), Box::new(|c| llm.read(&long, &focus, c).map(|_| ()))),
        ];
        for (what, n, work) in runs {
            match latency(after, work) {
                Ok(secs) => println!("| {what} | {n} | {:.2} s | {secs:.3} s |", after.as_secs_f64()),
                Err(e) => {
                    println!("| {what} | {n} | {:.2} s | failed: {e} |", after.as_secs_f64());
                    ok = false;
                }
            }
        }
    }
    ok
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let path = match &args.model {
        Some(p) => p.clone(),
        None => focusllm::default_model::path().expect("the default model"),
    };
    let mut llm = Llm::load(&path, Device::Cpu { threads: args.cpu_threads }).expect("loading the model");
    if args.model.is_none() {
        llm.load_adapter_bytes(focusllm_adapters::SMOLLM2_135M_INSTRUCT).expect("the shipped adapter");
    }
    let ok = if args.latency {
        measure_latency(&llm, &args)
    } else {
        llm.set_chunk_cache_limit(args.chunk_cache_mib << 20);
        soak(Arc::new(llm), &args)
    };
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
