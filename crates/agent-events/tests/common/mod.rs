//! Shared helpers for the real-service tests.
#![allow(dead_code)]

use agent_events::{ConnectionStatus, Event, EventSourceHandle};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `Some(())` when `host:port` accepts TCP; otherwise skip (or fail under `CI=true`).
pub async fn require_service(what: &str, host: &str, port: u16, script: &str) -> Option<()> {
    if tokio::net::TcpStream::connect((host, port)).await.is_ok() {
        return Some(());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} not reachable at {host}:{port} (run scripts/services/{script})");
    }
    eprintln!("note: {what} not running, skipping (run scripts/services/{script})");
    None
}

pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after epoch")
        .as_nanos();
    format!("{tag}{nanos:x}")
}

pub async fn next_event(rx: &mut mpsc::Receiver<Event>, within: Duration) -> Event {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("event arrived in time")
        .expect("source still running")
}

pub async fn assert_no_event(rx: &mut mpsc::Receiver<Event>, for_how_long: Duration) {
    if let Ok(event) = tokio::time::timeout(for_how_long, rx.recv()).await {
        panic!("unexpected event {event:?}");
    }
}

pub async fn wait_status(
    handle: &EventSourceHandle,
    within: Duration,
    wanted: impl Fn(&ConnectionStatus) -> bool,
) -> ConnectionStatus {
    let mut status = handle.status_receiver();
    let result = tokio::time::timeout(within, status.wait_for(|s| wanted(s))).await;
    match result {
        Ok(Ok(s)) => s.clone(),
        _ => panic!(
            "status not reached in {within:?}; now {:?}",
            handle.status()
        ),
    }
}

/// Runs one of the repo's service scripts (restart tests).
pub async fn service_script(script: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = tokio::process::Command::new("bash")
        .arg(root.join("scripts/services").join(script))
        // Restart RabbitMQ as the suite needs it later (the simulator's tests provision queues
        // through the management API), whatever the caller's environment says.
        .env("RABBITMQ_WITH_MANAGEMENT", "1")
        .output()
        .await
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
