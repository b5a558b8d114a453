//! `cmi import ORG/NAME` as a user runs it: the repo is downloaded from a hub (a loopback one, `test_support::hub`,
//! through `HF_ENDPOINT`) into `HF_HOME`, checked, uploaded to the in-process local Bedrock, imported and registered;
//! a second import of the same repo downloads nothing; a missing repo and `--in-place` on a repo id fail clearly.
//! Also `--no-wait` against a `cmi serve`: the job ARN at once, and `cmi import status` registers the model later.

use std::path::Path;
use std::process::{Command, Output};

use test_support::hub::{FakeHub, HubRepo};

mod common;

use common::{cmi_command, start_serve, text};

fn cmi(home: &Path, hub: &FakeHub, args: &[&str]) -> Output {
    command(home, hub, args).output().expect("cmi runs")
}

fn command(home: &Path, hub: &FakeHub, args: &[&str]) -> Command {
    let mut c = cmi_command(home, &home.join("cache"), args);
    c.env("HF_HOME", home.join("hf"))
        .env("HF_ENDPOINT", hub.endpoint())
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN");
    c
}

#[test]
fn a_repo_id_is_downloaded_checked_imported_and_registered() {
    let home = tempfile::tempdir().expect("home");
    let model = tempfile::tempdir().expect("model");
    test_support::tiny_model(model.path(), test_support::Family::Qwen2).expect("tiny model");
    let repo = HubRepo::from_dir(model.path()).expect("repo");
    let hub = FakeHub::start([("acme/tiny-qwen".to_string(), repo.clone())]);

    let out = cmi(
        home.path(),
        &hub,
        &["import", "acme/tiny-qwen", "--name", "tiny-qwen", "--json"],
    );
    assert!(out.status.success(), "import failed\n{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("download: acme/tiny-qwen"), "{}", text(&out));
    assert!(stderr.contains(&repo.commit), "the commit is reported\n{}", text(&out));
    let snapshot = home
        .path()
        .join("hf/hub/models--acme--tiny-qwen/snapshots")
        .join(&repo.commit);
    assert!(
        snapshot.join("model.safetensors").exists(),
        "snapshot in HF_HOME\n{}",
        text(&out)
    );
    assert_eq!(hub.served("acme/tiny-qwen", "README.md"), 0);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json output");
    let arn = result["modelArn"]
        .as_str()
        .or(result["model_arn"].as_str())
        .unwrap_or_default()
        .to_string();
    let registry = std::fs::read_to_string(home.path().join("config/cmi/models.json")).expect("registry written");
    assert!(
        registry.contains("tiny-qwen") && registry.contains(":imported-model/"),
        "{registry}"
    );
    assert!(
        arn.is_empty() || registry.contains(&arn),
        "registered ARN {arn} in {registry}"
    );

    // The snapshot is never edited: a repaired template would be staged.
    for f in repo.files.keys().filter(|f| snapshot.join(f).exists()) {
        assert_eq!(
            std::fs::read(snapshot.join(f)).unwrap(),
            repo.files[f],
            "{f} unchanged in the cache"
        );
    }

    // Checking the same repo again downloads nothing.
    let served: u64 = repo.files.keys().map(|f| hub.served("acme/tiny-qwen", f)).sum();
    let check = cmi(home.path(), &hub, &["import", "check", "acme/tiny-qwen"]);
    assert!(check.status.success(), "check failed\n{}", text(&check));
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("already in the cache"),
        "{}",
        text(&check)
    );
    let served2: u64 = repo.files.keys().map(|f| hub.served("acme/tiny-qwen", f)).sum();
    assert_eq!(served, served2, "nothing downloaded twice");
}

#[test]
fn a_missing_repo_and_in_place_on_a_repo_id_fail_clearly() {
    let home = tempfile::tempdir().expect("home");
    let hub = FakeHub::start([]);
    let out = cmi(home.path(), &hub, &["import", "acme/does-not-exist", "--name", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("acme/does-not-exist") && stderr.contains("no such repository"),
        "{}",
        text(&out)
    );
    assert!(
        !home.path().join("config/cmi/models.json").exists(),
        "nothing registered"
    );

    let asked = hub.requests().len();
    let out = cmi(home.path(), &hub, &["import", "acme/x", "--name", "x", "--in-place"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--in-place needs a local folder"),
        "{}",
        text(&out)
    );
    assert_eq!(
        hub.requests().len(),
        asked,
        "nothing was asked of the hub: {:?}",
        hub.requests()
    );

    let out = cmi(home.path(), &hub, &["import", "./not/here", "--name", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("./not/here: no such folder"),
        "{}",
        text(&out)
    );
}

#[test]
fn no_wait_returns_the_job_and_status_registers_the_model_when_it_completes() {
    let home = tempfile::tempdir().expect("home");
    let hub = FakeHub::start([]);
    let model = tempfile::tempdir().expect("model");
    test_support::tiny_model(model.path(), test_support::Family::Llama).expect("tiny model");
    let _serve = start_serve(
        command(home.path(), &hub, &["serve", "--port", "0", "--warm"]),
        std::process::Stdio::null(),
        &home.path().join("data/cmi/server/endpoint.json"),
    );

    let dir = model.path().to_str().expect("utf-8 path");
    let out = cmi(
        home.path(),
        &hub,
        &["import", dir, "--name", "later", "--no-wait", "--json"],
    );
    assert!(out.status.success(), "import --no-wait failed\n{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json output");
    let job = v["jobArn"].as_str().expect("jobArn").to_string();
    assert!(job.contains(":model-import-job/"), "{job}");
    assert!(
        home.path()
            .join("config/cmi/pending-imports")
            .read_dir()
            .expect("pending dir")
            .count()
            == 1
    );

    let t = std::time::Instant::now();
    loop {
        let st = cmi(home.path(), &hub, &["import", "status", &job]);
        assert!(st.status.success(), "status failed\n{}", text(&st));
        let so = String::from_utf8_lossy(&st.stdout);
        if so.contains("Completed") {
            assert!(
                String::from_utf8_lossy(&st.stderr).contains("registered `later`"),
                "{}",
                text(&st)
            );
            break;
        }
        assert!(t.elapsed().as_secs() < 120, "the job did not complete\n{}", text(&st));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let registry = std::fs::read_to_string(home.path().join("config/cmi/models.json")).expect("registry written");
    assert!(
        registry.contains("later") && registry.contains(":imported-model/"),
        "{registry}"
    );
    assert_eq!(
        home.path()
            .join("config/cmi/pending-imports")
            .read_dir()
            .unwrap()
            .count(),
        0,
        "pending file removed"
    );

    // Asking again does not register twice or fail.
    let st = cmi(home.path(), &hub, &["import", "status", &job]);
    assert!(
        st.status.success() && !String::from_utf8_lossy(&st.stderr).contains("registered"),
        "{}",
        text(&st)
    );
}
