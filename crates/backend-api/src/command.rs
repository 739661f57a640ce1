//! Running site CLIs (sacctmgr, sacct, mam-*): one runner for every CLI backend.
//!
//! Argument vectors only, never a shell; a timeout that kills the whole process group (sacctmgr can
//! hang on a dead slurmdbd and leave children behind); stderr captured into the error. Which
//! failures are transient is the backend's own rule ([`TransientRule`], given with
//! [`ProcessRunner::with_transient_rule`]); this module knows no tool's messages. [`parsable`]
//! reads the `|`-separated output most accounting CLIs print (`--parsable2`, `mam-* --format csv`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent_config::Secret;
use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::error::BackendError;

/// One command to run: program and arguments, never interpreted by a shell; optionally text
/// written to its standard input (kept as a [`Secret`]: it may carry credentials, and `Debug`
/// does not show it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub stdin: Option<Secret>,
}

impl CommandLine {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        CommandLine {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
        }
    }
    /// Write `input` to the command's standard input (then close it).
    pub fn stdin(mut self, input: impl Into<String>) -> Self {
        self.stdin = Some(Secret::new(input.into()));
        self
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// For logs and errors.
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// What a successful command printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Runs commands. The real one is [`ProcessRunner`]; tests may substitute a recording fake.
#[async_trait]
pub trait CommandRunner: Send + Sync {
    async fn run(&self, command: &CommandLine) -> Result<CommandOutput, BackendError>;

    /// How many commands this runner has started (for benchmarks and call-count tests).
    fn calls(&self) -> u64;
}

/// Decides from a failed command's output (stderr, else stdout) whether retrying later can help.
/// Each CLI backend has its own (SLURM: `slurmdbd is down`, ...); [`generic_transient`] is the
/// default.
pub type TransientRule = fn(&str) -> bool;

/// The default [`TransientRule`]: operating-system and network messages every tool passes on
/// (connection refused, timed out, temporarily unavailable, try again). No tool-specific text.
pub fn generic_transient(output: &str) -> bool {
    let lower = output.to_ascii_lowercase();
    [
        "connection refused",
        "connection reset",
        "unable to connect",
        "timed out",
        "temporarily unavailable",
        "try again",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Runs real processes with a timeout.
pub struct ProcessRunner {
    timeout: Duration,
    transient: TransientRule,
    calls: AtomicU64,
    /// Extra environment (e.g. `SLURM_CONF`).
    env: Vec<(OsString, OsString)>,
}

impl ProcessRunner {
    pub fn new(timeout: Duration) -> Self {
        ProcessRunner {
            timeout,
            transient: generic_transient,
            calls: AtomicU64::new(0),
            env: Vec::new(),
        }
    }

    /// Use the backend's own rule for which failures are transient.
    pub fn with_transient_rule(mut self, rule: TransientRule) -> Self {
        self.transient = rule;
        self
    }

    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn shared(self) -> Arc<dyn CommandRunner> {
        Arc::new(self)
    }
}

#[async_trait]
impl CommandRunner for ProcessRunner {
    async fn run(&self, command: &CommandLine) -> Result<CommandOutput, BackendError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if command.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (not installed or not on PATH; check the backend's *_bin_path setting)"
            } else {
                ""
            };
            BackendError::Command {
                command: command.display(),
                exit: "not started".to_owned(),
                output: format!("{e}{hint}"),
                transient: false,
            }
        })?;
        let pid = child.id();
        let mut stdin = child.stdin.take();
        let input = command.stdin.clone();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let collect = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.read_to_end(&mut err).await;
                }
            };
            let write_in = async {
                if let (Some(pipe), Some(text)) = (stdin.as_mut(), input.as_ref()) {
                    // A program that exits without reading is not an error of ours.
                    let _ = pipe.write_all(text.expose().as_bytes()).await;
                    let _ = pipe.shutdown().await;
                }
                drop(stdin.take());
            };
            tokio::join!(read_out, read_err, write_in);
            let status = child.wait().await;
            (status, out, err)
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, collect).await {
            Ok(done) => done,
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    // The child leads its own process group: kill it and everything it spawned.
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                return Err(BackendError::Timeout {
                    what: command.display(),
                    seconds: self.timeout.as_secs(),
                });
            }
        };
        let stdout = String::from_utf8_lossy(&out).into_owned();
        let stderr = String::from_utf8_lossy(&err).into_owned();
        let status = status.map_err(|e| BackendError::Command {
            command: command.display(),
            exit: "unknown".to_owned(),
            output: e.to_string(),
            transient: true,
        })?;
        if status.success() {
            return Ok(CommandOutput { stdout, stderr });
        }
        let output = if stderr.trim().is_empty() {
            stdout.trim()
        } else {
            stderr.trim()
        };
        Err(BackendError::Command {
            command: command.display(),
            exit: status
                .code()
                .map_or_else(|| "killed by signal".to_owned(), |c| c.to_string()),
            output: output.to_owned(),
            transient: (self.transient)(output),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Reading `|`-separated CLI output (`sacctmgr --parsable2`, `sacct --parsable2`, MOAB's
/// `mam-list-* --format csv` with `|`): one helper instead of one `split('|')` per parser.
pub mod parsable {
    /// The rows of `output` that hold a separator, each split into trimmed fields.
    pub fn rows(output: &str) -> impl Iterator<Item = Row<'_>> {
        output.lines().filter(|l| l.contains('|')).map(|line| Row {
            line,
            fields: line.split('|').map(str::trim).collect(),
        })
    }

    /// One row; missing fields read as empty, so short rows need no special case.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Row<'a> {
        /// The row as printed (for warnings about rows that do not parse).
        pub line: &'a str,
        pub fields: Vec<&'a str>,
    }

    impl<'a> Row<'a> {
        /// Field `i`, trimmed, `""` when the row is shorter.
        pub fn get(&self, i: usize) -> &'a str {
            self.fields.get(i).copied().unwrap_or("")
        }
        pub fn len(&self) -> usize {
            self.fields.len()
        }
        pub fn is_empty(&self) -> bool {
            self.fields.is_empty()
        }
    }

    /// The first field of every non-empty line (with or without separators).
    pub fn first_column(output: &str) -> Vec<String> {
        output
            .lines()
            .filter_map(|l| l.split('|').next())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_stdout_and_counts_calls() {
        let runner = ProcessRunner::new(Duration::from_secs(5));
        let out = runner
            .run(&CommandLine::new("echo").args(["a,b", "c d"]))
            .await
            .expect("echo runs");
        assert_eq!(out.stdout, "a,b c d\n");
        assert_eq!(runner.calls(), 1);
    }

    #[tokio::test]
    async fn failure_carries_stderr_and_exit_code() {
        let runner = ProcessRunner::new(Duration::from_secs(5));
        let err = runner
            .run(&CommandLine::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .await
            .expect_err("exit 3");
        let msg = err.to_string();
        assert!(msg.contains("exit 3") && msg.contains("boom"), "{msg}");
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn stdin_is_written_and_not_shown() {
        let runner = ProcessRunner::new(Duration::from_secs(5));
        let cmd = CommandLine::new("cat").stdin("{\"password\": \"hunter2\"}");
        assert!(!format!("{cmd:?}").contains("hunter2"));
        let out = runner.run(&cmd).await.expect("cat runs");
        assert_eq!(out.stdout, "{\"password\": \"hunter2\"}");
    }

    #[tokio::test]
    async fn the_backend_rule_decides_what_is_transient() {
        let script = ["-c", "echo 'site daemon is down' >&2; exit 1"];
        let runner = ProcessRunner::new(Duration::from_secs(5));
        let err = runner
            .run(&CommandLine::new("sh").args(script))
            .await
            .expect_err("exit 1");
        assert!(!err.is_transient(), "the generic rule knows no tool text");
        let runner = ProcessRunner::new(Duration::from_secs(5))
            .with_transient_rule(|out| out.contains("daemon is down"));
        let err = runner
            .run(&CommandLine::new("sh").args(script))
            .await
            .expect_err("exit 1");
        assert!(err.is_transient(), "{err}");
        assert!(generic_transient("Connection refused"));
        assert!(!generic_transient("Nothing new added"));
    }

    #[test]
    fn parsable_rows_pad_short_rows() {
        let rows: Vec<_> = parsable::rows("a| b |c\nno separator\nx|\n").collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].get(0), rows[0].get(1), rows[0].get(5)),
            ("a", "b", "")
        );
        assert_eq!(rows[1].get(1), "");
        assert_eq!(parsable::first_column("a|b\n\n c \n"), vec!["a", "c"]);
    }

    #[tokio::test]
    async fn missing_program_says_what_to_check() {
        let runner = ProcessRunner::new(Duration::from_secs(5));
        let err = runner
            .run(&CommandLine::new("/nonexistent/sacctmgr"))
            .await
            .expect_err("missing");
        assert!(err.to_string().contains("bin_path"), "{err}");
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let runner = ProcessRunner::new(Duration::from_millis(300));
        let marker = format!("/tmp/runner-timeout-{}", std::process::id());
        let script = format!("(sleep 2; touch {marker}) & sleep 5");
        let started = std::time::Instant::now();
        let err = runner
            .run(&CommandLine::new("sh").args(["-c", script.as_str()]))
            .await
            .expect_err("timeout");
        assert!(matches!(err, BackendError::Timeout { .. }), "{err}");
        assert!(err.is_transient());
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !std::path::Path::new(&marker).exists(),
            "grandchild survived the timeout"
        );
    }
}
