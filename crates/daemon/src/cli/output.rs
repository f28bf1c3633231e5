//! Table, JSON and CSV output of records.
//!
//! Tables fit the terminal ([`terminal_width`]: `COLUMNS`, else the terminal, else
//! [`MAX_WIDTH`]), at most [`MAX_WIDTH`] columns: free text ([`FREE_TEXT`]) wraps, whole, since
//! the fact that matters is often at its end; other long cells are cut with an ellipsis; some
//! columns are shown only with `--wide`, which prints every column in full, one line per record
//! (for `grep`). JSON and CSV always carry every field in full.
//! Text that came from outside (reasons, pipeline names, service errors) is printed with its
//! control characters escaped in tables and CSV, so an ANSI sequence in a reason cannot repaint
//! an operator's terminal; JSON escapes them by its own rules.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};

use anyhow::Result;
use comfy_table::{ContentArrangement, Row, Table, presets};
use serde::Serialize;

/// The widest a table is without `--wide`, whatever the terminal.
pub const MAX_WIDTH: u16 = 100;

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// A JSON array of records.
    Json,
    /// CSV with a header row.
    Csv,
    /// One self-contained HTML page for auditors (`stopd report` only).
    Html,
}

/// The output flags of every listing command.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(
        long,
        short = 'o',
        visible_alias = "output",
        value_enum,
        default_value = "table"
    )]
    pub format: Format,
    /// Tables and CSV: audit timestamps shown in this zone, with its offset (`report --tz`);
    /// JSON stays in UTC.
    #[arg(skip)]
    pub tz: Option<chrono_tz::Tz>,
    /// Tables: every column, in full, one line per record, however wide (default: fit the
    /// terminal or COLUMNS, at most 100 columns; reasons wrap, other long cells end in …).
    #[arg(long)]
    pub wide: bool,
}

impl OutputArgs {
    /// A table for people, fitted to the terminal.
    pub const TABLE: OutputArgs = OutputArgs {
        format: Format::Table,
        wide: false,
        tz: None,
    };

    /// The width tables must fit: `None` with `--wide`.
    pub fn width(&self) -> Option<u16> {
        if self.wide {
            return None;
        }
        Some(terminal_width())
    }
}

/// The width text for people fits: `COLUMNS` when it is set to a number (as `ls` reads it:
/// tests and scripts set it), else the terminal's when stdout is one, else [`MAX_WIDTH`];
/// between 40 and [`MAX_WIDTH`].
pub fn terminal_width() -> u16 {
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c > 0);
    let terminal = || {
        std::io::stdout()
            .is_terminal()
            .then(terminal_size::terminal_size)
            .flatten()
            .map(|(w, _)| w.0)
    };
    columns
        .or_else(terminal)
        .map_or(MAX_WIDTH, |w| w.clamp(40, MAX_WIDTH))
}

/// What a fitted table does with a cell too long for its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Cut it with an ellipsis (free text, [`FREE_TEXT`], still wraps).
    Cut,
    /// Wrap it over several lines.
    Wrap,
}

/// Which columns a table shows, and which it never cuts.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// Every column, in order: the CSV header and, upper-cased, the table's.
    pub names: &'a [&'a str],
    /// Columns a fitted table leaves out (`--wide` and CSV show them).
    pub wide_only: &'a [&'a str],
    /// Columns a fitted table never cuts (ids, instants, outcomes).
    pub whole: &'a [&'a str],
    /// Timestamps a fitted table shows to the minute (others: to the second); a local time
    /// with its offset only when its seconds are zero.
    pub to_the_minute: &'a [&'a str],
}

impl<'a> Columns<'a> {
    /// Every column shown; any may be cut.
    pub const fn all(names: &'a [&'a str]) -> Columns<'a> {
        Columns {
            names,
            wide_only: &[],
            whole: &[],
            to_the_minute: &[],
        }
    }
}

