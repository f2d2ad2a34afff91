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
/// streaming server, when `CRICTL` names a crictl binary (the conformance
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
    // terminal's size, which the command sees. (The `sleep 1`: a command
    // that reads its terminal in its first moments gets an error from
    // `stty` today; reported, not fixed here.)
    if std::path::Path::new("/usr/bin/script").exists() {
        let cmd = format!(
            "stty cols 91 rows 17; {crictl} -r {endpoint} exec -it {httpd} sh -c 'sleep 1; stty size; exit 0'"
        );
        // stdin stays open (a closed one would half-close the session's).
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 4 | script -qec \"$0\" /dev/null", &cmd])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("17 91"), "{out:?}");
        assert!(out.status.success(), "{out:?}");
    }

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
