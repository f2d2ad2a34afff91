//! `berthctl run [OPTIONS] IMAGE [COMMAND [ARG...]]` and `create`, in
//! Docker's shape: the flags become a `berth.containers.v1` create; berthd
//! pulls, names, creates and (for `run`) starts the container.

use std::collections::HashMap;
use std::process::ExitCode;

use berth_api::berth_containers::v1 as pb;

use super::registry_progress::{Bars, Direction};
use super::Ctx;
use crate::error::{Error, Result, RpcContext};
use crate::workflows::engine;

/// The options `run` and `create` share.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// a name for the container (default: a generated adjective_noun)
    #[arg(long)]
    pub name: Option<String>,
    /// environment variable KEY=VAL, or KEY to take berthctl's value (repeatable)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// a file of KEY=VAL lines (repeatable)
    #[arg(long = "env-file")]
    pub env_file: Vec<std::path::PathBuf>,
    /// working directory in the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// user[:group], by id or by name from the image
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// replace the image's ENTRYPOINT ("" clears it)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// the container's hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// memory limit: 64m, 1g, 512k or bytes
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// CPUs (0.5 for half of one)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// most processes in the container
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// add a capability (repeatable; ALL)
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// drop a capability (repeatable; ALL)
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// every capability of the host's bounding set and every device
    #[arg(long)]
    pub privileged: bool,
    /// a read-only root filesystem
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// a label KEY=VAL (repeatable)
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// pull the image: missing, always or never
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// a network to join: bridge (default), host, none or a user network (repeatable)
    #[arg(long = "network", visible_alias = "net")]
    pub networks: Vec<String>,
    /// an alias on user networks (repeatable)
    #[arg(long = "network-alias")]
    pub network_aliases: Vec<String>,
    /// publish a port: [IP:]HOSTPORT:PORT[/tcp|udp], or PORT (a free host port)
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// publish every port the image exposes on free host ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// restart policy: no, on-failure[:N], always, unless-stopped
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// log option: max-size=10m, max-file=3 (repeatable, or comma-separated)
    #[arg(long = "log-opt")]
    pub log_opts: Vec<String>,
    /// signal stop sends (default: the image's, else SIGTERM)
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// seconds stop waits before SIGKILL (default 10)
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i32>,
    /// seccomp=unconfined, no-new-privileges[=false] (repeatable)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// a limit NAME=SOFT[:HARD], e.g. nofile=1024:2048 (repeatable)
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// a host device HOST[:CONTAINER[:PERMS]] (repeatable)
    #[arg(long)]
    pub device: Vec<String>,
    /// a volume NAME:/PATH[:ro], an anonymous one /PATH, or a bind /HOST:/PATH[:ro] (repeatable)
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// a mount type=volume|bind|tmpfs,src=,dst=[,readonly] (repeatable)
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// platform of the image (default: this machine's)
    #[arg(long)]
    pub platform: Option<String>,
    /// snapshotter of the rootfs (default: berthd's)
    #[arg(long)]
    pub snapshotter: Option<String>,
    /// OCI runtime binary: runc, crun or a path (default: berthd's)
    #[arg(long = "runtime-binary")]
    pub runtime_binary: Option<String>,
    /// the image: a reference; short names are Docker Hub's (busybox)
    pub image: String,
    /// command and arguments (default: the image's)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `run`: `create`'s options plus how to run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// run in the background and print the container's ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// remove the container when it exits (with -d: berthd removes it)
    #[arg(long)]
    pub rm: bool,
    /// keep stdin open and forward berthctl's
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// a terminal (TERM set, this terminal's size)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// the keys that detach from a foreground run (it runs on)
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// forward signals to the container (without a terminal)
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// the container
    #[command(flatten)]
    pub create: CreateArgs,
}

