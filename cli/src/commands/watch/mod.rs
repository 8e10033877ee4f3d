//! `meshver status --watch`: per deployment, the live weight, its share of its line's traffic,
//! requests per second, error rate and p99 over a sliding window, with a chart of requests and
//! 5xx per interval, read from the admin every interval, so an operator can watch a rollout.
//!
//! On a terminal it takes the alternate screen (ratatui on crossterm), redraws every interval
//! and on resize, and gives the terminal back as it was on `q`, Esc, Ctrl-C or after `--count`
//! frames (then printing the last frame, so it stays). Anywhere else (a pipe, a file, CI) it
//! prints each frame as plain text followed by an empty line.

mod screen;
mod window;

use super::status::line_statuses;
use super::{emit, Connected};
use crate::fail::{Fail, Outcome};
use crate::flags::EnvoyFlags;
use crate::stats::Stats;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;
use screen::{Row, View};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use window::Window;

/// How `status --watch` samples, and when it stops.
pub struct WatchArgs {
    pub interval: Duration,
    pub window: Duration,
    /// Stop after this many frames (None: until q, Ctrl-C or a signal).
    pub count: Option<u64>,
}

/// Plain-text frames are this wide unless `COLUMNS` says otherwise.
const TEXT_WIDTH: u16 = 120;
/// How long a key may wait to be seen between two samples.
const KEY_POLL: Duration = Duration::from_millis(100);

pub fn run(envoy: &EnvoyFlags, args: &WatchArgs) -> Outcome {
    let live = Connected::open(envoy)?;
    let interrupted = crate::commands::interrupt_flag()?;
    let mut watch = Watch { live, window: Window::new(args.window), args, problem: None };
    if std::io::stdout().is_terminal() {
        on_terminal(&mut watch, &interrupted)
    } else {
        as_text(&mut watch, &interrupted)
    }
}

/// What the watch knows: the Envoy, the samples so far, and whether the last read failed.
struct Watch<'a> {
    live: Connected,
    window: Window,
    args: &'a WatchArgs,
    problem: Option<String>,
}

impl Watch<'_> {
    /// Reads the admin once: the clusters' stats into the window, the runtime's weights into the
    /// snapshot. A failed read is shown, not fatal: Envoy may be restarting.
    fn sample(&mut self) {
        let admin = &self.live.admin;
        match admin.stats().and_then(|stats| Ok((stats, admin.runtime()?))) {
            Ok((stats, runtime)) => {
                self.live.snapshot.runtime = runtime;
                let routes = self.live.services.iter().flat_map(|s| s.deployments.iter().map(|d| d.route.as_str()));
                self.window.push(Instant::now(), &Stats::parse(&stats), routes);
                self.problem = None;
            }
            Err(e) => {
                self.problem = Some(format!(
                    "cannot read the Envoy admin ({e}); the numbers are the last ones read; trying again every {}",
                    humantime::format_duration(self.args.interval)
                ))
            }
        }
    }

    /// The frame for the samples so far; `width` bounds the intervals charted.
    fn view(&self, quit_hint: &'static str, width: u16) -> View {
        let mut rows = Vec::new();
        for service in &self.live.services {
            for line in line_statuses(&self.live, service, &|route| self.window.over(route)) {
                let line_requests: u64 = line.deployments.iter().map(|d| d.requests).sum();
                for d in line.deployments {
                    rows.push(Row {
                        service: service.name.clone(),
                        line: line.route.clone(),
                        share: (line_requests > 0).then(|| d.requests as f64 / line_requests as f64),
                        requests_per_second: self.window.rate(d.requests),
                        ticks: self.window.ticks(&d.route, usize::from(width)),
                        version: d.version,
                        stable: d.stable,
                        weight: d.weight,
                        error_rate: d.error_rate,
                        p99_ms: d.p99_ms,
                    });
                }
            }
        }
        View {
            admin: self.live.admin.url.clone(),
            interval: self.args.interval,
            window: self.args.window,
            covered: self.window.covered(),
            problem: self.problem.clone(),
            quit_hint,
            rows,
        }
    }

    fn done(&self, frames: u64) -> bool {
        self.args.count.is_some_and(|count| frames >= count)
    }
}

/// How a terminal watch ended.
enum Ended {
    Quit,
    /// After `--count` frames, this one last.
    Count(View),
}

fn on_terminal(watch: &mut Watch, interrupted: &AtomicBool) -> Outcome {
    let unusable = |e: std::io::Error| {
        Fail::new(format!("cannot use the terminal ({e})"), "run it in a terminal, or pipe it for plain text frames")
    };
    let mut terminal = ratatui::try_init().map_err(unusable)?;
    let ended = redraw_until_done(&mut terminal, watch, interrupted);
    // The terminal goes back as it was whatever happened: cursor, raw mode, normal screen.
    let restored = terminal.show_cursor().and_then(|()| ratatui::try_restore());
    let ended = ended.map_err(unusable)?;
    restored.map_err(unusable)?;
    if let Ended::Count(last) = ended {
        let width = terminal.size().map_or(TEXT_WIDTH, |size| size.width);
        emit(None, &last.text(width))?;
    }
    Ok(())
}

fn redraw_until_done(
    terminal: &mut DefaultTerminal,
    watch: &mut Watch,
    interrupted: &AtomicBool,
) -> std::io::Result<Ended> {
    let mut frames = 0;
    let mut due = Instant::now();
    loop {
        watch.sample();
        let view = watch.view("q quits", terminal.size()?.width);
        terminal.draw(|frame| view.draw(frame.area(), frame.buffer_mut()))?;
        frames += 1;
        if watch.done(frames) {
            return Ok(Ended::Count(view));
        }
        due = (due + watch.args.interval).max(Instant::now());
        while let Some(left) = due.checked_duration_since(Instant::now()).filter(|left| !left.is_zero()) {
            if interrupted.load(Ordering::SeqCst) {
                return Ok(Ended::Quit);
            }
            if event::poll(left.min(KEY_POLL))? {
                match event::read()? {
                    Event::Key(key) if quits(&key) => return Ok(Ended::Quit),
                    Event::Resize(..) => {
                        terminal.draw(|frame| view.draw(frame.area(), frame.buffer_mut()))?;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `q`, Esc or Ctrl-C (raw mode turns Ctrl-C into a key).
fn quits(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Plain-text frames, each followed by an empty line, until `--count`, a signal, or a reader
/// that goes away.
fn as_text(watch: &mut Watch, interrupted: &AtomicBool) -> Outcome {
    let width = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(TEXT_WIDTH);
    let mut frames = 0;
    let mut due = Instant::now();
    while !interrupted.load(Ordering::SeqCst) {
        watch.sample();
        let text = watch.view("Ctrl-C quits", width).text(width);
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{text}").and_then(|()| stdout.flush()).is_err() {
            return Ok(()); // the reader is gone (a closed pipe): nobody is watching
        }
        frames += 1;
        if watch.done(frames) {
            break;
        }
        due = (due + watch.args.interval).max(Instant::now());
        while !interrupted.load(Ordering::SeqCst) {
            match due.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => std::thread::sleep(left.min(KEY_POLL)),
                _ => break,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_esc_and_ctrl_c_quit() {
        let press = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(quits(&press(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(quits(&press(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(quits(&press(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!quits(&press(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!quits(&press(KeyCode::Char('x'), KeyModifiers::NONE)));
    }
}