/// Writes `rows` as `out.format`: JSON from their `Serialize` impl, table and CSV from `cells`
/// (one per name of `columns`, in order).
pub fn write<T: Serialize>(
    out: &mut impl Write,
    opts: OutputArgs,
    rows: &[T],
    columns: Columns<'_>,
    cells: impl Fn(&T) -> Vec<String>,
) -> Result<()> {
    let cells = |r: &T| -> Vec<String> {
        let mut c = cells(r);
        if let Some(tz) = opts.tz {
            for cell in &mut c {
                if let Some(local) = in_zone(cell, tz) {
                    *cell = local;
                }
            }
        }
        c
    };
    match opts.format {
        Format::Html => {
            return Err(crate::cli::UsageError(
                "--format html is for `stopd report` only (use table, json or csv)".into(),
            )
            .into());
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, rows)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut *out);
            w.write_record(columns.names)?;
            for r in rows {
                w.write_record(cells(r).iter().map(|c| escape(c).into_owned()))?;
            }
            w.flush()?;
        }
        Format::Table => {
            let width = opts.width();
            let all: Vec<Vec<String>> = rows.iter().map(&cells).collect();
            // A fitted table leaves out wide-only columns, and columns with nothing in them.
            let shown: Vec<usize> = (0..columns.names.len())
                .filter(|&i| {
                    width.is_none()
                        || !columns.wide_only.contains(&columns.names[i])
                            && all.iter().any(|r| !r[i].is_empty())
                })
                .collect();
            let pick = |all: &[&str]| -> Vec<String> {
                shown
                    .iter()
                    .map(|&i| match width {
                        Some(_) if columns.to_the_minute.contains(&columns.names[i]) => {
                            let s = to_the_second(all[i]);
                            let b = s.as_bytes();
                            match s.strip_suffix('Z') {
                                Some(t) if t.len() == 19 => format!("{}Z", &t[..16]),
                                // A local time with its offset: 2027-03-26T18:00+01:00.
                                None if s.len() == 25
                                    && s.is_ascii()
                                    && b[10] == b'T'
                                    && &s[16..19] == ":00"
                                    && matches!(b[19], b'+' | b'-') =>
                                {
                                    format!("{}{}", &s[..16], &s[19..])
                                }
                                _ => s.into_owned(),
                            }
                        }
                        Some(_) => to_the_second(all[i]).into_owned(),
                        None => all[i].to_string(),
                    })
                    .collect()
            };
            let headers: Vec<&str> = shown.iter().map(|&i| columns.names[i]).collect();
            let whole: Vec<bool> = headers.iter().map(|h| columns.whole.contains(h)).collect();
            let body: Vec<Vec<String>> = all
                .iter()
                .map(|r| {
                    let r: Vec<&str> = r.iter().map(String::as_str).collect();
                    pick(&r)
                })
                .collect();
            render(out, &headers, &whole, &body, width, Fit::Cut)?;
        }
    }
    Ok(())
}

/// Columns of free text, wherever they appear: a fitted table wraps them over several lines
/// rather than cut them, since their end often holds the fact that matters (the incident
/// number at the end of a reason).
pub const FREE_TEXT: &[&str] = &["reason", "explanation", "error", "verdict"];

/// Aligned columns fitted to `width` (`None`: natural widths); `whole[i]` columns are never cut;
/// with [`Fit::Cut`] the others are cut with `…`, except the [`FREE_TEXT`] columns, which wrap
/// (with [`Fit::Wrap`] every column that is not whole wraps).
pub fn render(
    out: &mut impl Write,
    headers: &[&str],
    whole: &[bool],
    rows: &[Vec<String>],
    width: Option<u16>,
    fit: Fit,
) -> Result<()> {
    let n = headers.len();
    let headers: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape(c).into_owned()).collect())
        .collect();
    let len = |s: &str| s.chars().count();
    let natural: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .flat_map(|r| r.get(i).map(|c| c.lines().map(len).max().unwrap_or(0)))
                .chain([len(&headers[i])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let is_whole = |i: usize| whole.get(i).copied().unwrap_or(false);
    let wraps = |i: usize| {
        !is_whole(i)
            && (fit == Fit::Wrap || FREE_TEXT.contains(&headers[i].to_lowercase().as_str()))
    };
    let mut widths = natural.clone();
    if let Some(w) = width {
        // Two spaces between columns, none at the edges.
        let room = (w as usize).saturating_sub(2 * n.saturating_sub(1));
        // The least each column keeps: the longest word of its header (a header wraps at
        // `_`), and enough to recognise ("prod-…").
        let least = |i: usize| natural[i].min(header_word(&headers[i]).max(5));
        // Free text gives way to 40 characters, then cut columns to their least, then free
        // text to 20 (still readable); the widest first.
        let phases: [(bool, usize); 3] = [(true, 40), (false, 0), (true, 20)];
        for (wrapped, floor) in phases {
            while widths.iter().sum::<usize>() > room {
                let Some(i) = (0..n)
                    .filter(|&i| {
                        !is_whole(i)
                            && wraps(i) == wrapped
                            && widths[i] > least(i).max(floor.min(natural[i]))
                    })
                    .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)))
                else {
                    break;
                };
                widths[i] -= 1;
            }
        }
        // Still too wide: wrapped columns give way down to their header.
        while widths.iter().sum::<usize>() > room {
            let Some(i) = (0..n)
                .filter(|&i| wraps(i) && widths[i] > header_word(&headers[i]).max(1))
                .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)))
            else {
                break;
            };
            widths[i] -= 1;
        }
    }
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().enumerate().map(|(i, h)| {
            let w = widths.get(i).copied().unwrap_or(usize::MAX);
            if len(h) <= w {
                return h.clone();
            }
            // PIPELINES_SEEN over two lines: PIPELINES_ / SEEN.
            let mut lines: Vec<String> = Vec::new();
            for word in h.split('_') {
                match lines.last_mut() {
                    Some(l) if len(l) + 1 + len(word) <= w => {
                        l.push('_');
                        l.push_str(word);
                    }
                    _ => lines.push(word.to_string()),
                }
            }
            lines.join("_\n")
        }));
    for r in &rows {
        let cells = r.iter().enumerate().map(|(i, c)| {
            let w = widths.get(i).copied().unwrap_or(usize::MAX);
            if is_whole(i) || len(c) <= w && !c.contains('\n') {
                c.clone()
            } else if wraps(i) {
                wrap(c, w).join("\n")
            } else {
                cut(c, w)
            }
        });
        t.add_row(Row::from(cells));
    }
    let last = n.saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 2 }));
    }
    for line in t.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The longest part of a header between `_`s: where it may wrap.
