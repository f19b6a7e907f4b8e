//! The bench's tables: Markdown, one row per measurement, times in ms, and
//! free-text notes under the table saying what exactly was measured.

use std::time::Duration;

/// One printed table.
#[derive(Debug)]
pub struct Table {
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    /// A table headed `title`, whose columns after `measurement` are `columns`.
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Self {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A row: the measurement's name, then one cell per column.
    pub fn row(&mut self, name: impl Into<String>, cells: Vec<String>) {
        let mut row = vec![name.into()];
        row.extend(cells);
        row.resize(self.columns.len() + 1, String::new());
        self.rows.push(row);
    }

    /// A line printed under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        let mut header = vec!["measurement".to_string()];
        header.extend(self.columns.iter().cloned());
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                std::iter::once(&header)
                    .chain(&self.rows)
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut out = String::from("|");
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                let pad = width - cell.chars().count();
                if i == 0 {
                    out.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
                } else {
                    out.push_str(&format!(" {}{cell} |", " ".repeat(pad)));
                }
            }
            out
        };
        println!("{}", self.title);
        println!();
        println!("{}", line(&header));
        let rule: String = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    format!("|{}", "-".repeat(w + 2))
                } else {
                    format!("|{}:", "-".repeat(w + 1))
                }
            })
            .collect();
        println!("{rule}|");
        for row in &self.rows {
            println!("{}", line(row));
        }
        if !self.notes.is_empty() {
            println!();
            for note in &self.notes {
                println!("{note}");
            }
        }
        println!();
    }
}

/// Samples in milliseconds, sorted.
#[derive(Debug)]
pub struct Stats {
    ms: Vec<f64>,
}

impl Stats {
    pub fn new(samples: &[Duration]) -> Self {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Self { ms }
    }

    pub fn n(&self) -> usize {
        self.ms.len()
    }

    /// The `q` quantile (0 ≤ q ≤ 1), interpolating linearly between the closest ranks.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.ms.is_empty() {
            return None;
        }
        let rank = (self.ms.len() - 1) as f64 * q;
        let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
        Some(self.ms[low] + (self.ms[high] - self.ms[low]) * (rank - low as f64))
    }

    /// Cells for `quantiles` (0 is the minimum, 1 the maximum), after the count.
    pub fn cells(&self, quantiles: &[f64]) -> Vec<String> {
        let mut cells = vec![self.n().to_string()];
        cells.extend(quantiles.iter().map(|q| ms(self.quantile(*q))));
        cells
    }
}

/// Milliseconds as printed: one decimal under 10 ms, none above; `-` for nothing.
pub fn ms(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

/// `debug` or `release`: what the figures were measured with.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}
