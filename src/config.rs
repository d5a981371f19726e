//! The config file: defaults for the console, and key bindings.
//!
//! `~/.config/tokentop/config.toml` (or `$XDG_CONFIG_HOME/tokentop/config.toml`, or the
//! file given with `--config`). Settings are layered: command line, then this file, then
//! built-in defaults. `assets/config.example.toml` shows every setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyModifiers};
use serde::Deserialize;
use thiserror::Error;

use crate::ui::keys::{Action, default_keymap};

#[derive(Debug, Error)]
pub enum ConfigError {
    /// The cause is in the message (not a `source`, which would print it twice).
    #[error("cannot read the config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// What the file may set. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub sources: Option<Vec<String>>,
    pub window: Option<String>,
    pub refresh: Option<String>,
    /// dark, light or mono
    pub theme: Option<String>,
    pub ascii: Option<bool>,
    pub utc: Option<bool>,
    pub mouse: Option<bool>,
    /// Ring the terminal bell when an alert fires.
    pub bell: Option<bool>,
    /// wall or event
    pub clock: Option<String>,
    pub prices: Option<PathBuf>,
    pub demo_rate: Option<f64>,
    /// Action name → keys, e.g. `quit = ["q", "ctrl-c"]`.
    pub keys: Option<BTreeMap<String, Vec<String>>>,
    /// Alert rules (read by the alert engine).
    pub alerts: Option<Vec<toml::Table>>,
    /// Where alerts are sent.
    pub webhooks: Option<Vec<crate::alert::notify::WebhookConfig>>,
    pub hooks: Option<Vec<crate::alert::notify::HookConfig>>,
}

/// The default location: `$XDG_CONFIG_HOME/tokentop/config.toml`, else `~/.config/…`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("tokentop").join("config.toml"))
}

/// Reads the file given, or the default one if it exists (a missing default file is
/// no error; a missing file that was asked for is).
pub fn load(explicit: Option<&Path>) -> Result<ConfigFile, ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_path() {
            Some(p) if p.exists() => p,
            _ => return Ok(ConfigFile::default()),
        },
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read { path: shown.clone(), error })?;
    let file: ConfigFile =
        toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: shown.clone(), message: e.to_string() })?;
    // Check the key bindings now, so a typo is reported at start with its name.
    keymap(&file).map_err(|message| ConfigError::Invalid { path: shown, message })?;
    Ok(file)
}

/// The names actions have in the `[keys]` table.
pub const ACTIONS: [(&str, Action); 29] = [
    ("quit", Action::Quit),
    ("overview", Action::View(0)),
    ("models", Action::View(1)),
    ("providers", Action::View(2)),
    ("users", Action::View(3)),
    ("sessions", Action::View(4)),
    ("properties", Action::View(5)),
    ("requests", Action::View(6)),
    ("alerts", Action::View(7)),
    ("next_view", Action::NextView),
    ("prev_view", Action::PrevView),
    ("up", Action::Up),
    ("down", Action::Down),
    ("page_up", Action::PageUp),
    ("page_down", Action::PageDown),
    ("home", Action::Home),
    ("end", Action::End),
    ("drill_down", Action::DrillDown),
    ("back", Action::Back),
    ("filter", Action::Filter),
    ("sort", Action::SortNext),
    ("sort_reverse", Action::SortReverse),
    ("zoom_in", Action::ZoomIn),
    ("zoom_out", Action::ZoomOut),
    ("pause", Action::Pause),
    ("help", Action::Help),
    ("slowest", Action::SlowestMode),
    ("export", Action::Export),
    ("copy", Action::Copy),
];

