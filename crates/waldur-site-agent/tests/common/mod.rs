//! Shared by the end-to-end tests of the binary: finding the real services and small helpers.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value, json};

/// Where `scripts/services/slurm-up.sh` writes `SLURM_CONF`.
pub const SLURM_ENV: &str = "/tmp/waldur-services/slurm/env.sh";

/// `true` when the service is there; otherwise fail under `CI=true`, or print a note and
/// return `false` (the test then returns early).
pub fn require(what: &str, ok: bool, how: &str) -> bool {
    if ok {
        return true;
    }
    let msg = format!("{what} is not available: {how}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("note: skipping: {msg}");
    false
}

/// `SLURM_CONF` of the real SLURM, when sacctmgr reaches it.
pub fn slurm_conf() -> Option<String> {
    let conf = std::fs::read_to_string(SLURM_ENV)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("export SLURM_CONF="))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
        .or_else(|| std::env::var("SLURM_CONF").ok())
        .filter(|c| Path::new(c).is_file());
    let reachable = conf.as_ref().is_some_and(|c| {
        Command::new("sacctmgr")
            .env("SLURM_CONF", c)
            .args(["--parsable2", "--noheader", "show", "cluster"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if require(
        "real SLURM",
        reachable,
        "start it with `bash scripts/services/slurm-up.sh` (as root)",
    ) {
        conf
    } else {
        None
    }
}

/// Users associated with `account` (sacctmgr's view).
pub fn sacctmgr_users(conf: &str, account: &str) -> Vec<String> {
    let out = Command::new("sacctmgr")
        .env("SLURM_CONF", conf)
        .args([
            "-nP",
            "show",
            "assoc",
            &format!("account={account}"),
            "format=user",
        ])
        .output()
        .expect("sacctmgr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Order limits as the consumer API takes them.
pub fn limits(pairs: &[(&str, i64)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}
