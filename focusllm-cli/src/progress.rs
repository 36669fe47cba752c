//! Progress of long reads on stderr: an indicatif bar (steps done / total, tokens/s, time left)
//! when stderr is a terminal, nothing otherwise, so that logs and pipes stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use focusllm::{Progress, ProgressCallback};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// The display of one prompt's prefill, cleared when the first answer token arrives.
pub struct ReadProgress {
    bar: Option<ProgressBar>,
    prompt_len: usize,
}

impl ReadProgress {
    /// A bar for reading `prompt_len` tokens, `label` saying how (shown only on a terminal).
    pub fn new(prompt_len: usize, label: &str) -> ReadProgress {
        if !std::io::stderr().is_terminal() {
            return ReadProgress { bar: None, prompt_len };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        // A spinner until the library reports how many steps the read takes.
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        ReadProgress { bar: Some(bar), prompt_len }
    }

    /// The callback to hand to the library: moves the bar on each prefill step.
    pub fn callback(&self) -> Option<ProgressCallback> {
        let bar = self.bar.clone()?;
        let prompt_len = self.prompt_len;
        Some(ProgressCallback::new(move |p| match p {
            Progress::Prefill { done, total } => {
                if bar.length() != Some(total as u64) {
                    bar.set_style(style(prompt_len));
                    bar.set_length(total as u64);
                }
                bar.set_position(done as u64);
            }
            Progress::Generated { .. } => bar.finish_and_clear(),
        }))
    }

    /// Clears the bar (the answer starts, or the read ended).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for ReadProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The bar's layout; tokens/s counts the prompt's tokens read so far, in proportion to the steps.
fn style(prompt_len: usize) -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} · {tokens_per_sec} · {eta} left")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("tokens_per_sec", move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let steps = s.len().unwrap_or(1).max(1) as f64;
            let tokens = prompt_len as f64 * s.pos() as f64 / steps;
            let _ = write!(w, "{:.0} tokens/s", tokens / s.elapsed().as_secs_f64().max(1e-3));
        })
        .progress_chars("=> ")
}