/// `64m`, `1g`, `512k`, `100b`, `1024`: bytes.
pub fn parse_size(what: &str, v: &str) -> Result<i64> {
    let t = v.trim().to_ascii_lowercase();
    let (num, mul): (&str, i64) = match t.char_indices().last() {
        Some((i, 'b')) => (&t[..i], 1),
        Some((i, 'k')) => (&t[..i], 1 << 10),
        Some((i, 'm')) => (&t[..i], 1 << 20),
        Some((i, 'g')) => (&t[..i], 1 << 30),
        _ => (t.as_str(), 1),
    };
    let bad = || {
        Error::Input(format!(
            "{what} {v:?}: expected a size such as 64m, 1g, 512k or bytes"
        ))
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n <= 0.0 {
        return Err(bad());
    }
    Ok((n * mul as f64) as i64)
}

/// `[IP:]HOSTPORT:PORT[/proto]`, `IP::PORT`, `PORT`.
pub fn parse_publish(v: &str) -> Result<pb::PortMapping> {
    let bad = |why: &str| Error::Input(format!("publish {v:?}: {why}"));
    let (spec, protocol) = match v.rsplit_once('/') {
        Some((s, p)) if matches!(p, "tcp" | "udp" | "sctp") => (s, p.to_string()),
        Some(_) => return Err(bad("the protocol is tcp, udp or sctp")),
        None => (v, "tcp".to_string()),
    };
    let port = |s: &str, what: &str| -> Result<u32> {
        match s.parse::<u16>() {
            Ok(p) if p > 0 || what == "host port" => Ok(p.into()),
            _ => Err(bad(&format!("{what} {s:?} is not a port"))),
        }
    };
    // An IPv6 host address is written in brackets: [::1]:8080:80.
    let (host_ip, rest) = if let Some(r) = spec.strip_prefix('[') {
        let (ip, rest) = r.split_once("]:").ok_or_else(|| bad("unclosed ["))?;
        (ip.to_string(), rest)
    } else {
        match spec.matches(':').count() {
            2 => {
                let (ip, rest) = spec.split_once(':').expect("two colons");
                (ip.to_string(), rest)
            }
            0 | 1 => (String::new(), spec),
            _ => return Err(bad("expected [IP:]HOSTPORT:PORT")),
        }
    };
    if !host_ip.is_empty() && host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(&format!("{host_ip:?} is not an IP address")));
    }
    let (host_port, container_port) = match rest.split_once(':') {
        Some((h, c)) => (
            if h.is_empty() {
                0
            } else {
                port(h, "host port")?
            },
            port(c, "container port")?,
        ),
        None => (0, port(rest, "container port")?),
    };
    Ok(pb::PortMapping {
        host_ip,
        host_port,
        container_port,
        protocol,
    })
}

/// `no`, `on-failure[:N]`, `always`, `unless-stopped`.
fn parse_restart(v: &str) -> Result<pb::RestartPolicy> {
    let (name, n) = match v.split_once(':') {
        Some((name, n)) => (
            name,
            n.parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| Error::Input(format!("restart {v:?}: {n:?} is not a count")))?,
        ),
        None => (v, 0),
    };
    if n > 0 && name != "on-failure" {
        return Err(Error::Input(format!(
            "restart {v:?}: a retry count applies to on-failure only"
        )));
    }
    match name {
        "no" | "on-failure" | "always" | "unless-stopped" => Ok(pb::RestartPolicy {
            name: name.into(),
            max_retries: n,
        }),
        _ => Err(Error::Input(format!(
            "restart {v:?}: expected no, on-failure[:N], always or unless-stopped"
        ))),
    }
}

