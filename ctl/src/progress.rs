//! Progress bars on stderr, shown only when stderr is a terminal so that
//! scripts and logs never see control sequences.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// True when progress should be drawn (stderr is a terminal).
pub fn enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// A byte-counting bar for one transfer, or None when stderr is not a
/// terminal. With an unknown total it shows a spinner, bytes and speed.
pub fn bytes(total: Option<u64>, message: impl Into<String>) -> Option<ProgressBar> {
    if !enabled() {
        return None;
    }
    Some(styled_bar(total, message))
}

/// Several bars drawn together on stderr (one per layer), or None when
/// stderr is not a terminal.
pub fn multi() -> Option<MultiProgress> {
    enabled().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// A bar styled for bytes; callers add it to a [`MultiProgress`] or draw it
/// alone.
pub fn styled_bar(total: Option<u64>, message: impl Into<String>) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    set_style(&bar, total.is_some());
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Switches a bar between the known-total and unknown-total styles.
pub fn set_style(bar: &ProgressBar, known_total: bool) {
    let template = if known_total {
        "{msg:<24!} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} eta {eta}"
    } else {
        "{spinner} {msg:<24!} {bytes:>10} {bytes_per_sec:>12} {elapsed}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}
