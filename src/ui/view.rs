//! The views and the Users view's segments.

/// The views, in tab order (their number is their key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Models,
    Providers,
    Users,
    Sessions,
    Properties,
    Requests,
    Alerts,
}

impl View {
    pub const ALL: [View; 8] = [
        View::Overview,
        View::Models,
        View::Providers,
        View::Users,
        View::Sessions,
        View::Properties,
        View::Requests,
        View::Alerts,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Models => "Models",
            View::Providers => "Providers",
            View::Users => "Users",
            View::Sessions => "Sessions",
            View::Properties => "Properties",
            View::Requests => "Requests",
            View::Alerts => "Alerts",
        }
    }

    /// A label for narrow terminals.
    pub fn short(self) -> &'static str {
        match self {
            View::Overview => "Over",
            View::Models => "Model",
            View::Providers => "Prov",
            View::Users => "User",
            View::Sessions => "Sess",
            View::Properties => "Prop",
            View::Requests => "Req",
            View::Alerts => "Alert",
        }
    }

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// The sort a table starts with: busiest first.
    pub(super) fn default_sort(self) -> (usize, bool) {
        match self {
            View::Sessions => (3, true),
            _ => (1, true),
        }
    }
}

/// Segments of the Users view (`p` cycles them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Segment {
    #[default]
    All,
    /// The top 10% of the window's users by requests.
    Power,
    /// First seen within the window.
    New,
    /// Traffic falling: fewer than half as many requests in the window's second half as in its first.
    AtRisk,
}

impl Segment {
    pub fn label(self) -> &'static str {
        match self {
            Segment::All => "all users",
            Segment::Power => "power users (top 10%)",
            Segment::New => "new users",
            Segment::AtRisk => "at-risk users (traffic falling)",
        }
    }

    pub(super) fn next(self) -> Segment {
        match self {
            Segment::All => Segment::Power,
            Segment::Power => Segment::New,
            Segment::New => Segment::AtRisk,
            Segment::AtRisk => Segment::All,
        }
    }
}
