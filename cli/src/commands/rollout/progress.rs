//! Waiting out one rollout step: a progress bar with the target's live request and 5xx
//! counts (on a terminal), cut short by Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Waits one interval with a progress bar whose message `live` gives (asked once a second, on
/// a terminal only); false if interrupted.
pub fn wait_with(interval: Duration, label: &str, interrupted: &AtomicBool, live: impl Fn() -> Option<String>) -> bool {
    let bar = indicatif::ProgressBar::new(interval.as_millis() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed}/{duration} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    let start = Instant::now();
    let mut last_poll = start;
    while start.elapsed() < interval {
        if interrupted.load(Ordering::SeqCst) {
            bar.abandon();
            return false;
        }
        if !bar.is_hidden() && last_poll.elapsed() >= Duration::from_secs(1) {
            last_poll = Instant::now();
            if let Some(message) = live() {
                bar.set_message(message);
            }
        }
        bar.set_position(start.elapsed().as_millis() as u64);
        std::thread::sleep(Duration::from_millis(50).min(interval.saturating_sub(start.elapsed())));
    }
    bar.finish_and_clear();
    !interrupted.load(Ordering::SeqCst)
}
