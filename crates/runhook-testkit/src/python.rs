//! Python, for the tests that check runhook against what a platform's own Python code does:
//! `python3` itself, and virtual environments holding the packages a test drives. Missing
//! Python, pip or a package fails the test loudly (CI installs what the tests need).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The interpreter the tests run: `$RUNHOOK_TEST_PYTHON`, else `python3` from `PATH`.
pub fn python3() -> PathBuf {
    let python = std::env::var_os("RUNHOOK_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let version = Command::new(&python).arg("--version").output();
    match version {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} --version failed ({}): this test needs Python 3 (CI installs it)",
            python.display(),
            out.status
        ),
        Err(e) => panic!(
            "cannot run {}: {e}: this test needs Python 3 (CI installs it)",
            python.display()
        ),
    }
}

/// The interpreter of a virtual environment at `dir` holding `packages` (pip requirement
/// specifiers), made with `python3 -m venv` and `pip install` unless a previous run left one
/// there that imports all of `modules`. Panics, with pip's output, when it cannot be made.
pub fn venv(dir: &Path, packages: &[&str], modules: &[&str]) -> PathBuf {
    let python = dir.join("bin").join("python");
    let imports = format!("import {}", modules.join(", "));
    if python.exists() && run_ok(Command::new(&python).args(["-c", &imports])).is_ok() {
        return python;
    }
    let made = run_ok(
        Command::new(python3())
            .args(["-m", "venv", "--clear"])
            .arg(dir),
    );
    if let Err(out) = made {
        panic!("python3 -m venv {} failed:\n{out}", dir.display());
    }
    let mut install = Command::new(&python);
    install.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    install.args(packages);
    if let Err(out) = run_ok(&mut install) {
        panic!(
            "pip install {} failed (this test needs PyPI or a pip configured with a mirror):\n{out}",
            packages.join(" ")
        );
    }
    if let Err(out) = run_ok(Command::new(&python).args(["-c", &imports])) {
        panic!("after pip install, `{imports}` fails:\n{out}");
    }
    python
}

/// Runs `python script args...`; its output, after asserting that it exited 0.
pub fn run_script(python: &Path, script: &str, args: &[&str]) -> Output {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "python exited {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `command` to completion; its combined output when it did not exit 0.
fn run_ok(command: &mut Command) -> Result<(), String> {
    match command.stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(e.to_string()),
    }
}
