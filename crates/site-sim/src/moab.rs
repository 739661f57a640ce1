//! MOAB Accounting Manager (MAM 9.1) double: the `mam-*` command-line programs the agent and the
//! upstream plugin call, keeping the accounting state in one JSON file guarded by an exclusive
//! lock (`state.json.lock`), so concurrent calls are safe.
//!
//! Output follows what the clients parse: `--raw` prints `|`-separated rows, `--quiet` leaves out
//! the header row, `--show A,B` picks the columns in that order. Success exits 0; a refused
//! request prints `Error: …` on stderr and exits non-zero (MAM's exact codes and wording are not
//! published where we can read them: see the crate README, "MOAB guesses").
//!
//! `site-sim moab --state DIR` writes `DIR/bin/mam-*` (small scripts that run
//! `site-sim moab-exec --state DIR <program> ARGS...`) and prints `{"path": "DIR/bin", ...}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Every program the double answers.
pub const PROGRAMS: &[&str] = &[
    "mam-list-accounts",
    "mam-create-account",
    "mam-delete-account",
    "mam-modify-account",
    "mam-create-fund",
    "mam-list-funds",
    "mam-delete-fund",
    "mam-deposit",
    "mam-withdraw",
    "mam-list-users",
    "mam-list-usagerecords",
    "mam-charge",
];

/// One account.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Account {
    pub description: String,
    pub organization: String,
    pub active: bool,
    /// Member user names.
    pub users: BTreeSet<String>,
}

/// One fund (constrained to one account).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Fund {
    pub account: String,
    /// Sum of deposits minus withdrawals.
    pub allocated: f64,
    /// Allocated minus charges.
    pub balance: f64,
}

/// One user known to MAM.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub default_account: String,
    pub active: bool,
}

/// One usage record (made by `mam-charge`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageRecord {
    pub id: u64,
    pub account: String,
    pub user: String,
    pub charge: f64,
    /// Local site time, `YYYY-MM-DD HH:MM:SS`.
    pub time: String,
}

/// The whole MAM state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MoabState {
    pub accounts: BTreeMap<String, Account>,
    pub funds: BTreeMap<u64, Fund>,
    pub users: BTreeMap<String, User>,
    pub usage: Vec<UsageRecord>,
    pub next_fund: u64,
    pub next_record: u64,
    /// Calls per program (for `bench/`).
    pub calls: BTreeMap<String, u64>,
}

/// What one program run gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn ok(stdout: impl Into<String>) -> Self {
        Outcome {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }
    fn err(code: i32, message: impl Into<String>) -> Self {
        Outcome {
            code,
            stdout: String::new(),
            stderr: format!("Error: {}\n", message.into()),
        }
    }
}

/// Exit code of a usage (option) error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a refused request (object missing, already exists, ...).
pub const EXIT_FAILED: i32 = 74;

/// Parsed options: values by option name, flags.
#[derive(Default, Debug)]
struct Opts {
    values: BTreeMap<String, String>,
    flags: BTreeSet<String>,
}

impl Opts {
    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

const VALUE_OPTIONS: &[&str] = &[
    "-a",
    "-d",
    "-o",
    "-u",
    "-f",
    "-z",
    "-s",
    "-e",
    "-t",
    "-J",
    "--show",
    "--add-user",
    "--del-user",
    "--time",
];
const FLAG_OPTIONS: &[&str] = &["--raw", "--quiet", "-A", "-I", "--long", "--wide", "--full"];

fn parse(args: &[String]) -> Result<Opts, Outcome> {
    let mut opts = Opts::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let arg = arg.as_str();
        if FLAG_OPTIONS.contains(&arg) {
            opts.flags.insert(arg.to_owned());
        } else if VALUE_OPTIONS.contains(&arg) {
            let Some(value) = it.next() else {
                return Err(Outcome::err(
                    EXIT_USAGE,
                    format!("Option {arg} requires an argument"),
                ));
            };
            if opts.values.insert(arg.to_owned(), value.clone()).is_some() {
                return Err(Outcome::err(
                    EXIT_USAGE,
                    format!("Option {arg} given more than once"),
                ));
            }
        } else if arg.starts_with('-') {
            return Err(Outcome::err(EXIT_USAGE, format!("Unknown option: {arg}")));
        } else {
            return Err(Outcome::err(
                EXIT_USAGE,
                format!("Unexpected argument: {arg}"),
            ));
        }
    }
    Ok(opts)
}

