//! Names the commit the binary is built from (`order_svc_build_info`, `--version`):
//! `ORDER_SVC_COMMIT` when set (the image build, which has no `.git`), else git's answer,
//! else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ORDER_SVC_COMMIT");
    let commit = std::env::var("ORDER_SVC_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ORDER_SVC_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    let git = Path::new(".git");
    if !git.is_dir() {
        return None;
    }
    // Built again when HEAD moves: the file HEAD, and the branch it names (watched only
    // where the file exists: cargo reruns a script whose watched file is missing, every time).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        watched.push(reference.to_owned());
    }
    for file in watched {
        if git.join(&file).is_file() {
            println!("cargo:rerun-if-changed=.git/{file}");
        }
    }
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}
