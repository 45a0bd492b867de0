//! Builds a static OpenSSL for a cross target with openssl-src, exactly as
//! openssl-sys's `vendored` feature does, so that cross/build.sh can link the
//! firmware workspace against it (OPENSSL_STATIC=1) without editing any
//! manifest. Inputs (set by cross/build.sh):
//!   RE6ST_OPENSSL_TARGET  Rust target triple to build OpenSSL for
//!   RE6ST_OPENSSL_OUT     install prefix (gets lib/ and include/)
fn main() {
    for var in ["RE6ST_OPENSSL_TARGET", "RE6ST_OPENSSL_OUT"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let (Ok(target), Ok(out)) = (
        std::env::var("RE6ST_OPENSSL_TARGET"),
        std::env::var("RE6ST_OPENSSL_OUT"),
    ) else {
        // Plain `cargo build` of this helper: nothing to do.
        return;
    };
    let host = std::env::var("HOST").expect("HOST is set by cargo");
    let under = target.replace('-', "_");
    for var in ["CC", "AR", "CFLAGS", "RANLIB"] {
        println!("cargo:rerun-if-env-changed={var}_{under}");
    }
    let artifacts = openssl_src::Build::new()
        .target(&target)
        .host(&host)
        .out_dir(&out)
        .build();
    println!(
        "cargo:warning=OpenSSL {} for {target} in {}",
        openssl_src::version(),
        artifacts.lib_dir().display()
    );
}
