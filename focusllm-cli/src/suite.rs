//! What the measuring commands (`passkey`, `bench`, `eval`) share: reading modes named on the
//! command line, token counts such as `16k`, and peak memory readings.

use std::str::FromStr;

use focusllm::DecodeMode;

/// A reading mode of the evaluations: plain attention, or FocusLLM in a decode mode with copied
/// (untrained) or the adapter's candidate projections. Named `plain`, `focus-MODE`, `adapter-MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain attention.
    Plain,
    /// FocusLLM with the model's own projections copied as candidate projections.
    Focus(DecodeMode),
    /// FocusLLM with an adapter's trained candidate projections.
    Adapter(DecodeMode),
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        let decode = |m: &str| DecodeMode::parse(m).map_err(|_| format!("unknown mode {s:?}"));
        match (s, s.strip_prefix("focus-"), s.strip_prefix("adapter-")) {
            ("plain", _, _) => Ok(Mode::Plain),
            (_, Some(m), _) => decode(m).map(Mode::Focus),
            (_, _, Some(m)) => decode(m).map(Mode::Adapter),
            _ => Err(format!("unknown mode {s:?} (plain, focus-DECODE or adapter-DECODE)")),
        }
    }
}

impl Mode {
    /// The mode's name with the decode mode spelled out (`adapter-cached-local`).
    pub fn name(self) -> String {
        match self {
            Mode::Plain => "plain".into(),
            Mode::Focus(m) => format!("focus-{}", m.name()),
            Mode::Adapter(m) => format!("adapter-{}", m.name()),
        }
    }

    /// Whether the mode needs an adapter loaded.
    pub fn needs_adapter(self) -> bool {
        matches!(self, Mode::Adapter(_))
    }
}

/// Parses a token count such as `4096` or `16k` (16384).
pub fn parse_len(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let parsed = match lower.strip_suffix('k') {
        Some(n) => n.parse::<usize>().ok().and_then(|n| n.checked_mul(1024)),
        None => lower.parse::<usize>().ok(),
    };
    parsed.ok_or_else(|| format!("bad length {text:?} (a token count such as 4096 or 16k)"))
}

/// Peak resident memory of this process in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets the peak-memory counter so the next reading covers only what follows (Linux).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_modes_parse() {
        assert_eq!(parse_len("16k"), Ok(16384));
        assert_eq!(parse_len("512"), Ok(512));
        assert!(parse_len("lots").is_err());
        assert_eq!("adapter-cached".parse(), Ok(Mode::Adapter(DecodeMode::CachedLocal)));
        assert_eq!("plain".parse(), Ok(Mode::Plain));
        assert!("focus-fast".parse::<Mode>().is_err());
    }
}