/// A key written like `q`, `Q`, `ctrl-c`, `tab`, `shift-tab`, `enter`, `esc`, `space`,
/// `up`, `down`, `pgup`, `pgdn`, `home`, `end`, `f1`…
pub fn parse_key(s: &str) -> Result<(KeyCode, KeyModifiers), String> {
    let mut mods = KeyModifiers::NONE;
    let mut rest = s;
    loop {
        let lower = rest.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("ctrl-") {
            mods |= KeyModifiers::CONTROL;
            rest = &rest[rest.len() - r.len()..];
        } else if let Some(r) = lower.strip_prefix("alt-") {
            mods |= KeyModifiers::ALT;
            rest = &rest[rest.len() - r.len()..];
        } else if let Some(r) = lower.strip_prefix("shift-").filter(|r| r.len() > 1) {
            mods |= KeyModifiers::SHIFT;
            rest = &rest[rest.len() - r.len()..];
        } else {
            break;
        }
    }
    let code = match rest.to_ascii_lowercase().as_str() {
        "tab" if mods.contains(KeyModifiers::SHIFT) => KeyCode::BackTab,
        "tab" => KeyCode::Tab,
        "backtab" => KeyCode::BackTab,
        "enter" | "return" => KeyCode::Enter,
        "esc" | "escape" => KeyCode::Esc,
        "space" => KeyCode::Char(' '),
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "pgup" | "pageup" => KeyCode::PageUp,
        "pgdn" | "pagedown" => KeyCode::PageDown,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "backspace" => KeyCode::Backspace,
        f if f.len() > 1 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
            KeyCode::F(f[1..].parse().unwrap_or(1))
        }
        _ => {
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => {
                    if c.is_ascii_uppercase() {
                        mods |= KeyModifiers::SHIFT;
                    }
                    KeyCode::Char(c)
                }
                _ => {
                    return Err(format!(
                        "`{s}` is not a key (write q, ctrl-c, tab, shift-tab, enter, esc, space, up, pgdn, f1 …)"
                    ));
                }
            }
        }
    };
    if code == KeyCode::BackTab {
        mods |= KeyModifiers::SHIFT;
    }
    Ok((code, mods))
}

/// The key map: the defaults, with the actions named in `[keys]` bound to the keys given.
pub fn keymap(file: &ConfigFile) -> Result<Vec<(KeyCode, KeyModifiers, Action)>, String> {
    let mut map = default_keymap();
    if let Some(keys) = &file.keys {
        for (name, list) in keys {
            let action = ACTIONS.iter().find(|(n, _)| n == name).map(|(_, a)| *a).ok_or_else(|| {
                format!("[keys]: `{name}` is not an action (one of {})", ACTIONS.map(|(n, _)| n).join(", "))
            })?;
            map.retain(|(_, _, a)| *a != action);
            for k in list {
                let (code, mods) = parse_key(k).map_err(|e| format!("[keys] {name}: {e}"))?;
                // A key moved to this action leaves its old one.
                map.retain(|(c, m, _)| !(*c == code && *m == mods));
                map.push((code, mods, action));
            }
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_settings_and_remaps_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
            sources = ["/var/log/gw.jsonl"]
            window = "15m"
            theme = "light"
            [keys]
            quit = ["x", "ctrl-c"]
            down = ["n"]
            zoom_out = ["shift-tab"]
            [[alerts]]
            name = "errors"
            "#,
        )
        .unwrap();
        let c = load(Some(&path)).unwrap();
        assert_eq!(c.window.as_deref(), Some("15m"));
        assert_eq!(c.alerts.as_ref().unwrap().len(), 1);
        let map = keymap(&c).unwrap();
        let find = |code, mods| map.iter().find(|(c, m, _)| *c == code && *m == mods).map(|x| x.2);
        assert_eq!(find(KeyCode::Char('x'), KeyModifiers::NONE), Some(Action::Quit));
        assert_eq!(find(KeyCode::Char('q'), KeyModifiers::NONE), None, "q no longer quits");
        assert_eq!(find(KeyCode::Char('n'), KeyModifiers::NONE), Some(Action::Down));
        assert_eq!(find(KeyCode::Char('j'), KeyModifiers::NONE), None);
        assert_eq!(find(KeyCode::BackTab, KeyModifiers::SHIFT), Some(Action::ZoomOut));
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (text, want) in [
            ("windw = \"1h\"", "windw"),
            ("[keys]\nquitt = [\"q\"]", "quitt"),
            ("[keys]\nquit = [\"meta-q\"]", "meta-q"),
            ("window = 5", "window"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = load(Some(&path)).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(load(Some(Path::new("/nonexistent/tokentop.toml"))).unwrap_err().to_string().contains("cannot read"));
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/config.example.toml");
        let c = load(Some(&path)).unwrap();
        assert!(c.keys.is_some());
    }
}
