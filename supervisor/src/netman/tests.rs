//! Records, subnets and names without root: conflists land in a temp dir,
//! nothing is attached.

use super::*;

fn manager(dir: &Path, pool: &str) -> NetworkManager {
    let store = Store::open(&dir.join("root")).unwrap();
    NetworkManager::new(
        Options {
            conf_dir: dir.join("conf"),
            cache_dir: dir.join("cache"),
            ipam_dir: dir.join("ipam"),
            bin_dirs: vec!["/usr/lib/cni".into()],
            default_bridge: "berth-ut0".into(),
            default_subnet: "10.91.250.0/24".parse().unwrap(),
            pool: pool.parse().unwrap(),
        },
        store,
    )
}

fn new(name: &str, subnet: Option<&str>) -> NewNetwork {
    NewNetwork {
        name: name.into(),
        subnet: subnet.map(|s| s.parse().unwrap()),
        bridge: Some(format!("berth-ut{}", name.len())),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_list_overlap_remove() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(dir.path(), "10.91.240.0/22");
    let a = m
        .create(new("alpha", Some("10.91.251.0/24")))
        .await
        .unwrap();
    assert_eq!(a.gateway.to_string(), "10.91.251.1");
    assert!(dir.path().join("conf/alpha.conflist").exists());
    // the same name, a subnet that overlaps, a built-in name, a bad name
    let e = m
        .create(new("alpha", Some("10.91.252.0/24")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
    let e = m
        .create(new("beta", Some("10.91.251.128/25")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("overlaps network \"alpha\""), "{e}");
    assert!(m.create(new("bridge", None)).await.is_err());
    assert!(m.create(new("a/b", None)).await.is_err());
    // from the pool: the first free /24
    let b = m.create(new("pooled", None)).await.unwrap();
    assert_eq!(b.subnet.to_string(), "10.91.240.0/24");
    let names: Vec<String> = m
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["bridge", "host", "none", "alpha", "pooled"]);
    // by id prefix
    assert_eq!(m.get(&a.id[..10]).await.unwrap().name, "alpha");
    assert_eq!(m.remove("alpha").await.unwrap(), "alpha");
    assert!(!dir.path().join("conf/alpha.conflist").exists());
    assert!(matches!(m.remove("alpha").await, Err(Error::NotFound(_))));
    assert!(m.remove("bridge").await.is_err());
    assert_eq!(m.prune().await.unwrap(), ["pooled"]);
}
