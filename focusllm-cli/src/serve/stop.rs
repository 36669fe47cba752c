//! Stop strings over streamed text: text is let through as soon as it cannot be the start of a
//! stop string, and cut where one appears.

/// Watches streamed text for any of a request's stop strings.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text that may still turn out to begin a stop string.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Takes the next piece of text; returns what can be sent now and whether a stop string was
    /// met (the text from it on is dropped, and so is everything pushed after).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.stopped = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        let keep = self.stops.iter().map(|s| overlap(&self.held, s)).max().unwrap_or(0);
        let out: String = self.held.drain(..self.held.len() - keep).collect();
        (out, false)
    }

    /// The text still held back, once the generation has ended without a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest end of `text` that is a proper beginning of `stop`.
fn overlap(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for p in pieces {
            let (text, stopped) = m.push(p);
            out.push(text);
            if stopped {
                return (out, true);
            }
        }
        out.push(m.finish());
        (out, false)
    }

    #[test]
    fn holds_back_a_possible_start_and_cuts_at_the_stop() {
        assert_eq!(
            run(&["END"], &["ab", "cE", "N", "Dx"]),
            (vec!["ab".into(), "c".into(), "".into(), "".into()], true)
        );
        assert_eq!(run(&["END"], &["aE", "Nb"]), (vec!["a".into(), "ENb".into(), "".into()], false));
        assert_eq!(run(&[], &["a", "b"]), (vec!["a".into(), "b".into(), "".into()], false));
        assert_eq!(run(&["é!"], &["xé", "y"]), (vec!["x".into(), "éy".into(), "".into()], false));
        assert_eq!(run(&["b", "abc"], &["xab"]), (vec!["xa".into()], true));
    }
}