fn env_line(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        // KEY alone: berthctl's value, or nothing when it has none.
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

impl CreateArgs {
    /// The create request, checked.
    pub fn request(&self, auto_remove: bool) -> Result<pb::CreateRequest> {
        let mut env = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Error::io(format!("read env file {}", f.display()), e))?;
            for l in text.lines().map(str::trim) {
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                env.extend(env_line(l));
            }
        }
        for e in &self.env {
            if e.is_empty() || e.starts_with('=') {
                return Err(Error::Input(format!("env {e:?}: expected KEY=VAL or KEY")));
            }
            env.extend(env_line(e));
        }
        let mut labels = HashMap::new();
        for l in &self.labels {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        let mut log_options = HashMap::new();
        for o in self.log_opts.iter().flat_map(|o| o.split(',')) {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| Error::Input(format!("log-opt {o:?}: expected KEY=VALUE")))?;
            log_options.insert(k.to_string(), v.to_string());
        }
        let mut ulimits = Vec::new();
        for u in &self.ulimit {
            let bad = || Error::Input(format!("ulimit {u:?}: expected NAME=SOFT[:HARD]"));
            let (name, lim) = u.split_once('=').ok_or_else(bad)?;
            let (soft, hard) = lim.split_once(':').unwrap_or((lim, lim));
            ulimits.push(pb::Ulimit {
                name: name.to_string(),
                soft: soft.parse().map_err(|_| bad())?,
                hard: hard.parse().map_err(|_| bad())?,
            });
        }
        let devices = self
            .device
            .iter()
            .map(|d| {
                let mut it = d.splitn(3, ':');
                pb::Device {
                    host_path: it.next().unwrap_or_default().to_string(),
                    container_path: it.next().unwrap_or_default().to_string(),
                    permissions: it.next().unwrap_or_default().to_string(),
                }
            })
            .collect();
        let mut mounts = Vec::new();
        for v in &self.volumes {
            mounts.push(parse_volume(v)?);
        }
        for m in &self.mounts {
            mounts.push(parse_mount(m)?);
        }
        let memory = match &self.memory {
            Some(m) => parse_size("memory", m)?,
            None => 0,
        };
        let ports = self
            .publish
            .iter()
            .map(|p| parse_publish(p))
            .collect::<Result<Vec<_>>>()?;
        let pull = match self.pull.as_str() {
            "always" => pb::PullPolicy::PullAlways,
            "never" => pb::PullPolicy::PullNever,
            _ => pb::PullPolicy::PullMissing,
        };
        let config = pb::ContainerConfig {
            name: self.name.clone().unwrap_or_default(),
            image: self.image.clone(),
            cmd: self.command.clone(),
            entrypoint: self
                .entrypoint
                .iter()
                .filter(|e| !e.is_empty())
                .cloned()
                .collect(),
            entrypoint_set: self.entrypoint.is_some(),
            env,
            working_dir: self.workdir.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            hostname: self.hostname.clone().unwrap_or_default(),
            memory,
            cpus: self.cpus.unwrap_or(0.0),
            pids_limit: self.pids_limit.unwrap_or(0),
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            devices,
            ulimits,
            read_only: self.read_only,
            labels,
            security_opt: self.security_opt.clone(),
            restart: Some(parse_restart(&self.restart)?),
            auto_remove,
            networks: self.networks.clone(),
            network_aliases: self.network_aliases.clone(),
            ports,
            publish_all: self.publish_all,
            log: Some(pb::LogConfig {
                driver: "json-file".into(),
                options: log_options,
            }),
            mounts,
            stop_signal: self.stop_signal.clone().unwrap_or_default(),
            stop_timeout: self.stop_timeout.unwrap_or(0),
            stop_timeout_set: self.stop_timeout.is_some(),
            platform: self.platform.clone().unwrap_or_default(),
            snapshotter: self.snapshotter.clone().unwrap_or_default(),
            runtime_binary: self.runtime_binary.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(pb::CreateRequest {
            config: Some(config),
            pull: pull as i32,
            ..Default::default()
        })
    }
}

/// `-v`: `/PATH` (an anonymous volume), `NAME:/PATH[:OPTS]` (a named
/// volume) or `HOST:/PATH[:OPTS]` (a bind: a host side with a `/` or a
/// leading `.`; berthd refuses a relative one); OPTS: ro, rw, nocopy.
fn parse_volume(v: &str) -> Result<pb::Mount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        _ => {
            return Err(Error::Input(format!(
                "volume {v:?}: expected [NAME|/HOST:]/PATH[:ro]"
            )))
        }
    };
    let mut m = pb::Mount {
        r#type: if source.is_empty()
            || !(source.contains('/') || source.starts_with('.') || source.starts_with('~'))
        {
            "volume"
        } else {
            "bind"
        }
        .into(),
        source: source.into(),
        target: target.into(),
        ..Default::default()
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.readonly = true,
            "rw" => m.readonly = false,
            "nocopy" => m.options.push("nocopy".into()),
            "z" | "Z" => {}
            other => {
                return Err(Error::Input(format!(
                    "volume {v:?}: unknown option {other:?} (ro, rw, nocopy)"
                )))
            }
        }
    }
    Ok(m)
}

