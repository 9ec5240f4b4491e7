// Shared by the build scripts of both packages (included with `include!`).
//
// torch-sys links libtorch from the Python wheel but does not tell the loader where it lives;
// embedding an rpath lets binaries and test executables run from a plain shell with no
// LD_LIBRARY_PATH. torch-sys publishes the directory as DEP_TCH_LIBTORCH_LIB (its `links = "tch"`).
//
// The linker drops libtorch_cuda because no symbol of it is referenced directly (its kernels
// register themselves at load time); without it CUDA is never available. Force it in when the
// wheel ships it.
fn emit_torch_rpath() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
