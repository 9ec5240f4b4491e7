// Shared by the build scripts of both packages (included with `include!`).
// torch-sys links libtorch from the Python wheel but does not tell the loader where it lives;
// embedding an rpath lets binaries and test executables run from a plain shell with no
// LD_LIBRARY_PATH. torch-sys publishes the directory as DEP_TCH_LIBTORCH_LIB (its `links = "tch"`).
fn emit_torch_rpath() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
