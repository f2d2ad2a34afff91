//! Compiles proto/ with protox (pure Rust), so building needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    collect("proto", &mut files)?;
    files.sort();
    // The directory too, so added .proto files trigger a rebuild.
    println!("cargo:rerun-if-changed=proto");
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(&files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

fn collect(dir: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let p = path.to_string_lossy().into_owned();
        if path.is_dir() {
            collect(&p, out)?;
        } else if p.ends_with(".proto") {
            out.push(p);
        }
    }
    Ok(())
}
