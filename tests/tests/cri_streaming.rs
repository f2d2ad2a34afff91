//! CRI streaming (issue 14) against a real berthd: Exec and PortForward
//! answer a URL on berthd's streaming server, and a SPDY client written in
//! the test crate from the protocol description (`berth_tests::spdy`)
//! drives the sessions: exec with and without a tty (output, stdin echo,
//! stdin half-close, exit code in the v4 Status, resize seen by
//! `stty size`), port-forward to a busybox httpd in a pod (20 concurrent
//! connections of 1 MiB each, intact), and tokens used twice or made up
//! refused with 404.

use std::collections::HashMap;
use std::time::Duration;

use berth_tests::cri::CriRig as Rig;
use berth_tests::cri::{container_config, create_start, free_port, http_get, pod_config, run_pod};
use berth_tests::spdy::{Client, Event};
use k8s_cri::v1 as cri;

const V4: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The 1 MiB the httpd serves as /big.
fn big() -> Vec<u8> {
    b"berth\n".iter().copied().cycle().take(1 << 20).collect()
}

/// Waits for the SYN_REPLY of `id` (true), or its reset (false).
fn replied(c: &Client, id: u32) -> bool {
    loop {
        match c
            .events
            .recv_timeout(Duration::from_secs(20))
            .expect("an answer to SYN_STREAM")
        {
            Event::Reply(i) if i == id => return true,
            Event::Reset(i, _) if i == id => return false,
            Event::Closed | Event::GoAway => return false,
            _ => {}
        }
    }
}

