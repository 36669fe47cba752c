//! The short CI version of the soak (examples/soak.rs): one `Llm` on the default model shared by
//! 8 threads, 32 random generations with invalid options and cancellation at random points; no
//! panic, no deadlock, no failed case, resident memory flat after warm-up.

mod common;

use common::default_model;

#[test]
fn eight_threads_share_one_llm_through_random_and_cancelled_generations() {
    let Some(_) = default_model("eight_threads_share_one_llm_through_random_and_cancelled_generations") else {
        return;
    };
    // `cargo test` builds the examples beside the test binaries: target/<profile>/examples/soak.
    let exe = std::env::current_exe().unwrap();
    let soak =
        exe.parent().unwrap().parent().unwrap().join("examples").join(format!("soak{}", std::env::consts::EXE_SUFFIX));
    assert!(soak.exists(), "{} is not built", soak.display());
    let out = std::process::Command::new(&soak)
        .args(["--threads", "8", "--generations", "32", "--stall-secs", "240", "--seed", "7"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "the soak failed: {stderr}");
    assert!(stdout.contains("| round 4 | 32 |"), "{stdout}");
}
