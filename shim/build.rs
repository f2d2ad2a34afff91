// The shim is linked as a position-dependent executable. In a PIE every
// pointer in .data.rel.ro (vtables, static tables: ~230 KiB here) is
// relocated at start-up, which dirties those pages in every shim; with a
// fixed address they stay clean file pages shared by all shims (bench:
// shim private memory).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