fn required<'a>(opts: &'a Opts, key: &str, what: &str) -> Result<&'a str, Outcome> {
    opts.get(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Outcome::err(EXIT_USAGE, format!("{what} ({key}) must be specified")))
}

fn amount(text: &str) -> Result<f64, Outcome> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| Outcome::err(EXIT_USAGE, format!("Invalid amount: {text}")))
}

/// Amounts as MAM prints them: whole numbers without a fraction.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

type Row = BTreeMap<&'static str, String>;

/// Print rows: `--show` picks columns (default `defaults`), `--raw` uses `|`, `--quiet` drops
/// the header.
fn table(opts: &Opts, defaults: &[&str], known: &[&str], rows: Vec<Row>) -> Outcome {
    let columns: Vec<String> = match opts.get("--show") {
        Some(s) => s.split(',').map(|c| c.trim().to_owned()).collect(),
        None => defaults.iter().map(|s| (*s).to_owned()).collect(),
    };
    if let Some(bad) = columns.iter().find(|c| !known.contains(&c.as_str())) {
        return Outcome::err(EXIT_USAGE, format!("Invalid field name: {bad}"));
    }
    let sep = if opts.flags.contains("--raw") {
        "|"
    } else {
        " "
    };
    let mut out = String::new();
    if !opts.flags.contains("--quiet") {
        out.push_str(&columns.join(sep));
        out.push('\n');
    }
    for row in rows {
        let cells: Vec<&str> = columns
            .iter()
            .map(|c| row.get(c.as_str()).map(String::as_str).unwrap_or(""))
            .collect();
        out.push_str(&cells.join(sep));
        out.push('\n');
    }
    Outcome::ok(out)
}

fn flag(b: bool) -> String {
    if b { "True" } else { "False" }.to_owned()
}

/// Run `program` with `args` on `state` at local time `now` (`YYYY-MM-DD HH:MM:SS`).
pub fn execute(state: &mut MoabState, program: &str, args: &[String], now: &str) -> Outcome {
    *state.calls.entry(program.to_owned()).or_default() += 1;
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let result = match program {
        "mam-list-accounts" => Ok(list_accounts(state, &opts)),
        "mam-create-account" => create_account(state, &opts),
        "mam-delete-account" => delete_account(state, &opts),
        "mam-modify-account" => modify_account(state, &opts),
        "mam-create-fund" => create_fund(state, &opts),
        "mam-list-funds" => Ok(list_funds(state, &opts)),
        "mam-delete-fund" => delete_fund(state, &opts),
        "mam-deposit" => deposit(state, &opts, 1.0),
        "mam-withdraw" => deposit(state, &opts, -1.0),
        "mam-list-users" => Ok(list_users(state, &opts)),
        "mam-list-usagerecords" => list_usage(state, &opts),
        "mam-charge" => charge(state, &opts, now),
        other => Err(Outcome::err(127, format!("{other}: command not found"))),
    };
    result.unwrap_or_else(|e| e)
}

fn list_accounts(state: &MoabState, opts: &Opts) -> Outcome {
    let rows = state
        .accounts
        .iter()
        .filter(|(name, _)| opts.get("-a").is_none_or(|a| a == name.as_str()))
        .filter(|(_, acc)| opts.get("-u").is_none_or(|u| acc.users.contains(u)))
        .map(|(name, acc)| {
            BTreeMap::from([
                ("Name", name.clone()),
                ("Active", flag(acc.active)),
                ("Description", acc.description.clone()),
                ("Organization", acc.organization.clone()),
                (
                    "Users",
                    acc.users.iter().cloned().collect::<Vec<_>>().join(","),
                ),
            ])
        })
        .collect();
    table(
        opts,
        &["Name", "Active", "Description", "Organization"],
        &["Name", "Active", "Description", "Organization", "Users"],
        rows,
    )
}

fn create_account(state: &mut MoabState, opts: &Opts) -> Result<Outcome, Outcome> {
    let name = required(opts, "-a", "Account name")?;
    if state.accounts.contains_key(name) {
        return Err(Outcome::err(
            EXIT_FAILED,
            format!("Account {name} already exists"),
        ));
    }
    state.accounts.insert(
        name.to_owned(),
        Account {
            description: opts.get("-d").unwrap_or("").to_owned(),
            organization: opts.get("-o").unwrap_or("").to_owned(),
            active: true,
            users: BTreeSet::new(),
        },
    );
    Ok(Outcome::ok("Successfully created 1 account\n"))
}

