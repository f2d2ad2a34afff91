//! The two sides of every comparison: which daemon a figure belongs to,
//! and why a side has no figure.

/// Which implementation a daemon is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Berthd,
    Containerd,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Berthd => "berthd",
            Kind::Containerd => "containerd",
        }
    }
}

/// Why one side of a measurement has no figure.
#[derive(Clone, Debug)]
pub(crate) enum SideError {
    /// The capability is not there yet (berthd answered Unimplemented, or a
    /// prerequisite is missing). Printed as "skipped: ...".
    Skipped(String),
    /// The workload ran and failed.
    Failed(String),
}

impl std::fmt::Display for SideError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SideError::Skipped(m) => write!(f, "skipped: {m}"),
            SideError::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

impl From<anyhow::Error> for SideError {
    fn from(e: anyhow::Error) -> Self {
        SideError::Failed(format!("{e:#}"))
    }
}
