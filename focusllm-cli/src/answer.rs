//! Streaming an answer to stdout with its timings, as `ask` and `chat` do.

use std::io::Write;
use std::time::Instant;

use focusllm::{FinishReason, GenerateOptions, TokenStream};

use crate::error::CliError;
use crate::progress::ReadProgress;
use crate::reading::Reader;

/// A streamed answer and what it cost.
pub struct Answer {
    /// The answer's text.
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    /// Seconds to the first token (the prefill), if one came.
    pub prefill_secs: Option<f64>,
    /// Seconds from the first token to the last.
    pub decode_secs: f64,
    /// Why generation ended.
    pub finish: Option<FinishReason>,
}

impl Answer {
    /// Tokens per second after the first one.
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens.saturating_sub(1) as f64 / self.decode_secs.max(1e-9)
    }

    /// The closing line for stderr: tokens, speed and why it ended.
    pub fn summary(&self) -> String {
        let reason = match self.finish {
            Some(FinishReason::MaxTokens) => "max tokens reached",
            Some(FinishReason::Stop(_)) => "end of answer",
            Some(FinishReason::Cancelled) => "cancelled",
            None => "ended",
        };
        format!("{} tokens, {:.2} tokens/s after the first ({reason})", self.tokens, self.tokens_per_second())
    }
}

/// Generates from `ids` with `options`, writing each token to stdout as it comes; `progress` is
/// cleared when the first token arrives, and the prefill time goes to stderr.
pub fn stream(
    reader: &Reader,
    ids: &[u32],
    options: &GenerateOptions,
    progress: &ReadProgress,
) -> Result<Answer, CliError> {
    let start = Instant::now();
    print_stream(start, reader.llm().generate_ids(ids, options), progress)
}

/// Writes each token of `stream` (what a generation call returned, started at `start`) to stdout
/// as it comes, as [`stream`] does; an answer to a question about a read document streams this way.
pub fn print_stream(
    start: Instant,
    stream: focusllm::Result<TokenStream<'_>>,
    progress: &ReadProgress,
) -> Result<Answer, CliError> {
    let mut answer = Answer { text: String::new(), tokens: 0, prefill_secs: None, decode_secs: 0.0, finish: None };
    // A cancel during the prefill ends the call with `Error::Cancelled`: an answer cancelled
    // before its first token, not a failure.
    let mut stream = match stream {
        Ok(stream) => stream,
        Err(focusllm::Error::Cancelled) => {
            progress.finish();
            answer.finish = Some(FinishReason::Cancelled);
            return Ok(answer);
        }
        Err(e) => return Err(e.into()),
    };
    let mut first: Option<Instant> = None;
    let mut out = std::io::stdout();
    for token in stream.by_ref() {
        let token = token?;
        if first.is_none() {
            progress.finish();
            let secs = start.elapsed().as_secs_f64();
            eprintln!("prefill {secs:.1} s");
            answer.prefill_secs = Some(secs);
            first = Some(Instant::now());
        }
        answer.tokens += 1;
        answer.text.push_str(&token.text);
        out.write_all(token.text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| CliError::Terminal(e.to_string()))?;
    }
    progress.finish();
    answer.decode_secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    answer.finish = stream.finish_reason();
    Ok(answer)
}
