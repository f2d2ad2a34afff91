//! What berthctl says about itself without berthd: shell completion
//! scripts and man pages, both generated from the command-line grammar so
//! they never drift from it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes the completion script for `shell` to stdout.
pub fn completion(mut cmd: clap::Command, shell: clap_complete::Shell) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "berthctl", &mut buf);
    let text = String::from_utf8(buf)
        .map_err(|e| Error::Protocol(format!("completion script is not UTF-8: {e}")))?;
    crate::output::write_stdout(&text)
}

/// Writes one man page (section 1) per command and command group into
/// `dir`: `berthctl.1`, `berthctl-images.1`, `berthctl-images-pull.1`, ...;
/// returns their paths.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    write_pages(cmd, dir, &mut pages)?;
    Ok(pages)
}

fn write_pages(cmd: clap::Command, dir: &Path, pages: &mut Vec<PathBuf>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, pages)?;
    }
    let man = clap_mangen::Man::new(cmd)
        .section("1")
        .date(env!("BERTH_BUILD_DATE"))
        .source(concat!("Berth ", env!("CARGO_PKG_VERSION")))
        .manual("Berth");
    let path = man
        .generate_to(dir)
        .map_err(|e| Error::io(format!("write a man page into {}", dir.display()), e))?;
    pages.push(path);
    Ok(())
}
