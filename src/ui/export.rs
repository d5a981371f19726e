//! `e` and `:export`: the view on screen written to a file. Tables go to CSV with
//! numbers as numbers (an unknown or unpriced value is an empty cell), the Overview
//! to the report's JSON, the request list to JSON lines in tokentop's own schema.

use std::io;
use std::path::{Path, PathBuf};

use super::app::{App, View};
use super::rows::{Column, GROUP_COLUMNS, Kind, SESSION_COLUMNS, USER_COLUMNS};

impl App {
    /// Writes the current view to `path`, or to a file named after it in the current
    /// directory.
    pub fn export_to(&self, path: Option<&Path>) -> io::Result<PathBuf> {
        let written = self.export(Path::new("."))?;
        match path {
            None => Ok(written),
            Some(p) => {
                std::fs::rename(&written, p).or_else(|_| std::fs::copy(&written, p).map(|_| ()))?;
                let _ = std::fs::remove_file(&written);
                Ok(p.to_path_buf())
            }
        }
    }

    /// Writes the current view to a file in `dir`. Returns the path.
    pub fn export(&self, dir: &Path) -> io::Result<PathBuf> {
        let Some(snap) = &self.snapshot else { return Err(io::Error::other("no data yet")) };
        let stamp = chrono::DateTime::from_timestamp_micros(snap.now)
            .map(|d| d.format("%Y%m%d-%H%M%S").to_string())
            .unwrap_or_default();
        let name = self.view.title().to_lowercase();
        let (path, bytes) = match self.view {
            View::Overview | View::Alerts => (
                dir.join(format!("tokentop-{name}-{stamp}.json")),
                serde_json::to_vec_pretty(&snap.report).map_err(io::Error::other)?,
            ),
            View::Requests => {
                let mut out = Vec::new();
                for r in self.request_list() {
                    crate::parse::native::write_line(&r.as_event(), &mut out);
                }
                (dir.join(format!("tokentop-{name}-{stamp}.jsonl")), out)
            }
            _ => (dir.join(format!("tokentop-{name}-{stamp}.csv")), self.csv()?),
        };
        std::fs::write(&path, bytes)?;
        Ok(path)
    }

    fn csv(&self) -> io::Result<Vec<u8>> {
        let columns: &[Column] = match self.view {
            View::Users => &USER_COLUMNS,
            View::Sessions => &SESSION_COLUMNS,
            _ => &GROUP_COLUMNS,
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(columns.iter().map(|c| c.name)).map_err(io::Error::other)?;
        for row in self.rows() {
            let cells = columns.iter().enumerate().map(|(i, c)| match c.kind {
                Kind::Name => row.key.clone(),
                Kind::Text => row.cells[i].clone(),
                Kind::Num => row.values[i].map(|v| v.to_string()).unwrap_or_default(),
            });
            w.write_record(cells).map_err(io::Error::other)?;
        }
        w.into_inner().map_err(|e| io::Error::other(e.to_string()))
    }
}