/// `--mount type=volume|bind|tmpfs,src=,dst=[,readonly][,volume-nocopy][,tmpfs-size=]`.
fn parse_mount(spec: &str) -> Result<pb::Mount> {
    let mut m = pb::Mount {
        r#type: "volume".into(),
        ..Default::default()
    };
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => m.r#type = v.to_string(),
            "src" | "source" => m.source = v.to_string(),
            "dst" | "destination" | "target" => m.target = v.to_string(),
            "readonly" | "ro" => m.readonly = matches!(v, "" | "true" | "1"),
            "volume-nocopy" => m.options.push("nocopy".into()),
            "tmpfs-size" => m.options.push(format!("size={v}")),
            "tmpfs-mode" => m.options.push(format!("mode={v}")),
            "bind-propagation" => m.options.push(v.to_string()),
            _ => {
                return Err(Error::Input(format!(
                    "mount {spec:?}: unknown field {k:?} (type, src, dst, readonly, volume-nocopy, tmpfs-size, tmpfs-mode, bind-propagation)"
                )))
            }
        }
    }
    if !matches!(m.r#type.as_str(), "volume" | "bind" | "tmpfs") {
        return Err(Error::Input(format!(
            "mount {spec:?}: type must be volume, bind or tmpfs"
        )));
    }
    if m.target.is_empty() {
        return Err(Error::Input(format!("mount {spec:?}: dst is required")));
    }
    Ok(m)
}

/// Creates the container, drawing the pull's progress on stderr.
async fn create_with_progress(ctx: &Ctx, req: pb::CreateRequest) -> Result<pb::Created> {
    let mut bars: Option<Bars> = None;
    let created = engine::create(&ctx.client, req, |p| {
        bars.get_or_insert_with(|| Bars::new(Direction::Pull))
            .update(p.state, &p.blobs, p.bytes_done, p.bytes_total)
    })
    .await;
    if let Some(b) = bars {
        b.finish();
    }
    let created = created?;
    for w in &created.warnings {
        eprintln!("berthctl: warning: {w}");
    }
    Ok(created)
}

/// `create`: prints the new container's ID.
pub async fn create(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    let created = create_with_progress(ctx, args.request(false)?).await?;
    ctx.out.object(
        &serde_json::json!({"id": created.id, "name": created.name, "image": created.image}),
        |_| format!("{}\n", created.id),
    )
}

/// Removes a container a `run` made and could not start: run is one
/// step (create + start keeps it, as Docker does).
async fn remove_unstarted(ctx: &Ctx, id: &str) {
    let _ = ctx
        .client
        .engine()
        .remove(pb::RemoveRequest {
            container: id.to_string(),
            force: true,
            volumes: false,
        })
        .await;
}

/// `run`: create, start; detached, print the ID; else stay attached
/// (stdin with -i, a terminal with -t) until it exits, with its exit code,
/// or until the detach keys.
pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    let detach_keys = engine::parse_detach_keys(&args.detach_keys)?;
    let mut req = args.create.request(args.rm)?;
    if let Some(c) = req.config.as_mut() {
        c.open_stdin = args.interactive;
        c.tty = args.tty;
        if let Some((w, h)) = args.tty.then(crate::tty::size).flatten() {
            c.tty_width = w.into();
            c.tty_height = h.into();
        }
    }
    let created = create_with_progress(ctx, req).await?;
    if args.detach {
        let started = ctx
            .client
            .engine()
            .start(pb::StartRequest {
                container: created.id.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("start container {}", created.name));
        if let Err(e) = started {
            remove_unstarted(ctx, &created.id).await;
            return Err(e);
        }
        ctx.out.object(
            &serde_json::json!({"id": created.id, "name": created.name}),
            |_| format!("{}\n", created.id),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let opts = engine::AttachOptions {
        stdin: args.interactive,
        tty: args.tty,
        start: true,
        detach_keys,
        sig_proxy: args.sig_proxy,
    };
    match engine::attach(&ctx.client, &created.id, &opts).await {
        Ok(engine::AttachEnd::Exited(code)) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        Ok(engine::AttachEnd::Detached) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            if matches!(&e, crate::error::Error::Rpc { what, .. } if what.starts_with("start container"))
            {
                remove_unstarted(ctx, &created.id).await;
            }
            Err(e)
        }
    }
}

/// `attach` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// do not forward stdin
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// the keys that detach (the container runs on)
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// forward signals to the container (without a terminal)
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// the container
    pub container: String,
}

