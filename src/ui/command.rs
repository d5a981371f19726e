//! The prompt line: a filter typed after `/`, or a command after `:` with Tab
//! completion and history.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Overlay, Prompt, View};
use crate::filter::Filter;

/// The commands of the `:` line.
pub const COMMANDS: [&str; 19] = [
    "model",
    "provider",
    "user",
    "session",
    "filter",
    "clear",
    "window",
    "export",
    "sources",
    "overview",
    "models",
    "providers",
    "users",
    "sessions",
    "properties",
    "requests",
    "alerts",
    "help",
    "quit",
];

/// Candidates Tab lists at most.
const CANDIDATES: usize = 12;

impl App {
    pub(super) fn prompt_key(&mut self, key: KeyEvent, mut p: Prompt) -> bool {
        match key.code {
            KeyCode::Esc => {
                self.prompt = None;
                return false;
            }
            KeyCode::Enter if p.command => {
                let text = p.text.trim().to_string();
                self.prompt = None;
                if text.is_empty() {
                    return false;
                }
                self.history.retain(|h| *h != text);
                self.history.push(text.clone());
                return match self.command(&text) {
                    Ok(changed) => changed,
                    Err(e) => {
                        self.prompt = Some(Prompt { error: Some(e), ..p });
                        false
                    }
                };
            }
            KeyCode::Tab if p.command => {
                let (text, candidates) = self.complete(&p.text);
                p.text = text;
                p.candidates = candidates;
                p.error = None;
            }
            KeyCode::Up | KeyCode::Down if p.command && !self.history.is_empty() => {
                let last = self.history.len() - 1;
                let i = match (p.history, key.code) {
                    (None, KeyCode::Up) => Some(last),
                    (Some(i), KeyCode::Up) => Some(i.saturating_sub(1)),
                    (Some(i), KeyCode::Down) if i < last => Some(i + 1),
                    _ => None,
                };
                p.history = i;
                p.text = i.map(|i| self.history[i].clone()).unwrap_or_default();
            }
            KeyCode::Enter => {
                let text = p.text.trim().to_string();
                if text.is_empty() {
                    self.prompt = None;
                    return false;
                }
                return match self.narrow(text, self.view) {
                    Ok(changed) => {
                        self.prompt = None;
                        changed
                    }
                    // A bad filter shows why and keeps the old one.
                    Err(e) => {
                        p.error = Some(e);
                        self.prompt = Some(p);
                        false
                    }
                };
            }
            KeyCode::Backspace => {
                p.text.pop();
                p.error = None;
                p.candidates.clear();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                p.text.push(c);
                p.error = None;
                p.candidates.clear();
            }
            _ => {}
        }
        self.prompt = Some(p);
        false
    }

    /// Adds a filter term to the path (if the whole path still parses), showing `view`.
    fn narrow(&mut self, term: String, view: View) -> Result<bool, String> {
        let mut candidate = self.path.clone();
        candidate.push(term.clone());
        candidate.join(" ").parse::<Filter>().map_err(|e| e.to_string())?;
        self.push_term(term, view);
        Ok(true)
    }

    /// Runs a `:` command. Returns whether the filter changed.
    fn command(&mut self, line: &str) -> Result<bool, String> {
        let (cmd, arg) = line.split_once(char::is_whitespace).map_or((line, ""), |(c, a)| (c, a.trim()));
        let need = |what: &str| if arg.is_empty() { Err(format!(":{cmd} needs {what}")) } else { Ok(()) };
        match cmd {
            "model" | "provider" | "user" | "session" => {
                need("a name")?;
                let view = if cmd == "session" { View::Requests } else { View::Overview };
                self.narrow(format!("{cmd}:{arg}"), view)
            }
            "filter" => {
                need("a filter expression")?;
                self.narrow(arg.to_string(), self.view)
            }
            "clear" => Ok(self.clear_path()),
            "window" => {
                need("a length, e.g. 15m")?;
                let w = crate::time::parse_duration(arg)?;
                match self.windows.iter().position(|x| *x == w) {
                    Some(i) => {
                        self.window = i;
                        self.needs_refresh = self.paused.is_none();
                        Ok(false)
                    }
                    None => {
                        let kept: Vec<String> = self.windows.iter().map(|w| crate::time::format_duration(*w)).collect();
                        Err(format!(
                            "window {arg} is not kept: choose one of {} (or start with --window {arg})",
                            kept.join(", ")
                        ))
                    }
                }
            }
            "export" => {
                let path = if arg.is_empty() { None } else { Some(std::path::PathBuf::from(arg)) };
                let text = match self.export_to(path.as_deref()) {
                    Ok(p) => format!("exported to {}", p.display()),
                    Err(e) => return Err(format!("export failed: {e}")),
                };
                self.message = Some((text, std::time::Instant::now()));
                Ok(false)
            }
            "sources" => {
                self.overlay = Some(Overlay::Sources);
                Ok(false)
            }
            "help" => {
                self.overlay = Some(Overlay::Help);
                Ok(false)
            }
            "q" | "quit" => {
                self.quit = true;
                Ok(false)
            }
            _ => match View::ALL.iter().find(|v| v.title().eq_ignore_ascii_case(cmd)) {
                Some(v) => {
                    self.set_view(*v);
                    Ok(false)
                }
                None => Err(format!(
                    "unknown command `{cmd}`: Tab completes, e.g. :model gpt-4o, :window 15m, :export top.csv"
                )),
            },
        }
    }

    /// Completes a command name, or the name after `model`, `provider`, `user` or
    /// `session`: the text completed as far as the matches agree, and the matches
    /// when there are several.
    fn complete(&self, text: &str) -> (String, Vec<String>) {
        let listed = |m: &[&str]| {
            if m.len() > 1 { m.iter().take(CANDIDATES).map(|s| s.to_string()).collect() } else { Vec::new() }
        };
        let Some((cmd, arg)) = text.split_once(' ') else {
            let matches: Vec<&str> = COMMANDS.iter().copied().filter(|c| c.starts_with(text)).collect();
            return match matches.as_slice() {
                [one] => (format!("{one} "), Vec::new()),
                _ => (common_prefix(&matches).unwrap_or(text).to_string(), listed(&matches)),
            };
        };
        let Some(snap) = &self.snapshot else { return (text.to_string(), Vec::new()) };
        let r = &snap.report;
        let names: Vec<&str> = match cmd {
            "model" => r.by_model.iter().flat_map(|g| g.0.iter().map(|(n, _)| n.as_str())).collect(),
            "provider" => r.by_provider.iter().flat_map(|g| g.0.iter().map(|(n, _)| n.as_str())).collect(),
            "user" => r.users.iter().flatten().map(|u| u.user_id.as_str()).collect(),
            "session" => snap.sessions.iter().map(|s| s.key.as_str()).collect(),
            _ => Vec::new(),
        };
        let mut matches: Vec<&str> = names
            .into_iter()
            .filter(|n| n.starts_with(arg) && !n.contains(char::is_whitespace) && *n != crate::stats::OTHER)
            .collect();
        matches.sort_unstable();
        matches.dedup();
        match matches.as_slice() {
            [one] => (format!("{cmd} {one}"), Vec::new()),
            _ => (format!("{cmd} {}", common_prefix(&matches).unwrap_or(arg)), listed(&matches)),
        }
    }
}

fn common_prefix<'a>(words: &[&'a str]) -> Option<&'a str> {
    let first = *words.first()?;
    let mut len = words
        .iter()
        .fold(first.len(), |len, w| first.bytes().zip(w.bytes()).take(len).take_while(|(a, b)| a == b).count());
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    Some(&first[..len])
}
