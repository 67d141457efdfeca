//! The binary starts and describes its commands. (Having an integration
//! test here also makes `cargo test` build the `parallax` binary that the
//! end-to-end tests in `tests/` run.)

use std::process::Command;

#[test]
fn help_lists_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_parallax"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["train", "list", "recipe", "eval"] {
        assert!(text.contains(cmd), "{cmd} missing from --help:\n{text}");
    }
}
