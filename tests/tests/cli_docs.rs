//! Issue 17, CLI polish: completion scripts load in their shells and
//! complete berthctl's commands; the man pages of berthctl and berthd
//! render with `man -l` without a warning. No daemon is needed.

mod cli_support;

use std::process::Command;

use berth_tests::require_tool;
use cli_support::{run_bin, text};

/// Runs a bash snippet (no rc files) with `script` at $1.
fn bash(script: &std::path::Path, snippet: &str) -> (bool, String, String) {
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", snippet, "bash"])
        .arg(script)
        .output()
        .unwrap();
    let (o, e) = text(&out);
    (out.status.success(), o, e)
}

#[test]
fn completion_scripts_load_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_bin("berthctl", &["completion", "bash"]);
    let (script, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let file = dir.path().join("berthctl.bash");
    std::fs::write(&file, &script).unwrap();

    // Sources cleanly (nothing on stderr, even with -u) and registers itself.
    let (ok, o, e) = bash(&file, "set -eu; source \"$1\"; complete -p berthctl");
    assert!(ok && e.is_empty(), "stdout: {o}\nstderr: {e}");
    assert!(o.contains("-F _berthctl berthctl"), "{o}");

    // Completes groups and their commands as bash would ask.
    let complete = |words: &str| {
        let snippet = format!(
            "source \"$1\"; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _berthctl berthctl \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let (ok, o, e) = bash(&file, &snippet);
        assert!(ok, "{e}");
        o.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let groups = complete("berthctl ima");
    assert!(groups.contains(&"images".to_string()), "{groups:?}");
    assert!(!groups.contains(&"tasks".to_string()), "{groups:?}");
    let verbs = complete("berthctl images p");
    assert_eq!(verbs, vec!["pull", "push"]);
    let shells = complete("berthctl completion f");
    assert_eq!(shells, vec!["fish"]);

    // zsh and fish scripts name berthctl's commands; their shells check
    // the syntax where they are installed.
    for (shell, check) in [("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])] {
        let out = run_bin("berthctl", &["completion", shell]);
        let (script, err) = text(&out);
        assert!(out.status.success(), "{shell}: {err}");
        assert!(
            script.contains("berthctl") && script.contains("images") && script.contains("pull"),
            "{shell}: {script}"
        );
        let f = dir.path().join(format!("berthctl.{shell}"));
        std::fs::write(&f, &script).unwrap();
        if which(check[0]) {
            let out = Command::new(check[0])
                .arg(check[1])
                .arg(&f)
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell} -n: {:?}", text(&out));
        }
    }

    // An unknown shell is a usage error.
    let out = run_bin("berthctl", &["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("bash"), "{:?}", text(&out));
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
        .unwrap_or(false)
}

/// Renders a page with `man -l`: (exit success, page text, warnings).
fn man(page: &std::path::Path) -> (bool, String, String) {
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    let (o, e) = text(&out);
    (out.status.success(), o, e)
}

#[test]
fn man_pages_render() {
    if !require_tool("man_pages_render", "man") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run_bin("berthctl", &["man", dir.path().to_str().unwrap()]);
    let (listed, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let pages: Vec<&str> = listed.lines().collect();
    // One page for berthctl, one per group and per command.
    for want in [
        "berthctl.1",
        "berthctl-images.1",
        "berthctl-images-pull.1",
        "berthctl-completion.1",
        "berthctl-tasks-exec.1",
    ] {
        assert!(
            pages.iter().any(|p| p.ends_with(&format!("/{want}"))),
            "{want} not in {pages:?}"
        );
    }
    assert!(
        !pages.iter().any(|p| p.ends_with("/berthctl-man.1")),
        "hidden"
    );
    for p in &pages {
        let (ok, text, warnings) = man(std::path::Path::new(p));
        assert!(ok && warnings.is_empty(), "{p}: {warnings}");
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{p}: {text}"
        );
    }
    let (_, top, _) = man(&dir.path().join("berthctl.1"));
    assert!(
        top.contains("--address") && top.contains("BERTH_ADDRESS"),
        "{top}"
    );

    let out = run_bin("berthd", &["man", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    let page = dir.path().join("berthd.8");
    assert_eq!(text(&out).0.trim(), page.to_str().unwrap());
    let (ok, body, warnings) = man(&page);
    assert!(ok && warnings.is_empty(), "{warnings}");
    for flag in [
        "--config",
        "--grpc-gid",
        "--log-level",
        "--insecure-registry",
    ] {
        assert!(body.contains(flag), "{flag} missing:\n{body}");
    }
    assert!(body.contains("berthd(8)"), "{body}");
}
