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

/// Waits one interval (`live` on the bar), then measures it with `observe`. A measure that is not
/// `enough` (too few requests for a patient judge) is taken again each second, for up to
/// [`super::WAIT_INTERVALS`] more intervals; `short` is told of the first one. `Ok(None)`: interrupted.
pub fn measure_after<T, E>(
    interval: Duration,
    label: &str,
    interrupted: &AtomicBool,
    live: impl Fn() -> Option<String>,
    mut observe: impl FnMut() -> Result<T, E>,
    enough: impl Fn(&T) -> bool,
    short: impl FnOnce(&T),
) -> Result<Option<T>, E> {
    if !wait_with(interval, label, interrupted, live) {
        return Ok(None);
    }
    let deadline = Instant::now() + interval * super::WAIT_INTERVALS;
    let mut short = Some(short);
    loop {
        let seen = observe()?;
        if enough(&seen) || Instant::now() >= deadline {
            return Ok(Some(seen));
        }
        if let Some(tell) = short.take() {
            tell(&seen);
        }
        if !wait_with(interval.min(Duration::from_secs(1)), label, interrupted, || None) {
            return Ok(None);
        }
    }
}