fn status_of(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(bytes)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn exec_and_port_forward_over_spdy() {
    berth_tests::requires_root(&["runc", "ctr", "ip", "iptables-save"]);
    let rig = Rig::new("bcri14", "10.90.14.0/24");
    let mut c = rig.client().await;
    let port = free_port();
    let logs = rig.log_dir("stream");
    let pod_cfg = pod_config("stream", &logs, port);
    let pod = run_pod(&mut c, &pod_cfg).await;
    let httpd = create_start(
        &mut c,
        &pod,
        &pod_cfg,
        container_config(
            "httpd",
            &["sh", "-c", "mkdir -p /www && echo hello-berth > /www/index.html && yes berth | head -c 1048576 > /www/big && exec httpd -f -p 80 -h /www"],
        ),
    )
    .await;
    http_get(&format!("127.0.0.1:{port}"));

    let exec_url = |cmd: &[&str], tty: bool, stdin: bool| cri::ExecRequest {
        container_id: httpd.clone(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    };

    // Exec without a tty: stdin to EOF, stdout and stderr apart, exit 3.
    let url = c
        .runtime
        .exec(exec_url(
            &["sh", "-c", "cat; echo out; echo err >&2; exit 3"],
            false,
            true,
        ))
        .await
        .expect("Exec")
        .into_inner()
        .url;
    let mut s = Client::connect(&url, V4).expect("upgrade");
    assert_eq!(s.protocol, "v4.channel.k8s.io");
    let error = s.open(&[("streamtype", "error")]);
    let stdin = s.open(&[("streamtype", "stdin")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let stderr = s.open(&[("streamtype", "stderr")]);
    s.send(stdin, b"hello from stdin\n", false);
    s.send(stdin, b"", true);
    let got = s.collect(Duration::from_secs(30));
    let text = |id: u32| {
        String::from_utf8_lossy(&got.get(&id).map(|g| g.0.clone()).unwrap_or_default()).into_owned()
    };
    assert_eq!(text(stdout), "hello from stdin\nout\n");
    assert_eq!(text(stderr), "err\n");
    let st = status_of(&got[&error].0);
    assert_eq!(st["status"], "Failure", "{st}");
    assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
    assert_eq!(st["details"]["causes"][0]["reason"], "ExitCode", "{st}");
    assert_eq!(st["details"]["causes"][0]["message"], "3", "{st}");

    // The token was used: a second session gets 404, nothing runs.
    let again = Client::connect(&url, V4)
        .err()
        .expect("a used token is refused");
    assert_eq!(again.status, 404, "{again:?}");
    let garbage = url.rsplit_once('/').unwrap().0.to_string() + "/0123456789abcdef";
    assert_eq!(
        Client::connect(&garbage, V4)
            .err()
            .expect("made-up token")
            .status,
        404
    );

    // Exec with a tty: the resize reaches the pty before `stty size`.
    let url = c
        .runtime
        .exec(exec_url(
            &["sh", "-c", "read line; echo got:$line; stty size; exit 0"],
            true,
            true,
        ))
        .await
        .expect("Exec tty")
        .into_inner()
        .url;
    let mut s = Client::connect(&url, V4).expect("upgrade");
    let error = s.open(&[("streamtype", "error")]);
    let stdin = s.open(&[("streamtype", "stdin")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let resize = s.open(&[("streamtype", "resize")]);
    for id in [error, stdin, stdout, resize] {
        assert!(replied(&s, id), "stream {id} accepted");
    }
    s.send(resize, br#"{"Width":123,"Height":45}"#, false);
    std::thread::sleep(Duration::from_millis(300));
    s.send(stdin, b"typed\r", false);
    let got = s.collect(Duration::from_secs(30));
    let out = String::from_utf8_lossy(&got[&stdout].0).into_owned();
    assert!(out.contains("typed"), "the tty echoes stdin: {out:?}");
    assert!(out.contains("got:typed"), "{out:?}");
    assert!(out.contains("45 123"), "stty size sees the resize: {out:?}");
    let st = status_of(&got[&error].0);
    assert_eq!(st["status"], "Success", "{st}");

    // Port-forward: 20 connections at once, 1 MiB each, intact.
    let url = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![80],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
    let mut s = Client::connect(&url, &["portforward.k8s.io"]).expect("upgrade");
    assert_eq!(s.protocol, "portforward.k8s.io");
    let mut data_of = HashMap::new();
    let mut error_of = HashMap::new();
    for i in 0..20 {
        let rid = i.to_string();
        let e = s.open(&[("streamtype", "error"), ("port", "80"), ("requestid", &rid)]);
        let d = s.open(&[("streamtype", "data"), ("port", "80"), ("requestid", &rid)]);
        s.send(d, b"GET /big HTTP/1.0\r\n\r\n", false);
        data_of.insert(d, i);
        error_of.insert(e, i);
    }
    // Collect until every data stream ended.
    let mut bodies: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut ended = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while ended < 20 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match s
            .events
            .recv_timeout(left)
            .expect("port-forward data in time")
        {
            Event::Data(id, b, fin) => {
                if data_of.contains_key(&id) {
                    bodies.entry(id).or_default().extend_from_slice(&b);
                    if fin {
                        ended += 1;
                    }
                } else {
                    assert!(
                        b.is_empty(),
                        "error stream {id}: {:?}",
                        String::from_utf8_lossy(&b)
                    );
                }
            }
            Event::Closed => panic!("session closed with {ended} of 20 done"),
            _ => {}
        }
    }
    let want = big();
    for (id, body) in &bodies {
        let at = body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP header end")
            + 4;
        assert!(body[..at].starts_with(b"HTTP/1."), "stream {id}");
        assert!(
            body[at..] == want[..],
            "stream {id}: {} bytes, not the 1 MiB served",
            body.len() - at
        );
    }
    assert_eq!(bodies.len(), 20);
    drop(s);

    // A port nobody listens on: the error stream says so.
    let url = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![81],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
    let mut s = Client::connect(&url, &["portforward.k8s.io"]).expect("upgrade");
    let e = s.open(&[("streamtype", "error"), ("port", "81"), ("requestid", "0")]);
    let _d = s.open(&[("streamtype", "data"), ("port", "81"), ("requestid", "0")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut msg = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match s.events.recv_timeout(left).expect("an error message") {
            Event::Data(id, b, fin) if id == e => {
                msg.extend_from_slice(&b);
                if fin {
                    break;
                }
            }
            _ => {}
        }
    }
    let msg = String::from_utf8_lossy(&msg);
    assert!(msg.contains("81"), "{msg}");

    // Bad frames end that session only; the server keeps serving.
    let url = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![80],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let s = Client::connect(&url, &["portforward.k8s.io"]).expect("upgrade");
    s.send_raw(&[
        0x80, 3, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 9,
    ]);
    loop {
        match s
            .events
            .recv_timeout(Duration::from_secs(20))
            .expect("the session ends")
        {
            Event::Closed => break,
            _ => continue,
        }
    }
    let r = c
        .runtime
        .exec(exec_url(&["true"], false, false))
        .await
        .expect("Exec after a bad session");
    assert!(r.into_inner().url.starts_with("http://127.0.0.1:"));

    // 50 sessions leave no fd, exec process or fifo dir behind.
    let pid = rig.d.berthd.pid();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = fds();
    for i in 0..50 {
        let url = c
            .runtime
            .exec(exec_url(&["echo", &format!("n{i}")], false, false))
            .await
            .expect("Exec")
            .into_inner()
            .url;
        let mut s = Client::connect(&url, V4).expect("upgrade");
        let _error = s.open(&[("streamtype", "error")]);
        let stdout = s.open(&[("streamtype", "stdout")]);
        let stderr = s.open(&[("streamtype", "stderr")]);
        let got = s.collect(Duration::from_secs(30));
        assert_eq!(got[&stdout].0, format!("n{i}\n").into_bytes());
        assert!(got.get(&stderr).is_none_or(|g| g.0.is_empty()));
    }
    berth_tests::cri::eventually("berthd's fds back to their count", || fds() <= before + 2);
    let exec_dir = rig.d.berthd.state().join(".cri/exec");
    let left: Vec<_> = std::fs::read_dir(&exec_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "exec dirs left: {left:?}");

    // Unknown containers and pods are refused before any URL.
    let bad = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: "nope".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::NotFound, "{bad:?}");
    let bad = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::NotFound, "{bad:?}");
}

/// Kubernetes' own client (crictl, client-go's SPDY) against berthd's
/// streaming server (exec, attach, port-forward), when `CRICTL` names a crictl binary (the conformance
/// kit's, ../shared/cri/bin/crictl); skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn crictl_exec_and_port_forward() {
    let Ok(crictl) = std::env::var("CRICTL") else {
        eprintln!("CRICTL unset: skipped");
        return;
    };
    berth_tests::requires_root(&["runc", "ctr", "ip", "iptables-save"]);
    let rig = Rig::new("bcri15", "10.90.15.0/24");
    let mut c = rig.client().await;
    let port = free_port();
    let logs = rig.log_dir("kube");
    let pod_cfg = pod_config("kube", &logs, port);
    let pod = run_pod(&mut c, &pod_cfg).await;
    let httpd = create_start(
        &mut c,
        &pod,
        &pod_cfg,
        container_config(
            "httpd",
            &["sh", "-c", "mkdir -p /www && echo hello-berth > /www/index.html && exec httpd -f -p 80 -h /www"],
        ),
    )
    .await;
    http_get(&format!("127.0.0.1:{port}"));
    let endpoint = format!("unix://{}", rig.d.berthd.address().display());
    let run = |args: &[&str], stdin: &[u8]| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(&crictl)
            .args(["-r", &endpoint, "--timeout", "30s"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("crictl");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(
        &["exec", &httpd, "sh", "-c", "echo out; echo err >&2; exit 3"],
        b"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n", "{out:?}");
    // crictl reads the code from the v4 Status and exits 1 saying so.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("err\n"), "{out:?}");
    assert!(stderr.contains("exit code 3"), "{out:?}");
    assert!(!out.status.success(), "{out:?}");
    let out = run(&["exec", "-i", &httpd, "cat"], b"piped through\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "piped through\n",
        "{out:?}"
    );
    assert!(out.status.success(), "{out:?}");

    // exec -it under a pty of its own (script(1)): crictl sends the
    // terminal's size, which the command sees from its first moment (the
    // first size is the process's consoleSize).
    if std::path::Path::new("/usr/bin/script").exists() {
        let cmd =
            format!("stty cols 91 rows 17; {crictl} -r {endpoint} exec -it {httpd} stty size");
        // stdin stays open (a closed one would half-close the session's).
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 4 | script -qec \"$0\" /dev/null", &cmd])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("17 91"), "{out:?}");
        assert!(out.status.success(), "{out:?}");
    }

    // attach -i to a stdin_once `cat`: what crictl pipes in comes back,
    // and the end of its stdin closes the container's.
    let cat = create_start(
        &mut c,
        &pod,
        &pod_cfg,
        cri::ContainerConfig {
            stdin: true,
            stdin_once: true,
            ..container_config("cat", &["sh", "-c", "cat; echo cat-done"])
        },
    )
    .await;
    let out = run(&["attach", "-i", &cat], b"via-crictl\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "via-crictl\ncat-done\n",
        "{out:?}"
    );
    assert!(out.status.success(), "{out:?}");

    let local = free_port();
    let mut pf = std::process::Command::new(&crictl)
        .args([
            "-r",
            &endpoint,
            "port-forward",
            &pod,
            &format!("{local}:80"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("crictl port-forward");
    let body = http_get(&format!("127.0.0.1:{local}"));
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(body.contains("hello-berth"));
}

/// Reads the session's events until stream `id`'s bytes contain `needle`
/// (30 s); everything stream `id` sent so far, as text.
fn read_until(s: &Client, id: u32, needle: &str, seen: &mut Vec<u8>) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = String::from_utf8_lossy(seen).into_owned();
        if text.contains(needle) {
            return text;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match s.events.recv_timeout(left) {
            Ok(Event::Data(i, b, _)) if i == id => seen.extend_from_slice(&b),
            Ok(Event::Closed) | Err(_) => panic!("no {needle:?} on stream {id}: {text:?}"),
            Ok(_) => {}
        }
    }
}

/// Attach to the container's own stdio (issue 14.1): stdin and output of
/// a shell without a tty, stderr apart, detach (stdin's end, or the
/// client going away) leaving the container running, a second attach,
/// the CRI log still written; a tty shell with resize; output-only
/// attach; stdin_once closing the container's stdin; and a tty exec that
/// reads its terminal size at once (14.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn attach_to_a_running_container() {
    berth_tests::requires_root(&["runc", "ctr", "ip", "iptables-save"]);
    let rig = Rig::new("bcri16", "10.90.16.0/24");
    let mut c = rig.client().await;
    let logs = rig.log_dir("attach");
    let pod_cfg = pod_config("attach", &logs, free_port());
    let pod = run_pod(&mut c, &pod_cfg).await;
    let shell = |name: &str, cmd: &[&str], tty: bool, once: bool| cri::ContainerConfig {
        stdin: true,
        stdin_once: once,
        tty,
        ..container_config(name, cmd)
    };
    let attach_url = |c: &mut berth_tests::cri::CriClient, id: &str, stdin: bool, tty: bool| {
        let req = cri::AttachRequest {
            container_id: id.to_string(),
            stdin,
            tty,
            stdout: true,
            stderr: !tty,
        };
        let mut rt = c.runtime.clone();
        async move { rt.attach(req).await.map(|r| r.into_inner().url) }
    };
    let running =
        |st: &cri::ContainerStatus| st.state == cri::ContainerState::ContainerRunning as i32;

    // A shell without a tty, stdin open.
    let sh = create_start(&mut c, &pod, &pod_cfg, shell("sh", &["sh"], false, false)).await;
    let url = attach_url(&mut c, &sh, true, false).await.expect("Attach");
    assert!(url.contains("/attach/"), "{url}");
    let mut s = Client::connect(&url, V4).expect("upgrade");
    let error = s.open(&[("streamtype", "error")]);
    let stdin = s.open(&[("streamtype", "stdin")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let stderr = s.open(&[("streamtype", "stderr")]);
    for id in [error, stdin, stdout, stderr] {
        assert!(replied(&s, id), "stream {id} accepted");
    }
    s.send(stdin, b"echo hi\n", false);
    let mut out = Vec::new();
    read_until(&s, stdout, "hi\n", &mut out);
    s.send(stdin, b"echo oops >&2\n", false);
    let mut err = Vec::new();
    read_until(&s, stderr, "oops\n", &mut err);
    // Detach: the client's stdin ends; the session ends with Success.
    s.send(stdin, b"", true);
    let got = s.collect(Duration::from_secs(30));
    let st = status_of(&got[&error].0);
    assert_eq!(st["status"], "Success", "{st}");
    berth_tests::cri::wait_container(&mut c, &sh, "still running after detach", running).await;

    // A second attach to the same shell; then the client just goes away.
    let url = attach_url(&mut c, &sh, true, false)
        .await
        .expect("Attach again");
    let mut s = Client::connect(&url, V4).expect("upgrade");
    let _error = s.open(&[("streamtype", "error")]);
    let stdin = s.open(&[("streamtype", "stdin")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let _stderr = s.open(&[("streamtype", "stderr")]);
    s.send(stdin, b"echo again\n", false);
    let mut out = Vec::new();
    let text = read_until(&s, stdout, "again\n", &mut out);
    assert!(
        !text.contains("hi"),
        "only output from the attach on: {text:?}"
    );
    drop(s);
    // A third attach; the client leaves without ending stdin.
    let url = attach_url(&mut c, &sh, true, false).await.expect("Attach");
    let mut s = Client::connect(&url, V4).expect("upgrade");
    let _error = s.open(&[("streamtype", "error")]);
    let stdin = s.open(&[("streamtype", "stdin")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let _stderr = s.open(&[("streamtype", "stderr")]);
    s.send(stdin, b"echo third\n", false);
    read_until(&s, stdout, "third\n", &mut Vec::new());
    drop(s);
    berth_tests::cri::wait_container(&mut c, &sh, "running after the client left", running).await;
    let log = logs.join("sh.log");
    berth_tests::cri::eventually("the CRI log has what attach saw", || {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        ["hi", "oops", "again", "third"]
            .iter()
            .all(|w| l.lines().any(|x| x.ends_with(&format!(" F {w}"))))
    });

    // A tty shell: the terminal's size reaches it, its exit ends the session.
    let tty = create_start(&mut c, &pod, &pod_cfg, shell("tty", &["sh"], true, false)).await;
    // The container's tty decides (the request's stderr is dropped).
    let url = attach_url(&mut c, &tty, true, true)
        .await
        .expect("Attach tty");
    let mut s = Client::connect(&url, V4).expect("upgrade");
    let error = s.open(&[("streamtype", "error")]);
    let stdin = s.open(&[("streamtype", "stdin")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let resize = s.open(&[("streamtype", "resize")]);
    for id in [error, stdin, stdout, resize] {
        assert!(replied(&s, id), "stream {id} accepted");
    }
    s.send(resize, br#"{"Width":77,"Height":33}"#, false);
    let mut out = Vec::new();
    // Resizes are applied in order before the next input is written.
    std::thread::sleep(Duration::from_millis(300));
    s.send(stdin, b"stty size\r", false);
    read_until(&s, stdout, "33 77", &mut out);
    s.send(stdin, b"exit\r", false);
    let got = s.collect(Duration::from_secs(30));
    let st = status_of(&got[&error].0);
    assert_eq!(st["status"], "Success", "{st}");
    berth_tests::cri::wait_container(&mut c, &tty, "exited", |st| {
        st.state == cri::ContainerState::ContainerExited as i32
    })
    .await;
    let gone = attach_url(&mut c, &tty, true, true).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::FailedPrecondition, "{gone:?}");

    // Output only, from a container without stdin; the container runs on.
    let ticker = create_start(
        &mut c,
        &pod,
        &pod_cfg,
        container_config(
            "ticker",
            &[
                "sh",
                "-c",
                "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done",
            ],
        ),
    )
    .await;
    let url = attach_url(&mut c, &ticker, false, false)
        .await
        .expect("Attach");
    let mut s = Client::connect(&url, V4).expect("upgrade");
    let _error = s.open(&[("streamtype", "error")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let _stderr = s.open(&[("streamtype", "stderr")]);
    let mut out = Vec::new();
    let text = read_until(&s, stdout, "\n", &mut out);
    let first: u32 = text
        .lines()
        .next()
        .and_then(|n| n.trim_start_matches("tick").parse().ok())
        .unwrap_or_else(|| panic!("{text:?}"));
    read_until(&s, stdout, &format!("tick{}\n", first + 3), &mut out);
    drop(s);
    berth_tests::cri::wait_container(&mut c, &ticker, "running", running).await;

    // stdin_once: the attach's stdin ending closes the container's.
    let once = create_start(
        &mut c,
        &pod,
        &pod_cfg,
        shell("once", &["sh", "-c", "cat; echo after-eof"], false, true),
    )
    .await;
    let url = attach_url(&mut c, &once, true, false)
        .await
        .expect("Attach");
    let mut s = Client::connect(&url, V4).expect("upgrade");
    let error = s.open(&[("streamtype", "error")]);
    let stdin = s.open(&[("streamtype", "stdin")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let _stderr = s.open(&[("streamtype", "stderr")]);
    for id in [error, stdin, stdout] {
        assert!(replied(&s, id), "stream {id} accepted");
    }
    s.send(stdin, b"copied\n", false);
    s.send(stdin, b"", true);
    let got = s.collect(Duration::from_secs(30));
    assert_eq!(
        String::from_utf8_lossy(&got[&stdout].0),
        "copied\nafter-eof\n"
    );
    assert_eq!(status_of(&got[&error].0)["status"], "Success");
    berth_tests::cri::wait_container(&mut c, &once, "exited", |st| {
        st.state == cri::ContainerState::ContainerExited as i32 && st.exit_code == 0
    })
    .await;

    // A tty exec that asks for its size at once sees the client's first
    // resize (sent before the command could run).
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: ticker.clone(),
            cmd: vec!["stty".into(), "size".into()],
            tty: true,
            stdin: false,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("Exec")
        .into_inner()
        .url;
    let mut s = Client::connect(&url, V4).expect("upgrade");
    let error = s.open(&[("streamtype", "error")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let resize = s.open(&[("streamtype", "resize")]);
    s.send(resize, br#"{"Width":123,"Height":45}"#, false);
    let got = s.collect(Duration::from_secs(30));
    let out = String::from_utf8_lossy(&got[&stdout].0).into_owned();
    assert_eq!(out.trim(), "45 123", "{got:?}");
    assert_eq!(status_of(&got[&error].0)["status"], "Success");

    // Attach's rules: a stream is needed, and a made-up container fails.
    let bad = attach_url(&mut c, "nope", true, false).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::NotFound, "{bad:?}");
    let bad = c
        .runtime
        .attach(cri::AttachRequest {
            container_id: sh.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
}

/// A plain-TCP front for a TLS server (the SPDY client speaks plain
/// TCP): each connection to the returned address is relayed over TLS to
/// `server`, verified against `cert` (PEM) for `127.0.0.1`.
async fn tls_front(server: String, cert: &std::path::Path) -> String {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let der = CertificateDer::from_pem_file(cert).expect("the streaming certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("a usable certificate");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut plain, _)) = listener.accept().await {
            let connector = connector.clone();
            let server = server.clone();
            tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(&server).await.unwrap();
                let name = ServerName::try_from("127.0.0.1").unwrap();
                let mut tls = connector
                    .connect(name, tcp)
                    .await
                    .expect("TLS handshake with the self-signed certificate");
                let _ = tokio::io::copy_bidirectional(&mut plain, &mut tls).await;
            });
        }
    });
    front
}

/// `stream_tls = true` (issue 14.3): the URL is https, the server's
/// self-signed certificate (written to STATE/.cri/stream.crt) verifies
/// for 127.0.0.1, an exec runs over TLS, and plain HTTP gets no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn exec_over_tls() {
    berth_tests::requires_root(&["runc", "ctr", "ip", "iptables-save"]);
    let rig = Rig::with_config("bcri17", "10.90.17.0/24", "", "stream_tls = true");
    let mut c = rig.client().await;
    let logs = rig.log_dir("tls");
    let pod_cfg = pod_config("tls", &logs, free_port());
    let pod = run_pod(&mut c, &pod_cfg).await;
    let id = create_start(
        &mut c,
        &pod,
        &pod_cfg,
        container_config("sleeper", &["sleep", "1000"]),
    )
    .await;
    let exec = |cmd: &str| cri::ExecRequest {
        container_id: id.clone(),
        cmd: vec!["sh".into(), "-c".into(), cmd.into()],
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let url = c
        .runtime
        .exec(exec("echo over-tls"))
        .await
        .expect("Exec")
        .into_inner()
        .url;
    let rest = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("{url}"));
    let (server, path) = rest.split_at(rest.find('/').unwrap());
    let cert = rig.d.berthd.state().join(".cri/stream.crt");
    let front = tls_front(server.to_string(), &cert).await;
    let mut s = Client::connect(&format!("http://{front}{path}"), V4).expect("upgrade over TLS");
    let error = s.open(&[("streamtype", "error")]);
    let stdout = s.open(&[("streamtype", "stdout")]);
    let _stderr = s.open(&[("streamtype", "stderr")]);
    let got = s.collect(Duration::from_secs(30));
    assert_eq!(String::from_utf8_lossy(&got[&stdout].0), "over-tls\n");
    assert_eq!(status_of(&got[&error].0)["status"], "Success");

    // Plain HTTP on the TLS port: no answer that upgrades.
    let url = c
        .runtime
        .exec(exec("true"))
        .await
        .expect("Exec")
        .into_inner()
        .url;
    let plain = url.replace("https://", "http://");
    // (A panic reading the TLS alert as HTTP counts as refused too.)
    let refused = std::thread::spawn(move || Client::connect(&plain, V4).is_err())
        .join()
        .unwrap_or(true);
    assert!(refused, "no session over plain HTTP");
}
