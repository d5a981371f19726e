//! Colours. Only the 16 basic ANSI colours are used, so every terminal shows them;
//! `NO_COLOR` or `--no-color` gives a monochrome theme (emphasis by reverse and bold).

use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThemeName {
    Dark,
    Light,
    Mono,
}

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub name: ThemeName,
    /// Braille dots for charts, or plain dots for fonts without braille.
    pub braille: bool,
}

impl Theme {
    pub fn new(name: ThemeName, braille: bool) -> Theme {
        Theme { name, braille }
    }

    fn fg(&self, dark: Color, light: Color) -> Style {
        match self.name {
            ThemeName::Dark => Style::default().fg(dark),
            ThemeName::Light => Style::default().fg(light),
            ThemeName::Mono => Style::default(),
        }
    }

    pub fn accent(&self) -> Style {
        self.fg(Color::Cyan, Color::Blue).add_modifier(Modifier::BOLD)
    }
    pub fn dim(&self) -> Style {
        match self.name {
            ThemeName::Mono => Style::default().add_modifier(Modifier::DIM),
            // Grey (7) is nearly invisible on white: the light theme dims with dark grey.
            _ => self.fg(Color::DarkGray, Color::DarkGray),
        }
    }
    pub fn good(&self) -> Style {
        self.fg(Color::Green, Color::Green)
    }
    pub fn bad(&self) -> Style {
        self.fg(Color::Red, Color::Red).add_modifier(Modifier::BOLD)
    }
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow, Color::Magenta)
    }
    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    pub fn header(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    /// How line `i` of a multi-line chart is marked, and its glyph for the legend.
    /// With colour, every line is drawn in braille and told apart by colour; without
    /// it, by its mark.
    pub fn mark(&self, i: usize) -> (&'static str, Marker) {
        match self.name {
            ThemeName::Mono => [("⠒", Marker::Braille), ("•", Marker::Dot), ("▄", Marker::Bar)][i % 3],
            _ => ("", Marker::Braille),
        }
    }

    /// The series colours of a chart, in order.
    pub fn series(&self, i: usize) -> Style {
        let dark = [Color::Cyan, Color::Yellow, Color::Red, Color::Magenta];
        let light = [Color::Blue, Color::Magenta, Color::Red, Color::Green];
        self.fg(dark[i % 4], light[i % 4])
    }
}
