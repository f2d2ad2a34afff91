//! Running one CNI plugin binary, per the CNI spec: the CNI_* environment,
//! the plugin's config on stdin, its result (or its error document) on
//! stdout. Plugins run under tokio with a time limit; a plugin still
//! running at the limit is killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::error::Error;
use super::Result;

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// attach
    Add,
    /// verify an attachment
    Check,
    /// detach
    Del,
}

impl Command {
    /// The CNI_COMMAND value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
        }
    }
}

/// What one plugin call is about (everything but the config on stdin).
#[derive(Debug, Clone)]
pub(crate) struct Call<'a> {
    pub(crate) command: Command,
    pub(crate) container_id: &'a str,
    /// `None` (passed as empty) for a DEL whose netns is gone.
    pub(crate) netns: Option<&'a Path>,
    pub(crate) ifname: &'a str,
    /// `K=V;K=V`, possibly empty.
    pub(crate) cni_args: &'a str,
}

/// Finds and runs plugins.
#[derive(Debug, Clone)]
pub(crate) struct Invoker {
    pub(crate) bin_dirs: Vec<PathBuf>,
    pub(crate) timeout: Duration,
}

impl Invoker {
    /// The binary for plugin `plugin_type`: the first bin dir holding an
    /// executable file of that name.
    pub(crate) fn find(&self, plugin_type: &str) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        for dir in &self.bin_dirs {
            let candidate = dir.join(plugin_type);
            if let Ok(meta) = std::fs::metadata(&candidate) {
                if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                    return Ok(candidate);
                }
            }
        }
        Err(Error::PluginNotFound {
            plugin: plugin_type.into(),
            dirs: self.bin_dirs.clone(),
        })
    }

    /// CNI_PATH: the bin dirs, colon-separated.
    fn cni_path(&self) -> String {
        let dirs: Vec<String> = self
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(":")
    }

    /// Runs plugin `plugin_type` (found in the bin dirs) with `stdin` as its
    /// config; returns its stdout parsed as JSON on success (for ADD), or
    /// `Value::Null` when it printed nothing (CHECK and DEL).
    pub(crate) async fn run(
        &self,
        plugin_type: &str,
        call: &Call<'_>,
        stdin: &[u8],
    ) -> Result<Value> {
        let binary = self.find(plugin_type)?;
        let command = call.command.as_str();
        let exec_err = |reason: String| Error::PluginExec {
            plugin: plugin_type.into(),
            command,
            reason,
        };
        let netns = call
            .netns
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        // The environment is inherited (plugins need PATH for iptables and
        // friends), then the CNI variables are set, as libcni does.
        let mut child = tokio::process::Command::new(&binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", call.container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", call.ifname)
            .env("CNI_ARGS", call.cni_args)
            .env("CNI_PATH", self.cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| exec_err(format!("spawn {}: {e}", binary.display())))?;
        let mut input = child.stdin.take().expect("stdin was piped");
        let feed = async move {
            // A plugin that exits without reading its config is not our
            // error to report: its exit status says what happened.
            let _ = input.write_all(stdin).await;
            drop(input);
        };
        let run = async { tokio::join!(feed, child.wait_with_output()).1 };
        let output = match tokio::time::timeout(self.timeout, run).await {
            Ok(out) => out.map_err(|e| exec_err(format!("wait: {e}")))?,
            Err(_) => {
                // dropping the child future killed it (kill_on_drop)
                return Err(Error::Timeout {
                    plugin: plugin_type.into(),
                    command,
                    after: self.timeout,
                });
            }
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.trim().is_empty() {
            tracing::debug!(plugin = plugin_type, command, stderr = %stderr.trim(), "cni plugin stderr");
        }
        if output.status.success() {
            if output.stdout.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&output.stdout)
                .map_err(|e| exec_err(format!("unreadable output: {e}")));
        }
        Err(plugin_failure(
            plugin_type,
            command,
            &output.stdout,
            &stderr,
            &output.status,
        ))
    }
}

