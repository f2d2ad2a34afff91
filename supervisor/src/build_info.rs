//! What this berthd is: its version and the commit it was built from
//! (set by build.rs), as every adapter reports them.

/// The version string clients see (without the leading `v`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit berthd was built from (`unknown` outside a checkout).
pub const REVISION: &str = env!("BERTH_REVISION");
