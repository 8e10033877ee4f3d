//! What `status --watch` shows, and how: a header, one row per deployment with its numbers over
//! the window and two charts (requests and 5xx per interval, newest on the right), and a legend.
//! Drawn with ratatui into a buffer: the terminal's, or one printed as plain text.

use super::window::Tick;
use crate::format::{millis, percent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{RenderDirection, Sparkline, Widget};
use std::time::Duration;

/// One frame's content.
pub struct View {
    pub admin: String,
    pub interval: Duration,
    pub window: Duration,
    /// How much of the window the samples cover so far.
    pub covered: Duration,
    /// Why the last sample failed, if it did (the numbers are then the last ones read).
    pub problem: Option<String>,
    /// How to leave: keys on a terminal, a signal otherwise.
    pub quit_hint: &'static str,
    pub rows: Vec<Row>,
}

/// One deployment.
pub struct Row {
    pub service: String,
    pub line: String,
    pub version: String,
    pub stable: bool,
    pub weight: u32,
    /// Its part of its line's requests over the window; None when the line had none.
    pub share: Option<f64>,
    pub requests_per_second: f64,
    pub error_rate: f64,
    pub p99_ms: Option<f64>,
    /// Requests and 5xx per interval, newest first.
    pub ticks: Vec<Tick>,
}

const HEADINGS: [&str; 8] = ["SERVICE", "LINE", "VERSION", "WEIGHT", "SHARE", "REQ/S", "5XX", "P99"];
/// The columns before the numbers: SERVICE, LINE, VERSION.
const TEXT_COLUMNS: usize = 3;
/// The widths of the number columns (WEIGHT to P99): `100%`, `100.0%`, `1234.5`, `100.0%`, `1.50s`.
const NUMBER_WIDTHS: [u16; 5] = [6, 6, 7, 6, 6];
/// Lines above the rows (title, column headings) and below them (legend).
const CHROME_LINES: u16 = 3;

impl View {
    /// The lines a frame needs.
    pub fn height(&self) -> u16 {
        let problem = u16::from(self.problem.is_some());
        CHROME_LINES + problem + u16::try_from(self.rows.len()).unwrap_or(u16::MAX - CHROME_LINES - 1)
    }

    fn constraints(&self) -> Vec<Constraint> {
        let widest = |heading: &str, cell: &dyn Fn(&Row) -> usize| {
            self.rows.iter().map(cell).chain([heading.len()]).max().unwrap_or(0) as u16
        };
        let mut columns = vec![
            Constraint::Length(widest(HEADINGS[0], &|r| r.service.len())),
            Constraint::Length(widest(HEADINGS[1], &|r| r.line.len())),
            Constraint::Length(widest(HEADINGS[2], &|r| version(r).len())),
        ];
        columns.extend(NUMBER_WIDTHS.map(Constraint::Length));
        columns.extend([Constraint::Fill(1), Constraint::Fill(1)]);
        columns
    }

    /// Draws the frame into `area` of `buf`.
    pub fn draw(&self, area: Rect, buf: &mut Buffer) {
        let mut lines = area.rows();
        let interval = humantime::format_duration(self.interval);
        let mut next = || lines.next().unwrap_or_default();
        let title = format!(
            "meshver status --watch  {}  every {interval}, window {} ({} so far)  {}",
            self.admin,
            humantime::format_duration(self.window),
            humantime::format_duration(Duration::from_secs(self.covered.as_secs())),
            self.quit_hint,
        );
        Line::styled(title, Style::new().fg(Color::Cyan)).render(next(), buf);
        if let Some(problem) = &self.problem {
            Line::styled(problem.as_str(), Style::new().fg(Color::Red)).render(next(), buf);
        }
        let layout = Layout::horizontal(self.constraints()).spacing(2);
        let headings = layout.split(next());
        let charts = [format!("REQUESTS per {interval}"), format!("5XX per {interval}")];
        for (cell, heading) in headings.iter().zip(HEADINGS.iter().map(|h| h.to_string()).chain(charts)) {
            let line = Line::styled(heading.clone(), Style::new().fg(Color::Yellow));
            let numeric = HEADINGS[TEXT_COLUMNS..].contains(&heading.as_str());
            if numeric { line.right_aligned() } else { line }.render(*cell, buf);
        }
        for row in &self.rows {
            draw_row(row, &layout.split(next()), buf);
        }
        let legend = "SHARE: of the line's requests. REQ/S, 5XX (error rate), P99: over the window. \
                      Bars: newest right.";
        Line::styled(legend, Style::new().fg(Color::DarkGray)).render(next(), buf);
    }

    /// The frame as plain text, `width` columns wide (trailing spaces trimmed).
    pub fn text(&self, width: u16) -> String {
        let area = Rect::new(0, 0, width, self.height());
        let mut buf = Buffer::empty(area);
        self.draw(area, &mut buf);
        let mut text = String::new();
        for y in area.rows().map(|r| r.y) {
            let line: String = area.columns().filter_map(|c| buf.cell((c.x, y))).map(|cell| cell.symbol()).collect();
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

fn version(row: &Row) -> String {
    if row.stable {
        format!("{} (stable)", row.version)
    } else {
        row.version.clone()
    }
}

fn draw_row(row: &Row, cells: &[Rect], buf: &mut Buffer) {
    let errors = if row.error_rate > 0.0 { Style::new().fg(Color::Red) } else { Style::new() };
    let numbers = [
        (format!("{}%", row.weight), Style::new()),
        (row.share.map_or("-".to_owned(), percent), Style::new()),
        (format!("{:.1}", row.requests_per_second), Style::new()),
        (percent(row.error_rate), errors),
        (row.p99_ms.map_or("-".to_owned(), millis), Style::new()),
    ];
    let texts = [row.service.clone(), row.line.clone(), version(row)];
    for (cell, text) in cells.iter().zip(texts) {
        Line::raw(text).render(*cell, buf);
    }
    for (cell, (text, style)) in cells.iter().skip(TEXT_COLUMNS).zip(numbers) {
        Line::styled(text, style).right_aligned().render(*cell, buf);
    }
    // Both charts share the row's request scale: a deployment failing every request shows the
    // same bars twice.
    let scale = row.ticks.iter().map(|t| t.requests).max().unwrap_or(0).max(1);
    let requests: Vec<u64> = row.ticks.iter().map(|t| t.requests).collect();
    let errors: Vec<u64> = row.ticks.iter().map(|t| t.errors).collect();
    for (cell, (color, values)) in
        cells.iter().skip(HEADINGS.len()).zip([(Color::Green, requests), (Color::Red, errors)])
    {
        Sparkline::default()
            .data(values)
            .max(scale)
            .direction(RenderDirection::RightToLeft)
            .style(Style::new().fg(color))
            .render(*cell, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: &str, weight: u32, share: Option<f64>, ticks: &[(u64, u64)]) -> Row {
        Row {
            service: "user".into(),
            line: "user-v2".into(),
            version: version.into(),
            stable: version == "2.0.3",
            weight,
            share,
            requests_per_second: 12.5,
            error_rate: if ticks.iter().any(|t| t.1 > 0) { 0.5 } else { 0.0 },
            p99_ms: share.map(|_| 3.0),
            ticks: ticks.iter().map(|&(requests, errors)| Tick { requests, errors }).collect(),
        }
    }

    fn view(problem: Option<&str>) -> View {
        View {
            admin: "http://127.0.0.1:9901".into(),
            interval: Duration::from_secs(1),
            window: Duration::from_secs(300),
            covered: Duration::from_millis(12_400),
            problem: problem.map(str::to_owned),
            quit_hint: "q quits",
            rows: vec![row("2.0.3", 75, Some(0.8), &[(8, 0), (4, 0)]), row("2.1.0", 25, Some(0.2), &[(8, 4), (0, 0)])],
        }
    }

    #[test]
    fn a_frame_has_a_row_per_deployment_with_its_charts() {
        let text = view(None).text(120);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("meshver status --watch  http://127.0.0.1:9901  every 1s, window 5m (12s so far)"));
        assert!(lines[1]
            .starts_with("SERVICE  LINE     VERSION         WEIGHT   SHARE    REQ/S     5XX     P99  REQUESTS per 1s"));
        assert!(
            lines[2].starts_with("user     user-v2  2.0.3 (stable)     75%   80.0%     12.5    0.0%     3ms"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("user     user-v2  2.1.0              25%   20.0%     12.5   50.0%     3ms"),
            "{text}"
        );
        // Newest on the right: the last interval's 8 requests are a full bar, the one before half
        // (4 of 8) for 2.0.3; 2.1.0's last 4 errors of 8 are half a bar in its 5XX chart.
        assert!(lines[2].contains("▄█"), "{text}");
        assert!(lines[3].ends_with("▄"), "{text}");
        assert!(lines[4].starts_with("SHARE: of the line's requests."));
    }

    #[test]
    fn a_failed_sample_is_said_above_the_table() {
        let text = view(Some("cannot read the admin")).text(100);
        assert_eq!(text.lines().nth(1), Some("cannot read the admin"));
        assert_eq!(view(Some("x")).height(), 6);
    }
}