fn delete_account(state: &mut MoabState, opts: &Opts) -> Result<Outcome, Outcome> {
    let name = required(opts, "-a", "Account name")?;
    let Some(account) = state.accounts.remove(name) else {
        return Err(Outcome::err(
            EXIT_FAILED,
            format!("Account {name} does not exist"),
        ));
    };
    for user in account.users {
        clear_default(state, &user, name);
    }
    // Funds keep their constraint until they are deleted themselves.
    Ok(Outcome::ok("Successfully deleted 1 account\n"))
}

fn clear_default(state: &mut MoabState, user: &str, account: &str) {
    let other = state
        .accounts
        .iter()
        .find(|(n, a)| n.as_str() != account && a.users.contains(user))
        .map(|(n, _)| n.clone());
    if let Some(u) = state.users.get_mut(user)
        && u.default_account == account
    {
        u.default_account = other.unwrap_or_default();
    }
}

fn modify_account(state: &mut MoabState, opts: &Opts) -> Result<Outcome, Outcome> {
    let name = required(opts, "-a", "Account name")?.to_owned();
    if !state.accounts.contains_key(&name) {
        return Err(Outcome::err(
            EXIT_FAILED,
            format!("Account {name} does not exist"),
        ));
    }
    if opts.flags.contains("-A") && opts.flags.contains("-I") {
        return Err(Outcome::err(EXIT_USAGE, "-A and -I are exclusive"));
    }
    if let Some(list) = opts.get("--add-user") {
        for raw in list.split(',').filter(|s| !s.is_empty()) {
            // `+name` (active member) as upstream sends it, `-name` inactive, or plain.
            let user = raw.trim_start_matches(['+', '-']);
            if user.is_empty() {
                return Err(Outcome::err(EXIT_USAGE, format!("Invalid user: {raw}")));
            }
            let entry = state.users.entry(user.to_owned()).or_insert(User {
                default_account: String::new(),
                active: true,
            });
            if entry.default_account.is_empty() {
                entry.default_account = name.clone();
            }
            if let Some(acc) = state.accounts.get_mut(&name) {
                acc.users.insert(user.to_owned());
            }
        }
    }
    if let Some(list) = opts.get("--del-user") {
        for user in list.split(',').filter(|s| !s.is_empty()) {
            let removed = state
                .accounts
                .get_mut(&name)
                .is_some_and(|acc| acc.users.remove(user));
            if !removed {
                return Err(Outcome::err(
                    EXIT_FAILED,
                    format!("User {user} is not a member of account {name}"),
                ));
            }
            clear_default(state, user, &name);
        }
    }
    if let Some(acc) = state.accounts.get_mut(&name) {
        if opts.flags.contains("-A") {
            acc.active = true;
        }
        if opts.flags.contains("-I") {
            acc.active = false;
        }
        if let Some(d) = opts.get("-d") {
            acc.description = d.to_owned();
        }
        if let Some(o) = opts.get("-o") {
            acc.organization = o.to_owned();
        }
    }
    Ok(Outcome::ok("Successfully modified 1 account\n"))
}

fn create_fund(state: &mut MoabState, opts: &Opts) -> Result<Outcome, Outcome> {
    let account = required(opts, "-a", "Account name")?;
    if !state.accounts.contains_key(account) {
        return Err(Outcome::err(
            EXIT_FAILED,
            format!("Account {account} does not exist"),
        ));
    }
    state.next_fund += 1;
    let id = state.next_fund;
    state.funds.insert(
        id,
        Fund {
            account: account.to_owned(),
            allocated: 0.0,
            balance: 0.0,
        },
    );
    Ok(Outcome::ok(format!("Successfully created 1 fund\n{id}\n")))
}

fn list_funds(state: &MoabState, opts: &Opts) -> Outcome {
    let rows = state
        .funds
        .iter()
        .filter(|(_, f)| opts.get("-a").is_none_or(|a| a == f.account))
        .filter(|(id, _)| opts.get("-f").is_none_or(|f| f == id.to_string()))
        .filter(|(_, f)| {
            opts.get("-u").is_none_or(|u| {
                state
                    .accounts
                    .get(&f.account)
                    .is_some_and(|a| a.users.contains(u))
            })
        })
        .map(|(id, f)| {
            BTreeMap::from([
                ("Id", id.to_string()),
                ("Name", f.account.clone()),
                ("Constraints", format!("Account={}", f.account)),
                ("Allocated", fmt_num(f.allocated)),
                ("Balance", fmt_num(f.balance)),
            ])
        })
        .collect();
    table(
        opts,
        &["Id", "Name", "Balance", "Constraints"],
        &["Id", "Name", "Constraints", "Allocated", "Balance"],
        rows,
    )
}

