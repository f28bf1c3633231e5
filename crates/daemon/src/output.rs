//! Table, JSON and CSV output of records.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// A JSON array of records.
    Json,
    /// CSV with a header row.
    Csv,
}

/// Writes `rows` in `format`: JSON from their `Serialize` impl, table and CSV from `cells`.
pub fn write<T: Serialize>(
    out: &mut impl Write,
    format: Format,
    rows: &[T],
    headers: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, rows)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut *out);
            w.write_record(headers)?;
            for r in rows {
                w.write_record(cells(r))?;
            }
            w.flush()?;
        }
        Format::Table => {
            let body: Vec<Vec<String>> = rows.iter().map(&cells).collect();
            table(out, headers, &body)?;
        }
    }
    Ok(())
}

/// Aligned columns; the last column is not padded.
pub fn table(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                write!(out, "{c}")?;
            } else {
                let pad = widths[i] - c.chars().count();
                write!(out, "{c}{}  ", " ".repeat(pad))?;
            }
        }
        writeln!(out)
    };
    let head: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    line(out, &head)?;
    for r in rows {
        line(out, r)?;
    }
    Ok(())
}