fn header_word(header: &str) -> usize {
    header
        .split('_')
        .map(|w| w.chars().count() + 1)
        .max()
        .unwrap_or(0)
}

/// `text` cut to `width` characters, its last one `…` when it was longer.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// `text` in lines of at most `width` characters, broken at spaces where it can be (a word
/// longer than a line is split).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    wrap_lines(text, width, width)
}

/// [`wrap`] with a first line of `first` characters and the others of `rest`.
fn wrap_lines(text: &str, first: usize, rest: usize) -> Vec<String> {
    let room = |lines: &Vec<String>| if lines.is_empty() { first } else { rest }.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    // A number stays with the word after it: "2 d 14 h" breaks as "2 d" / "14 h".
    let mut words: Vec<String> = Vec::new();
    for w in text.split(' ') {
        match words.last_mut() {
            Some(last) if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) => {
                last.push(' ');
                last.push_str(w);
            }
            _ => words.push(w.to_string()),
        }
    }
    for word in words {
        let mut word: Vec<char> = word.chars().collect();
        if used > 0 && used + 1 + word.len() > room(&lines) {
            lines.push(std::mem::take(&mut line));
            used = 0;
        }
        if used > 0 {
            line.push(' ');
            used += 1;
        }
        while used + word.len() > room(&lines) {
            let tail = word.split_off(room(&lines) - used);
            line.extend(word);
            lines.push(std::mem::take(&mut line));
            used = 0;
            word = tail;
        }
        used += word.len();
        line.extend(word);
    }
    lines.push(line);
    lines
}

/// A line of text (not a table) for people, wrapped to the width tables fit: `first` starts
/// it, continuation lines start with `indent`; whole with `width` `None`.
pub fn paragraph(first: &str, text: &str, indent: &str, width: Option<u16>) -> String {
    let Some(w) = width else {
        return format!("{first}{text}");
    };
    let room = |prefix: &str| (w as usize).saturating_sub(prefix.chars().count()).max(20);
    let lines = wrap_lines(text, room(first), room(indent));
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(if i == 0 { first } else { indent });
        out.push_str(l);
    }
    out
}

/// Aligned columns for a table of plain strings, fitted as `opts` says; every column may be cut.
pub fn table(
    out: &mut impl Write,
    opts: OutputArgs,
    headers: &[&str],
    rows: &[Vec<String>],
) -> Result<()> {
    render(out, headers, &[], rows, opts.width(), Fit::Cut)
}

