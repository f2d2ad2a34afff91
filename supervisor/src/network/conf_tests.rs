use super::*;

const LIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}"#;

const CONF: &str = r#"{"cniVersion": "0.4.0", "name": "single", "type": "bridge"}"#;

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    p
}

fn reason(e: Error) -> String {
    match e {
        Error::InvalidConfig { reason, .. } => reason,
        other => panic!("not InvalidConfig: {other:?}"),
    }
}

#[test]
fn conflist_parses_with_capabilities() {
    let list = ConfList::from_list_bytes(LIST.as_bytes(), Path::new("x.conflist")).unwrap();
    assert_eq!(list.name, "pods");
    assert_eq!(list.cni_version, "1.0.0");
    assert!(!list.disable_check);
    let types: Vec<_> = list
        .plugins
        .iter()
        .map(|p| p.plugin_type.as_str())
        .collect();
    assert_eq!(types, ["bridge", "portmap"]);
    assert_eq!(
        list.plugins[1].capabilities.get("portMappings"),
        Some(&true)
    );
    assert_eq!(list.plugins[0].raw["bridge"], "cni0");
    // round trip through the cached form
    let again = ConfList::from_value(&list.to_value(), Path::new("cache")).unwrap();
    assert_eq!(again.plugins, list.plugins);
    assert_eq!(again.name, list.name);
}

#[test]
fn single_conf_is_wrapped_as_a_list() {
    let list = ConfList::from_conf_bytes(CONF.as_bytes(), Path::new("10.conf")).unwrap();
    assert_eq!(list.name, "single");
    assert_eq!(list.plugins.len(), 1);
    assert_eq!(list.plugins[0].plugin_type, "bridge");
    assert!(list.supports_check());
}

#[test]
fn validation_errors_name_the_problem() {
    let p = Path::new("bad.conflist");
    let r = reason(ConfList::from_list_bytes(b"{not json", p).unwrap_err());
    assert!(r.contains("malformed JSON"), "{r}");
    let r = reason(ConfList::from_list_bytes(b"[]", p).unwrap_err());
    assert!(r.contains("not a JSON object"), "{r}");
    let r = reason(
        ConfList::from_list_bytes(br#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#, p)
            .unwrap_err(),
    );
    assert!(r.contains("missing \"name\""), "{r}");
    let r = reason(
        ConfList::from_list_bytes(br#"{"name":"n","plugins":[{"type":"x"}]}"#, p).unwrap_err(),
    );
    assert!(r.contains("missing \"cniVersion\""), "{r}");
    let r = reason(
        ConfList::from_list_bytes(
            br#"{"name":"n","cniVersion":"0.2.0","plugins":[{"type":"x"}]}"#,
            p,
        )
        .unwrap_err(),
    );
    assert!(r.contains("\"0.2.0\" is not supported"), "{r}");
    let r = reason(
        ConfList::from_list_bytes(br#"{"name":"n","cniVersion":"1.0.0","plugins":[{}]}"#, p)
            .unwrap_err(),
    );
    assert!(r.contains("plugins[0]: missing \"type\""), "{r}");
    let r = reason(
        ConfList::from_list_bytes(
            br#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../x"}]}"#,
            p,
        )
        .unwrap_err(),
    );
    assert!(r.contains("not a plugin name"), "{r}");
    let r = reason(
        ConfList::from_list_bytes(br#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#, p)
            .unwrap_err(),
    );
    assert!(r.contains("empty"), "{r}");
    let r = reason(
        ConfList::from_list_bytes(br#"{"name":"a/b","cniVersion":"1.0.0","plugins":[]}"#, p)
            .unwrap_err(),
    );
    assert!(r.contains("network name"), "{r}");
    let r = reason(ConfList::from_conf_bytes(LIST.as_bytes(), Path::new("x.conf")).unwrap_err());
    assert!(r.contains(".conflist extension"), "{r}");
    let e = ConfList::from_list_bytes(b"{", p).unwrap_err();
    assert!(
        e.to_string().starts_with("cni config bad.conflist: "),
        "{e}"
    );
}

#[test]
fn first_valid_file_in_name_order_wins() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load_first(dir.path()).unwrap().list.is_none());
    write(dir.path(), "30-later.conflist", LIST);
    write(dir.path(), "20-single.conf", CONF);
    write(dir.path(), "10-broken.conflist", "{");
    write(dir.path(), "05-ignored.txt", LIST);
    fs::create_dir(dir.path().join("00-dir.conflist")).unwrap();
    let loaded = load_first(dir.path()).unwrap();
    assert_eq!(loaded.list.as_ref().unwrap().name, "single");
    assert_eq!(loaded.rejected.len(), 1);
    assert!(loaded.rejected[0].0.ends_with("10-broken.conflist"));
    assert!(loaded.detail().contains("malformed JSON"));

    assert_eq!(load_by_name(dir.path(), "pods").unwrap().plugins.len(), 2);
    assert!(matches!(
        load_by_name(dir.path(), "nope"),
        Err(Error::NetworkNotFound { .. })
    ));
}

#[test]
fn only_invalid_files_leave_no_network_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "10-broken.conflist", r#"{"name":"x"}"#);
    let loaded = load_first(dir.path()).unwrap();
    assert!(loaded.list.is_none());
    assert!(
        loaded.detail().contains("cniVersion"),
        "{}",
        loaded.detail()
    );
}

#[test]
fn missing_dir_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("nope");
    assert!(conf_files(&gone).unwrap().is_empty());
    assert!(fingerprint(&gone).unwrap().is_empty());
}

#[test]
fn fingerprint_changes_with_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let before = fingerprint(dir.path()).unwrap();
    let p = write(dir.path(), "10.conflist", LIST);
    let one = fingerprint(dir.path()).unwrap();
    assert_ne!(before, one);
    assert_eq!(one, fingerprint(dir.path()).unwrap());
    fs::write(&p, CONF).unwrap();
    assert_ne!(one, fingerprint(dir.path()).unwrap());
}

#[test]
fn identifiers_follow_libcni() {
    validate_container_id("abc123_x.y-z").unwrap();
    for bad in ["", "-lead", "a/b", "a b", "a;b"] {
        assert!(validate_container_id(bad).is_err(), "{bad:?}");
    }
    validate_ifname("eth0").unwrap();
    for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
        assert!(validate_ifname(bad).is_err(), "{bad:?}");
    }
}
