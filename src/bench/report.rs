//! Output: human-readable lines on stdout, then one JSON object on the last line for scripts.
//! (No `serde_json` in the dependency set, and a flat object of numbers and short strings is
//! easy to write correctly by hand.)

use std::fmt::Write as _;

use super::stats::Histogram;

/// One flat JSON object, keys in insertion order.
#[derive(Debug, Default)]
pub(crate) struct Json {
    out: String,
}

impl Json {
    fn key(&mut self, key: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        push_str(&mut self.out, key);
        self.out.push(':');
    }

    /// Adds a string.
    pub(crate) fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        push_str(&mut self.out, value);
        self
    }

    /// Adds an integer.
    pub(crate) fn int(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    /// Adds a number, rounded to 3 decimals; `null` if not finite.
    pub(crate) fn num(mut self, key: &str, value: f64) -> Self {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.out, "{}", (value * 1000.0).round() / 1000.0);
        } else {
            self.out.push_str("null");
        }
        self
    }

    /// Adds a number or `null`.
    pub(crate) fn opt_num(self, key: &str, value: Option<f64>) -> Self {
        match value {
            Some(v) => self.num(key, v),
            None => self.null(key),
        }
    }

    /// Adds a boolean.
    pub(crate) fn bool(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// Adds `null`.
    pub(crate) fn null(mut self, key: &str) -> Self {
        self.key(key);
        self.out.push_str("null");
        self
    }

    /// Adds p50 / p99 / max of a nanosecond histogram, in µs (`null` when empty).
    pub(crate) fn latency(self, h: &Histogram) -> Self {
        let us = |ns: u64| ns as f64 / 1e3;
        self.opt_num("p50_us", h.quantile(0.5).map(us))
            .opt_num("p99_us", h.quantile(0.99).map(us))
            .opt_num("max_us", (h.count() > 0).then(|| us(h.max())))
    }

    /// The finished object.
    pub(crate) fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// "p50 / p99 / max" of a nanosecond histogram in µs, for the human-readable lines.
pub(crate) fn latency_line(h: &Histogram) -> String {
    match (h.quantile(0.5), h.quantile(0.99)) {
        (Some(p50), Some(p99)) => format!(
            "p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs ({} samples)",
            p50 as f64 / 1e3,
            p99 as f64 / 1e3,
            h.max() as f64 / 1e3,
            h.count()
        ),
        _ => "no samples".to_owned(),
    }
}

/// `n / secs`, 0 when `secs` is 0.
pub(crate) fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_object() {
        let json = Json::default()
            .str("scenario", "fan-in \"q\"")
            .int("sent", 3)
            .num("rate", 1.23456)
            .num("nan", f64::NAN)
            .bool("ok", true)
            .finish();
        assert_eq!(
            json,
            r#"{"scenario":"fan-in \"q\"","sent":3,"rate":1.235,"nan":null,"ok":true}"#
        );
        assert_eq!(Json::default().finish(), "{}");
    }
}

/// Failures of a run's tasks, counted across threads, with the first one's reason.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    count: std::sync::atomic::AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

impl Failures {
    /// Counts a failure; keeps `why` if it is the first.
    pub(crate) fn record(&self, why: String) {
        self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert(why);
        }
    }

    /// How many so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The first one's reason.
    pub(crate) fn first(&self) -> Option<String> {
        self.first.lock().ok().and_then(|e| e.clone())
    }
}
