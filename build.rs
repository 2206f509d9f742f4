//! Compiles the device crate `kernels/` to PTX with rustc's NVPTX backend, once per target
//! architecture, and writes `kernels_ptx.rs` (one constant per architecture: the PTX, deflate-
//! compressed) for the host code to `include!`.
//!
//! The host crate builds on stable; only this step needs the nightly toolchain (for
//! `-Zbuild-std=core`, `abi_ptx` and `asm!` on nvptx) and its `rust-src` component, called
//! explicitly through `rustup run nightly`.
use std::path::{Path, PathBuf};
use std::process::Command;

/// (architecture, file stem). sm_80 PTX runs on every GPU from Ampere on; sm_90a PTX carries
/// the Hopper-only instructions (wgmma, setmaxnreg) and runs on compute capability 9.0 only.
const ARCHS: [(&str, &str); 2] = [("sm_80", "SM80"), ("sm_90a", "SM90A")];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let kernels = root.join("kernels");
    println!("cargo:rerun-if-changed=kernels/src");
    println!("cargo:rerun-if-changed=kernels/Cargo.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FLASHATTN_NIGHTLY");
    println!("cargo:rerun-if-env-changed=FLASHATTN_UNROLL_THRESHOLD");

    let toolchain = std::env::var("FLASHATTN_NIGHTLY").unwrap_or_else(|_| "nightly".into());
    check_toolchain(&toolchain);

    // Both architectures build at once (separate target dirs: no shared cargo lock).
    let builds: Vec<_> = ARCHS
        .iter()
        .map(|&(arch, stem)| {
            let (kernels, out, toolchain) = (kernels.clone(), out.clone(), toolchain.clone());
            std::thread::spawn(move || (stem, build_ptx(&kernels, &out, &toolchain, arch)))
        })
        .collect();
    // The PTX is embedded deflate-compressed (15 MB of text per architecture shrinks about
    // tenfold): every test and bench executable carries it, and the host inflates it once.
    let mut consts = String::new();
    for b in builds {
        let (stem, ptx) = b.join().expect("kernel build thread panicked");
        let text = std::fs::read(&ptx).unwrap();
        let packed = ptx.with_extension("ptx.deflate");
        std::fs::write(&packed, miniz_oxide::deflate::compress_to_vec(&text, 6)).unwrap();
        consts += &format!(
            "/// Deflate-compressed PTX of the device crate for `{stem}`.\npub const {stem}: &[u8] = include_bytes!({:?});\n",
            packed.display()
        );
    }
    std::fs::write(out.join("kernels_ptx.rs"), consts).unwrap();
}

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: flashattn cannot build its GPU kernels: {msg}\n");
    std::process::exit(1);
}

/// Fails early, with what to install, when the nightly toolchain or its `rust-src` is missing.
fn check_toolchain(toolchain: &str) {
    let rustc = Command::new("rustup").args(["run", toolchain, "rustc", "--version"]).output();
    match rustc {
        Ok(o) if o.status.success() => {}
        Ok(_) => fail(&format!(
            "the `{toolchain}` Rust toolchain is not installed.\n  Install it with: rustup toolchain install {toolchain} --component rust-src"
        )),
        Err(_) => fail("`rustup` was not found on PATH; the kernels need rustup's nightly toolchain.\n  Install rustup (https://rustup.rs), then: rustup toolchain install nightly --component rust-src"),
    }
    let sysroot = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let core = Path::new(&sysroot).join("lib/rustlib/src/rust/library/core");
    if !core.exists() {
        fail(&format!(
            "the `rust-src` component of the `{toolchain}` toolchain is missing (core is built from source for nvptx64).\n  Install it with: rustup component add rust-src --toolchain {toolchain}"
        ));
    }
}