fn fund_id(opts: &Opts) -> Result<u64, Outcome> {
    let text = required(opts, "-f", "Fund id")?;
    text.parse()
        .map_err(|_| Outcome::err(EXIT_USAGE, format!("Invalid fund id: {text}")))
}

fn delete_fund(state: &mut MoabState, opts: &Opts) -> Result<Outcome, Outcome> {
    let id = fund_id(opts)?;
    if state.funds.remove(&id).is_none() {
        return Err(Outcome::err(
            EXIT_FAILED,
            format!("Fund {id} does not exist"),
        ));
    }
    Ok(Outcome::ok("Successfully deleted 1 fund\n"))
}

fn deposit(state: &mut MoabState, opts: &Opts, sign: f64) -> Result<Outcome, Outcome> {
    let value = amount(required(opts, "-z", "Amount")?)?;
    if value <= 0.0 {
        return Err(Outcome::err(EXIT_USAGE, "Amount must be positive"));
    }
    let id = match opts.get("-f") {
        Some(_) => fund_id(opts)?,
        None => {
            let account = required(opts, "-a", "Account name or fund id")?;
            let ids: Vec<u64> = state
                .funds
                .iter()
                .filter(|(_, f)| f.account == account)
                .map(|(id, _)| *id)
                .collect();
            match ids.as_slice() {
                [one] => *one,
                [] => {
                    return Err(Outcome::err(
                        EXIT_FAILED,
                        format!("No funds found for account {account}"),
                    ));
                }
                _ => {
                    return Err(Outcome::err(
                        EXIT_FAILED,
                        format!("More than one fund for account {account}: use -f"),
                    ));
                }
            }
        }
    };
    let Some(fund) = state.funds.get_mut(&id) else {
        return Err(Outcome::err(
            EXIT_FAILED,
            format!("Fund {id} does not exist"),
        ));
    };
    if let Some(account) = opts.get("-a")
        && account != fund.account
    {
        return Err(Outcome::err(
            EXIT_FAILED,
            format!("Fund {id} is not a fund of account {account}"),
        ));
    }
    if sign < 0.0 && fund.allocated < value {
        return Err(Outcome::err(
            EXIT_FAILED,
            format!("Insufficient funds in fund {id}"),
        ));
    }
    fund.allocated += sign * value;
    fund.balance += sign * value;
    let (verb, prep) = if sign > 0.0 {
        ("deposited", "into")
    } else {
        ("withdrew", "from")
    };
    Ok(Outcome::ok(format!(
        "Successfully {verb} {} credits {prep} fund {id}\n",
        fmt_num(value)
    )))
}

fn list_users(state: &MoabState, opts: &Opts) -> Outcome {
    let rows = state
        .users
        .iter()
        .filter(|(name, _)| match opts.get("-a") {
            Some(a) => state
                .accounts
                .get(a)
                .is_some_and(|acc| acc.users.contains(*name)),
            None => true,
        })
        .filter(|(name, _)| opts.get("-u").is_none_or(|u| u == name.as_str()))
        .map(|(name, u)| {
            BTreeMap::from([
                ("Name", name.clone()),
                ("Active", flag(u.active)),
                ("DefaultAccount", u.default_account.clone()),
            ])
        })
        .collect();
    table(
        opts,
        &["Name", "Active", "DefaultAccount"],
        &["Name", "Active", "DefaultAccount"],
        rows,
    )
}

/// `YYYY-MM-DD` (start or end of day) or `YYYY-MM-DD[ T]HH:MM[:SS]`, normalised for comparison.
fn moment(text: &str, end_of_day: bool) -> Result<String, Outcome> {
    let t = text.trim().replace('T', " ");
    let shaped = |s: &str, pattern: &str| {
        s.len() == pattern.len()
            && s.chars()
                .zip(pattern.chars())
                .all(|(c, p)| if p == 'd' { c.is_ascii_digit() } else { c == p })
    };
    if shaped(&t, "dddd-dd-dd") {
        Ok(if end_of_day {
            format!("{t} 23:59:59")
        } else {
            format!("{t} 00:00:00")
        })
    } else if shaped(&t, "dddd-dd-dd dd:dd") {
        Ok(format!("{t}:00"))
    } else if shaped(&t, "dddd-dd-dd dd:dd:dd") {
        Ok(t)
    } else {
        Err(Outcome::err(EXIT_USAGE, format!("Invalid time: {text}")))
    }
}

