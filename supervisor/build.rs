// Build information for `--version`: the git commit and the build date,
// handed to the code as `BERTH_COMMIT` and `BERTH_BUILD_DATE` (and as
// `BERTH_REVISION`, which berthd's Version service reports). berthctl's
// build script is this file too (`ctl/build.rs` includes it).
//
// Outside a git checkout (a source tarball, a package build) the commit is
// `BERTH_COMMIT` from the environment when the packager sets it, else
// `unknown`; the build never fails for want of git. `SOURCE_DATE_EPOCH`,
// when set, fixes the date (reproducible builds); otherwise it is the UTC
// day this package was last built after a change to its sources or to the
// checked-out commit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = std::env::var("BERTH_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
    println!("cargo:rustc-env=BERTH_REVISION={commit}");
    println!("cargo:rustc-env=BERTH_BUILD_DATE={}", build_date());
}

/// Output of `git ARGS` run in this package's directory, when git is there
/// and the directory is in a repository.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The checked-out commit (12 hex digits), and a rerun whenever HEAD moves:
/// HEAD itself, the branch it names and the packed refs.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(p) = git(&["rev-parse", "--git-path", &name]) {
            let p = absolute(&dir, Path::new(&p));
            // A missing file would make cargo rerun this script every build.
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    Some(commit)
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `YYYY-MM-DD` (UTC) of `SOURCE_DATE_EPOCH` or of now.
fn build_date() -> String {
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .unwrap_or_else(SystemTime::now);
    humantime::format_rfc3339_seconds(when).to_string()[..10].to_string()
}
