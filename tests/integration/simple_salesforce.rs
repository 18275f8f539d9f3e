//! The emulator checked by a client nobody here wrote: simple-salesforce
//! (PyPI, installed into `$FG_ROOT/.venv` by
//! `infra/scripts/setup.d/30-simple-salesforce.sh`) runs
//! `tests/thirdparty/simple_salesforce_check.py` against an emulator on a
//! free port. Missing Python or package = a loud failure, never a skip.

use fieldgate_sf_emulator::{DEV_USERNAME, Emulator, EmulatorConfig};
use std::path::PathBuf;

fn repo() -> PathBuf {
    std::env::var_os("FG_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .to_path_buf()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_salesforce_agrees_with_the_emulator() {
    let root = repo();
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run infra/scripts/test.sh (it creates the venv and installs simple-salesforce)",
        python.display()
    );
    let em = Emulator::new(EmulatorConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(em.clone().serve(listener));
    let script = root.join("tests/thirdparty/simple_salesforce_check.py");
    let key = root.join("infra/sf-emulator/fixtures/dev-jwt.key");
    let args = [
        script.display().to_string(),
        base.clone(),
        em.config().client_id.clone(),
        em.config().client_secret.clone(),
        DEV_USERNAME.to_owned(),
        key.display().to_string(),
    ];
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(python).args(args).output())
            .await
            .unwrap()
            .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "simple-salesforce check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("simple-salesforce check passed"),
        "{stdout}\n{stderr}"
    );
    // What the third party wrote is really in the org.
    let cases = em.records("Case");
    let upserted = cases
        .iter()
        .find(|c| c["Fieldgate_Proposal_Id__c"] == "01JSIMPLESALESFORCE0000000")
        .expect("the upserted Case");
    assert_eq!(upserted["Subject"], "Upsert two");
    assert_eq!(upserted["Priority"], "High");
    assert!(
        cases
            .iter()
            .any(|c| c["Subject"] == "Created by simple-salesforce")
    );
    let files = em.content_versions_linked_to(upserted["Id"].as_str().unwrap());
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["VersionDataLength"], 250);
}