fn build_ptx(kernels: &Path, out: &Path, toolchain: &str, arch: &str) -> PathBuf {
    let target_dir = out.join(format!("kernels-{arch}"));
    // -unroll-threshold: fully unroll the per-thread accumulator loops (what `#pragma unroll`
    // does for nvcc users); otherwise LLVM keeps register arrays such as the output accumulator
    // in local memory (at 1000, the d = 64 128x128 tensor-core kernel still did). JumpThreading off: it could duplicate barriers (rust-lang/rust#137086).
    // FLASHATTN_UNROLL_THRESHOLD overrides it for tuning experiments.
    let unroll = std::env::var("FLASHATTN_UNROLL_THRESHOLD").unwrap_or_else(|_| "3000".into());
    let rustflags =
        format!("-C target-cpu={arch} -Zmir-enable-passes=-JumpThreading -C llvm-args=-unroll-threshold={unroll}");
    // Architecture-specific choices inside the kernels read `cfg(flashattn_sm90a)`.
    // PTX ISA 8.3 for sm_90a (the target alone asks for 8.0): the warp-specialized forward's
    // tensor-map fence (`fence_tensormap_acquire`) is an 8.3 instruction.
    let rustflags =
        if arch == "sm_90a" { rustflags + " --cfg flashattn_sm90a -C target-feature=+ptx83" } else { rustflags };
    let mut cmd = Command::new("rustup");
    cmd.args(["run", toolchain, "cargo", "rustc", "--release", "-Zbuild-std=core"])
        .args(["--target", "nvptx64-nvidia-cuda", "--manifest-path"])
        .arg(kernels.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--config", "profile.release.panic=\"abort\""])
        .args(["--", "--emit=asm"]);
    // The outer cargo's settings describe the host build, not this one.
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_") && k != "CARGO_HOME"
            || k.starts_with("RUSTC")
            || k == "RUSTFLAGS"
            || k == "RUSTDOC"
            || k == "RUSTUP_TOOLCHAIN"
        {
            cmd.env_remove(&k);
        }
    }
    cmd.env("RUSTFLAGS", rustflags);
    let output = cmd.output().unwrap_or_else(|e| fail(&format!("could not run rustup: {e}")));
    if !output.status.success() {
        fail(&format!("the kernel crate failed to compile for {arch}:\n{}", String::from_utf8_lossy(&output.stderr)));
    }
    // The PTX is the newest `flashattn_kernels-*.s` of this build.
    let deps = target_dir.join("nvptx64-nvidia-cuda/release/deps");
    let newest = std::fs::read_dir(&deps)
        .unwrap_or_else(|e| fail(&format!("no build output in {}: {e}", deps.display())))
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("flashattn_kernels-") && n.ends_with(".s")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| fail("the kernel build wrote no .s file"));
    let ptx = out.join(format!("kernels_{arch}.ptx"));
    let text = std::fs::read_to_string(newest.path()).unwrap();
    std::fs::write(&ptx, with_max_threads(&text)).unwrap();
    ptx
}

/// Gives every entry whose body carries the marker `// flashattn.maxntid N` (the kernels'
/// `declare_max_threads`) the directive `.maxntid N, 1, 1`, and one carrying `// flashattn.maxnreg
/// N` (`declare_max_registers`) the directive `.maxnreg N`, after its parameter list: Rust has no
/// way to attach them. Without `.maxntid` ptxas may give a kernel more registers than a block of
/// `N` threads can have (the 192-row masked forwards: 168 at 384 threads); `.maxnreg` keeps a
/// kernel at a register count that lets the CTAs per SM it was tiled for fit.
fn with_max_threads(ptx: &str) -> String {
    const ENTRY: &str = ".entry ";
    const MARKERS: [(&str, &str); 2] = [("// flashattn.maxntid ", ", 1, 1"), ("// flashattn.maxnreg ", "")];
    let mut out = String::with_capacity(ptx.len() + 1024);
    let mut rest = ptx;
    while let Some(start) = rest.find(ENTRY) {
        // This entry runs up to the next one.
        let body_end = rest[start + ENTRY.len()..].find(ENTRY).map_or(rest.len(), |e| start + ENTRY.len() + e);
        let entry = &rest[..body_end];
        let directives: String = MARKERS
            .iter()
            .filter_map(|(marker, tail)| {
                let m = entry.find(marker)?;
                let digits = &entry[m + marker.len()..];
                let n = &digits[..digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len())];
                let name = &marker["// flashattn.".len()..];
                (!n.is_empty()).then(|| format!(".{}{n}{tail}\n", name))
            })
            .collect();
        match entry[start..].find("\n)\n") {
            Some(close) if !directives.is_empty() => {
                let at = start + close + 3;
                out += &entry[..at];
                out += &directives;
                out += &entry[at..];
            }
            _ => out += entry,
        }
        rest = &rest[body_end..];
    }
    out + rest
}
