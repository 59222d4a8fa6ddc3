//! Links libvpx (for the VP8/VP9 encoder in `src/vpx.rs`) and compiles
//! `src/vpx_layout.c`, which reports the sizes, field offsets and constants
//! of the installed libvpx headers so that `vpx_ffi::check_layout` can
//! compare them with Peep's hand-written bindings.
//!
//! libvpx is found with pkg-config (Debian `libvpx-dev`, Homebrew `libvpx`).
//! Without pkg-config (e.g. the type-check-only macOS run in CI, which never
//! links) the build falls back to plain `-lvpx` and says so.

fn main() {
    println!("cargo:rerun-if-changed=src/vpx_layout.c");
    let mut build = cc::Build::new();
    build.file("src/vpx_layout.c").warnings(true);
    match pkg_config::Config::new().atleast_version("1.8").probe("vpx") {
        Ok(lib) => {
            for dir in &lib.include_paths {
                build.include(dir);
            }
        }
        Err(e) => {
            println!("cargo:warning=pkg-config did not find libvpx ({e}); linking plain -lvpx");
            println!("cargo:rustc-link-lib=vpx");
        }
    }
    build.compile("peep_vpx_layout");
}
