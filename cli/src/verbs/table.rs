//! Plain-text tables: columns padded to their widest cell, the last column left ragged.

use std::io::Write;

/// A table built row by row, then written at once (widths need every row).
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    show_header: bool,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            show_header: true,
            rows: Vec::new(),
        }
    }

    /// A table of `columns` columns written without a header: a key-value list.
    pub fn headless(columns: usize) -> Self {
        Self {
            header: vec![""; columns],
            show_header: false,
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra ones ignored. Line breaks in a cell are
    /// shown as `\n` so every row stays on one line.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells
            .into_iter()
            .take(self.header.len())
            .map(|c| c.replace('\r', "\\r").replace('\n', "\\n"))
            .collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the header and the rows.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = match self.show_header {
            true => self.header.iter().map(|h| width(h)).collect(),
            false => vec![0; self.header.len()],
        };
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_uppercase()).collect();
        if self.show_header {
            line(out, &header, &widths)?;
        }
        for row in &self.rows {
            line(out, row, &widths)?;
        }
        Ok(())
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn line(out: &mut impl Write, cells: &[String], widths: &[usize]) -> std::io::Result<()> {
    let last = cells.len().saturating_sub(1);
    let mut text = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        text.push_str(cell);
        if i < last {
            text.extend(std::iter::repeat_n(' ', w - width(cell) + 2));
        }
    }
    writeln!(out, "{}", text.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell_and_newlines_escaped() {
        let mut t = Table::new(&["seq", "agent", "message"]);
        t.row(vec!["1".into(), "alice".into(), "first\nline".into()]);
        t.row(vec!["12".into(), "bo".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SEQ  AGENT  MESSAGE\n1    alice  first\\nline\n12   bo\n"
        );
    }
}
