//! Issue 17: `[grpc] gid` grants a group berthd's socket, as containerd's
//! config does. A system user in that group runs `berthctl version`; one
//! outside it is refused. The accounts are made for the test and removed
//! after it, also when it fails.

mod cli_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use berth_tests::{require_root, require_tool, Berthd};
use cli_support::{copy_bin, text, TempAccounts};

#[test]
fn a_member_of_the_socket_group_may_call_berthd_others_may_not() {
    if !require_root("socket_group") || !require_tool("socket_group", "setpriv") {
        return;
    }
    let pid = std::process::id();
    let mut accounts = TempAccounts::default();
    let group = format!("bcli{pid}");
    let gid = accounts.group(&group);
    let member = format!("bclim{pid}");
    let outsider = format!("bclio{pid}");
    let member_uid = accounts.user(&member, Some(&group));
    let outsider_uid = accounts.user(&outsider, None);

    let etc = tempfile::tempdir().unwrap();
    std::fs::set_permissions(etc.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = etc.path().join("config.toml");
    std::fs::write(&config, format!("[grpc]\ngid = {gid}\n")).unwrap();
    let berthctl = copy_bin("berthctl", etc.path());

    let d = Berthd::start_with(&["--config", config.to_str().unwrap()]);
    // The socket: 0660, root and the configured group.
    let meta = std::fs::metadata(d.address()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, gid));
    // Let others reach the socket's directory (the harness makes it 0700).
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();

    let as_user = |uid: u32| {
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg("--regid=nogroup")
            .arg("--init-groups")
            .arg(&berthctl)
            .arg("--address")
            .arg(format!("unix://{}", d.address().display()))
            .arg("version")
            .env_remove("BERTH_ADDRESS")
            .current_dir("/")
            .output()
            .unwrap()
    };
    let out = as_user(member_uid);
    let (o, e) = text(&out);
    assert!(out.status.success(), "member refused: {e}");
    assert!(o.contains("Server:"), "{o}");

    let out = as_user(outsider_uid);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(1), "outsider: {o}{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("cannot connect to berthd") && e.contains("Permission denied"),
        "{e}"
    );
}