/// A timestamp of the audit log (`2026-11-28T09:25:05.875Z`) to the second, for a fitted table;
/// any other text as it is.
/// An audit timestamp (`2026-12-20T09:15:00.000Z`) in `tz`, with its offset; `None` for any
/// other text.
pub fn in_zone(text: &str, tz: chrono_tz::Tz) -> Option<String> {
    let b = text.as_bytes();
    if !(b.len() == 24 && b[10] == b'T' && b[23] == b'Z') {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(
        t.with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
            .to_string(),
    )
}

fn to_the_second(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    if b.len() == 24 && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z' && text.is_ascii() {
        Cow::Owned(format!("{}Z", &text[..19]))
    } else {
        Cow::Borrowed(text)
    }
}

/// `text` with its control characters (C0, DEL, C1) and the bidirectional overrides that can
/// reorder what a terminal shows escaped as `\n`, `\u{1b}`, ...; everything else as it is.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut s = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            s.extend(c.escape_debug());
            // escape_debug leaves some format characters as they are; make sure.
            if s.ends_with(c) {
                s.pop();
                s.extend(c.escape_unicode());
            }
        } else {
            s.push(c);
        }
    }
    Cow::Owned(s)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_tables_show_audit_timestamps_to_the_second() {
        assert_eq!(
            to_the_second("2026-11-28T09:25:05.875Z"),
            "2026-11-28T09:25:05Z"
        );
        assert_eq!(
            to_the_second("2026-11-28T09:25:05Z"),
            "2026-11-28T09:25:05Z"
        );
        assert_eq!(
            to_the_second("a reason of twenty-four."),
            "a reason of twenty-four."
        );
    }

    #[test]
    fn control_characters_and_ansi_are_escaped() {
        assert_eq!(escape("plain ✓ text"), "plain ✓ text");
        assert_eq!(
            escape("red \u{1b}[31mALERT\u{1b}[0m\r\nforged\u{7}\u{9b}x\u{202e}"),
            "red \\u{1b}[31mALERT\\u{1b}[0m\\r\\nforged\\u{7}\\u{9b}x\\u{202e}"
        );
    }

    fn render_to_string(
        last: &str,
        rows: &[Vec<String>],
        whole: &[bool],
        width: Option<u16>,
    ) -> String {
        let mut out = Vec::new();
        render(
            &mut out,
            &["name", "id", last],
            whole,
            rows,
            width,
            Fit::Cut,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec![
                "prod-web".to_string(),
                "603a0808-44a3-49f2-a322-e08a22ae47c6".to_string(),
                "Change freeze until 2099-12-31T23:00:00Z: prod-web stopped by stopd; ask #release"
                    .to_string(),
            ],
            vec!["dev".into(), "1".into(), "short".into()],
        ]
    }

    #[test]
    fn a_fitted_table_cuts_long_cells_with_an_ellipsis_and_wide_keeps_them() {
        let fitted = render_to_string("note", &rows(), &[false, true, false], Some(60));
        assert_eq!(
            fitted,
            "NAME      ID                                    NOTE\n\
             prod-web  603a0808-44a3-49f2-a322-e08a22ae47c6  Change free…\n\
             dev       1                                     short\n"
        );
        assert!(fitted.lines().all(|l| l.chars().count() <= 60));
        let wide = render_to_string("note", &rows(), &[false, true, false], None);
        assert!(wide.contains("ask #release\n"), "{wide}");
        assert_eq!(wide.lines().count(), 3);
    }

    #[test]
    fn a_fitted_table_wraps_free_text_whole_and_cuts_the_rest_first() {
        let fitted = render_to_string("reason", &rows(), &[false, false, false], Some(60));
        assert_eq!(
            fitted,
            "NAME      ID        REASON\n\
             prod-web  603a080…  Change freeze until\n\
             \x20                   2099-12-31T23:00:00Z: prod-web stopped\n\
             \x20                   by stopd; ask #release\n\
             dev       1         short\n"
        );
        assert!(fitted.lines().all(|l| l.chars().count() <= 60));
    }

    #[test]
    fn wrapping_breaks_at_spaces_keeps_a_number_with_its_unit_and_splits_long_words() {
        assert_eq!(wrap("for 2 d 14 h", 8), ["for 2 d", "14 h"]);
        assert_eq!(wrap("abcdefghij kl", 4), ["abcd", "efgh", "ij", "kl"]);
        assert_eq!(
            paragraph(
                "One sweep: ",
                "31 pipelines, 4 stops decided (4 final)",
                "  ",
                Some(40)
            ),
            "One sweep: 31 pipelines, 4 stops decided\n  (4 final)"
        );
        assert_eq!(paragraph("> ", "a b", "  ", None), "> a b");
    }
}