/// `attach`: follows a container's output (and feeds its stdin) until it
/// stops or the detach keys; exits with its code.
pub async fn attach(ctx: &Ctx, a: AttachArgs) -> Result<ExitCode> {
    let info = ctx
        .client
        .engine()
        .inspect(pb::InspectRequest {
            container: a.container.clone(),
        })
        .await
        .with_context(|| format!("inspect container {:?}", a.container))?
        .into_inner();
    let doc: serde_json::Value = serde_json::from_str(&info.json).unwrap_or_default();
    let tty = doc["Config"]["Tty"].as_bool().unwrap_or(false);
    let open_stdin = doc["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let opts = engine::AttachOptions {
        stdin: open_stdin && !a.no_stdin,
        tty,
        start: false,
        detach_keys: engine::parse_detach_keys(&a.detach_keys)?,
        sig_proxy: a.sig_proxy,
    };
    match engine::attach(&ctx.client, &info.id, &opts).await? {
        engine::AttachEnd::Exited(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        engine::AttachEnd::Detached => Ok(ExitCode::SUCCESS),
    }
}

/// `exec` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// keep stdin open and forward berthctl's
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// a terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// environment variable KEY=VAL, or KEY to take berthctl's value (repeatable)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// the working directory (absolute)
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// user[:group], names or numbers
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// the container
    pub container: String,
    /// the command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// `exec`: runs a command in a running container through berthd; exits
/// with its exit code.
pub async fn exec(ctx: &Ctx, a: ExecArgs) -> Result<ExitCode> {
    let mut env = Vec::new();
    for e in &a.env {
        if e.is_empty() || e.starts_with('=') {
            return Err(Error::Input(format!("env {e:?}: expected KEY=VAL or KEY")));
        }
        env.extend(env_line(e));
    }
    let size = if a.tty { crate::tty::size() } else { None };
    let start = pb::ExecStart {
        container: a.container,
        cmd: a.cmd,
        env,
        working_dir: a.workdir.unwrap_or_default(),
        user: a.user.unwrap_or_default(),
        tty: a.tty,
        stdin: a.interactive,
        tty_width: size.map(|s| s.0.into()).unwrap_or(0),
        tty_height: size.map(|s| s.1.into()).unwrap_or(0),
    };
    let code = engine::exec(&ctx.client, start).await?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("m", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("m", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("m", "512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("m", "1024").unwrap(), 1024);
        assert_eq!(parse_size("m", "1.5m").unwrap(), 3 << 19);
        let e = parse_size("memory", "12q").unwrap_err().to_string();
        assert!(e.contains("memory \"12q\""), "{e}");
        assert!(parse_size("m", "-1m").is_err());
        assert!(parse_size("m", "").is_err());
    }

    #[test]
    fn published_ports() {
        let p = parse_publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(
            (
                p.host_ip.as_str(),
                p.host_port,
                p.container_port,
                p.protocol.as_str()
            ),
            ("127.0.0.1", 8080, 80, "tcp")
        );
        let p = parse_publish("8080:80/udp").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (8080, 80, "udp")
        );
        let p = parse_publish("80").unwrap();
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!((p.host_ip.as_str(), p.host_port), ("127.0.0.1", 0));
        let p = parse_publish("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip, "::1");
        assert!(parse_publish("x:1:2").is_err());
        assert!(parse_publish("1:2/icmp").is_err());
        assert!(parse_publish("70000:80").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(parse_restart("on-failure:2").unwrap().max_retries, 2);
        assert_eq!(parse_restart("always").unwrap().name, "always");
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
    }
}
