use crate::helpers::{order_svc, run};

#[test]
fn generate_writes_a_json_array_of_the_requested_size() {
    let (out, stdout, stderr) = run(order_svc().args([
        "generate", "--count", "50", "--seed", "9", "--format", "array",
    ]));
    assert!(out.status.success(), "{stderr}");
    let orders: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("a JSON array");
    assert_eq!(orders.len(), 50);
    assert!(orders.iter().all(|o| o["order_uid"].is_string()));
}

#[test]
fn generate_with_the_same_seed_writes_the_same_file() {
    let dir = std::env::temp_dir();
    let files: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| dir.join(format!("gen-{}-{n}.jsonl", uuid::Uuid::new_v4().simple())))
        .collect();
    for file in &files {
        let (out, _, stderr) = run(order_svc()
            .args([
                "generate",
                "-n",
                "300",
                "--invalid-rate",
                "0.2",
                "--seed",
                "77",
                "--out",
            ])
            .arg(file));
        assert!(out.status.success(), "{stderr}");
    }
    let a = std::fs::read(&files[0]).unwrap();
    let b = std::fs::read(&files[1]).unwrap();
    assert_eq!(
        a.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count(),
        300
    );
    assert_eq!(a, b);
    files.iter().for_each(|f| std::fs::remove_file(f).unwrap());
}

#[test]
fn a_bad_setting_stops_the_program_naming_the_setting() {
    let (out, _, stderr) = run(order_svc()
        .arg("generate")
        .env("GENERATE_INVALID_RATE", "1.5"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("GENERATE_INVALID_RATE") && stderr.contains("from 0 to 1"),
        "{stderr}"
    );

    let (out, _, stderr) = run(order_svc()
        .arg("migrate")
        .env("DATABASE_URL", "localhost/orders"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");

    let (out, _, stderr) =
        run(order_svc().args(["generate", "--min-items", "4", "--max-items", "2"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("GENERATE_MIN_ITEMS") && stderr.contains("GENERATE_MAX_ITEMS"),
        "{stderr}"
    );
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_line_definition() {
    let (out, bash, stderr) = run(order_svc().args(["completions", "bash"]));
    assert!(out.status.success(), "{stderr}");
    for word in ["serve", "produce", "migrate", "generate", "--kafka-brokers"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    // The script is valid bash.
    let file = std::env::temp_dir().join(format!("compl-{}.bash", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, &bash).unwrap();
    let (out, _, stderr) = run(std::process::Command::new("bash").arg("-n").arg(&file));
    assert!(out.status.success(), "bash -n: {stderr}");
    let _ = std::fs::remove_file(&file);
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (out, script, stderr) = run(order_svc().args(["completions", shell]));
        assert!(out.status.success(), "{shell}: {stderr}");
        assert!(script.contains("healthcheck"), "{shell}");
    }
    let (out, _, stderr) = run(order_svc().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");

    let (out, man, stderr) = run(order_svc().arg("man"));
    assert!(out.status.success(), "{stderr}");
    assert!(
        man.starts_with(".ie") || man.contains(".TH order-svc"),
        "{man}"
    );
    // groff reads it without a warning (never skipped: .ci/run installs groff-base).
    assert!(
        std::process::Command::new("groff")
            .arg("-v")
            .output()
            .is_ok(),
        "groff is not installed: apt-get install groff-base"
    );
    let page = std::env::temp_dir().join(format!("man-{}.1", uuid::Uuid::new_v4().simple()));
    std::fs::write(&page, &man).unwrap();
    let (out, text, stderr) = run(std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .arg(&page));
    assert!(out.status.success() && stderr.is_empty(), "groff: {stderr}");
    assert!(text.contains("serve"), "{text}");
    let _ = std::fs::remove_file(&page);
}

/// `just test` runs copies of its own executables (scripts/test.sh), so that another
/// checkout's build into the shared build directory cannot swap them mid-run.
#[test]
fn under_just_test_the_run_executes_its_own_copies_of_the_test_and_the_binary() {
    let Some(copies) = std::env::var_os("ORDER_SVC_TEST_COPIES") else {
        eprintln!("not under scripts/test.sh: the executables are cargo's own");
        return;
    };
    let copies = std::path::PathBuf::from(copies);
    let me = std::env::current_exe().unwrap();
    assert_eq!(
        me.parent(),
        Some(copies.as_path()),
        "this test runs from {me:?}"
    );
    let bin = std::path::PathBuf::from(crate::helpers::binary());
    assert_eq!(bin, copies.join("order-svc"));
    let (out, stdout, _) = crate::helpers::run(crate::helpers::order_svc().arg("--version"));
    assert!(
        out.status.success() && stdout.starts_with("order-svc "),
        "{stdout}"
    );
}