fn list_usage(state: &MoabState, opts: &Opts) -> Result<Outcome, Outcome> {
    let start = opts.get("-s").map(|s| moment(s, false)).transpose()?;
    let end = opts.get("-e").map(|s| moment(s, true)).transpose()?;
    let rows = state
        .usage
        .iter()
        .filter(|r| opts.get("-a").is_none_or(|a| a == r.account))
        .filter(|r| opts.get("-u").is_none_or(|u| u == r.user))
        .filter(|r| start.as_ref().is_none_or(|s| r.time >= *s))
        .filter(|r| end.as_ref().is_none_or(|e| r.time <= *e))
        .map(|r| {
            BTreeMap::from([
                ("Id", r.id.to_string()),
                ("Account", r.account.clone()),
                ("User", r.user.clone()),
                ("Charge", fmt_num(r.charge)),
                ("Time", r.time.clone()),
            ])
        })
        .collect();
    let known = ["Id", "Account", "User", "Charge", "Time"];
    Ok(table(opts, &known, &known, rows))
}

fn charge(state: &mut MoabState, opts: &Opts, now: &str) -> Result<Outcome, Outcome> {
    let account = required(opts, "-a", "Account name")?.to_owned();
    let user = required(opts, "-u", "User name")?.to_owned();
    let value = amount(required(opts, "-z", "Charge")?)?;
    if value < 0.0 {
        return Err(Outcome::err(EXIT_USAGE, "Charge must not be negative"));
    }
    let time = match opts.get("-t").or(opts.get("--time")) {
        Some(t) => moment(t, false)?,
        None => now.to_owned(),
    };
    let member = state
        .accounts
        .get(&account)
        .is_some_and(|a| a.users.contains(&user));
    if !member {
        return Err(Outcome::err(
            EXIT_FAILED,
            format!("User {user} is not a member of account {account}"),
        ));
    }
    if let Some(fund) = state.funds.values_mut().find(|f| f.account == account) {
        fund.balance -= value;
    }
    state.next_record += 1;
    state.usage.push(UsageRecord {
        id: state.next_record,
        account,
        user,
        charge: value,
        time,
    });
    Ok(Outcome::ok(format!(
        "Successfully charged {} credits\n",
        fmt_num(value)
    )))
}

/// The state file in `dir`.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Read the state kept in `dir` (empty when there is none yet). Take the lock first.
pub fn load(dir: &Path) -> std::io::Result<MoabState> {
    match File::open(state_file(dir)) {
        Ok(mut f) => {
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            if text.trim().is_empty() {
                Ok(MoabState::default())
            } else {
                serde_json::from_str(&text).map_err(std::io::Error::other)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MoabState::default()),
        Err(e) => Err(e),
    }
}

/// Run one program against the state kept in `dir`, under an exclusive lock; the state is
/// replaced atomically (write to a temporary file, rename).
pub fn run_in_dir(
    dir: &Path,
    program: &str,
    args: &[String],
    now: &str,
) -> std::io::Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("state.json.lock"))?;
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| std::io::Error::from(errno))?;
    let mut state = load(dir)?;
    let outcome = execute(&mut state, program, args, now);
    let tmp = dir.join(format!("state.json.{}.tmp", std::process::id()));
    let mut f = File::create(&tmp)?;
    f.write_all(serde_json::to_string_pretty(&state)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, state_file(dir))?;
    drop(lock);
    Ok(outcome)
}