/// The error for a plugin that exited unsuccessfully: its CNI error
/// document if it printed one, else its exit status and stderr.
fn plugin_failure(
    plugin: &str,
    command: &'static str,
    stdout: &[u8],
    stderr: &str,
    status: &std::process::ExitStatus,
) -> Error {
    if let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(stdout) {
        if let Some(code) = doc.get("code").and_then(Value::as_u64) {
            let text = |k: &str| {
                doc.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            return Error::Plugin {
                plugin: plugin.into(),
                command,
                code: code.try_into().unwrap_or(u32::MAX),
                msg: text("msg"),
                details: text("details"),
            };
        }
    }
    let mut reason = status.to_string();
    let said = if stderr.trim().is_empty() {
        String::from_utf8_lossy(stdout).trim().to_owned()
    } else {
        stderr.trim().to_owned()
    };
    if !said.is_empty() {
        let tail: String = said
            .chars()
            .rev()
            .take(1024)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        reason = format!("{reason}: {tail}");
    }
    Error::PluginExec {
        plugin: plugin.into(),
        command,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fake plugin: a shell script that records its environment and
    /// stdin next to itself and prints `out` (exit `code`).
    pub(crate) fn fake_plugin(dir: &Path, name: &str, out: &str, code: i32) -> PathBuf {
        let path = dir.join(name);
        let log = dir.join(format!("{name}.log"));
        let script = format!(
            "#!/bin/sh\nenv | grep ^CNI_ | sort > '{log}.env'\ncat > '{log}.stdin'\nprintf '%s' '{out}'\nexit {code}\n",
            log = log.display(),
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn invoker(dir: &Path) -> Invoker {
        Invoker {
            bin_dirs: vec![dir.join("missing"), dir.to_path_buf()],
            timeout: Duration::from_secs(10),
        }
    }

    fn call(command: Command) -> Call<'static> {
        Call {
            command,
            container_id: "c1",
            netns: Some(Path::new("/run/x/netns/c1")),
            ifname: "eth0",
            cni_args: "IgnoreUnknown=1;K8S_POD_NAME=p",
        }
    }

    #[tokio::test]
    async fn passes_env_and_stdin_and_reads_the_result() {
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(dir.path(), "good", r#"{"cniVersion":"1.0.0"}"#, 0);
        let inv = invoker(dir.path());
        let out = inv
            .run("good", &call(Command::Add), b"{\"x\":1}")
            .await
            .unwrap();
        assert_eq!(out["cniVersion"], "1.0.0");
        let env = std::fs::read_to_string(dir.path().join("good.log.env")).unwrap();
        for want in [
            "CNI_COMMAND=ADD",
            "CNI_CONTAINERID=c1",
            "CNI_NETNS=/run/x/netns/c1",
            "CNI_IFNAME=eth0",
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=p",
        ] {
            assert!(env.lines().any(|l| l == want), "{want} in {env}");
        }
        let path_line = format!(
            "CNI_PATH={}:{}",
            dir.path().join("missing").display(),
            dir.path().display()
        );
        assert!(env.lines().any(|l| l == path_line), "{env}");
        let stdin = std::fs::read_to_string(dir.path().join("good.log.stdin")).unwrap();
        assert_eq!(stdin, "{\"x\":1}");
    }

    #[tokio::test]
    async fn empty_output_is_null_and_netns_may_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(dir.path(), "quiet", "", 0);
        let mut c = call(Command::Del);
        c.netns = None;
        let out = invoker(dir.path()).run("quiet", &c, b"{}").await.unwrap();
        assert!(out.is_null());
        let env = std::fs::read_to_string(dir.path().join("quiet.log.env")).unwrap();
        assert!(env.lines().any(|l| l == "CNI_NETNS="), "{env}");
        assert!(env.lines().any(|l| l == "CNI_COMMAND=DEL"), "{env}");
    }

    #[tokio::test]
    async fn cni_error_documents_become_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(
            dir.path(),
            "bad",
            r#"{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}"#,
            1,
        );
        let e = invoker(dir.path())
            .run("bad", &call(Command::Add), b"{}")
            .await
            .unwrap_err();
        match &e {
            Error::Plugin {
                code,
                msg,
                details,
                plugin,
                command,
            } => {
                assert_eq!(
                    (*code, msg.as_str(), details.as_str()),
                    (7, "invalid config", "no bridge")
                );
                assert_eq!((plugin.as_str(), *command), ("bad", "ADD"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.kind(), super::super::ErrorKind::InvalidArgument);
    }

    #[tokio::test]
    async fn other_failures_carry_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crash");
        std::fs::write(&path, "#!/bin/sh\necho 'it broke' >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = invoker(dir.path())
            .run("crash", &call(Command::Add), b"{}")
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("exit status: 3") && text.contains("it broke"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn missing_plugin_names_it_and_the_dirs() {
        let dir = tempfile::tempdir().unwrap();
        // not executable: not a plugin
        std::fs::write(dir.path().join("noexec"), "").unwrap();
        let inv = invoker(dir.path());
        for name in ["nosuch", "noexec"] {
            match inv.run(name, &call(Command::Add), b"{}").await.unwrap_err() {
                Error::PluginNotFound { plugin, dirs } => {
                    assert_eq!(plugin, name);
                    assert_eq!(dirs, inv.bin_dirs);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_plugin_over_its_time_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow");
        std::fs::write(&path, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut inv = invoker(dir.path());
        inv.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let e = inv
            .run("slow", &call(Command::Add), b"{}")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