/// Write `dir/bin/mam-*` wrappers calling `exe moab-exec --state dir <program>`; returns the
/// bin directory.
pub fn install(dir: &Path, exe: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    for program in PROGRAMS {
        let path = bin.join(program);
        let script = format!(
            "#!/bin/sh\nexec {} moab-exec --state {} {program} \"$@\"\n",
            quote(exe),
            quote(dir)
        );
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    if !state_file(dir).exists() {
        let empty = serde_json::to_string_pretty(&MoabState::default())?;
        std::fs::write(state_file(dir), empty)?;
    }
    Ok(bin)
}

/// The current local time as the double records it.
pub fn now_local() -> String {
    jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &mut MoabState, line: &[&str]) -> Outcome {
        let args: Vec<String> = line[1..].iter().map(|s| (*s).to_owned()).collect();
        execute(state, line[0], &args, "2026-11-15 10:00:00")
    }

    #[test]
    fn account_fund_deposit_users_usage() {
        let mut s = MoabState::default();
        let o = run(
            &mut s,
            &[
                "mam-create-account",
                "-a",
                "a1",
                "-d",
                "My \"x\" res",
                "-o",
                "p1",
            ],
        );
        assert_eq!(o.code, 0, "{o:?}");
        assert_eq!(
            run(&mut s, &["mam-create-account", "-a", "a1"]).code,
            EXIT_FAILED
        );
        assert_eq!(run(&mut s, &["mam-create-fund", "-a", "a1"]).code, 0);
        let list = [
            "mam-list-funds",
            "--raw",
            "--quiet",
            "-a",
            "a1",
            "--show",
            "Id",
        ];
        assert_eq!(run(&mut s, &list).stdout, "1\n");
        let dep = ["mam-deposit", "-a", "a1", "-z", "100", "-f", "1"];
        assert_eq!(run(&mut s, &dep).code, 0);
        let o = run(
            &mut s,
            &[
                "mam-list-accounts",
                "--raw",
                "--quiet",
                "--show",
                "Name,Description,Organization",
            ],
        );
        assert_eq!(o.stdout, "a1|My \"x\" res|p1\n");
        let add = ["mam-modify-account", "--add-user", "+u1", "-a", "a1"];
        assert_eq!(run(&mut s, &add).code, 0);
        let o = run(
            &mut s,
            &[
                "mam-list-users",
                "-a",
                "a1",
                "--raw",
                "--show",
                "Name,DefaultAccount",
                "--quiet",
            ],
        );
        assert_eq!(o.stdout, "u1|a1\n");
        let charge = ["mam-charge", "-a", "a1", "-u", "u1", "-z", "2.5"];
        assert_eq!(run(&mut s, &charge).code, 0);
        let o = run(
            &mut s,
            &[
                "mam-list-usagerecords",
                "--raw",
                "--quiet",
                "--show",
                "Account,User,Charge",
                "-a",
                "a1",
                "-s",
                "2026-11-01",
                "-e",
                "2026-11-30",
            ],
        );
        assert_eq!(o.stdout, "a1|u1|2.5\n");
        let o = run(
            &mut s,
            &[
                "mam-list-funds",
                "--raw",
                "--quiet",
                "-u",
                "u1",
                "-a",
                "a1",
                "--show",
                "Constraints,Balance",
            ],
        );
        assert_eq!(o.stdout, "Account=a1|97.5\n");
        let del = ["mam-modify-account", "--del-user", "u1", "-a", "a1"];
        assert_eq!(run(&mut s, &del).code, 0);
        assert_eq!(run(&mut s, &del).code, EXIT_FAILED);
        assert_eq!(run(&mut s, &["mam-delete-account", "-a", "a1"]).code, 0);
        assert_eq!(run(&mut s, &["mam-delete-fund", "-f", "1"]).code, 0);
        assert_eq!(
            run(&mut s, &["mam-delete-fund", "-f", "1"]).code,
            EXIT_FAILED
        );
        assert_eq!(
            run(&mut s, &["mam-list-accounts", "--bogus"]).code,
            EXIT_USAGE
        );
        let bad_field = ["mam-list-accounts", "--show", "Nope"];
        assert_eq!(run(&mut s, &bad_field).code, EXIT_USAGE);
    }

    #[test]
    fn concurrent_calls_through_the_file_are_serialized() {
        let dir = std::env::temp_dir().join(format!("moab-sim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let args = vec!["-a".to_owned(), format!("acc{i}")];
                    run_in_dir(&dir, "mam-create-account", &args, "2026-01-01 00:00:00")
                        .expect("run")
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("thread").code, 0);
        }
        let args: Vec<String> = ["--raw", "--quiet", "--show", "Name"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let out = run_in_dir(&dir, "mam-list-accounts", &args, "2026-01-01 00:00:00").expect("run");
        assert_eq!(out.stdout.lines().count(), 8);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
