//! A stateful SLURM double (feature `testkit`): an in-memory accounting database behind
//! [`backend_api::testkit::RecordingRunner`] that understands the sacctmgr and sacct commands this
//! backend issues, so unit tests and the conformance suite run without slurmdbd or root.
//!
//! Modelled: `add account`, `remove account`, `modify account … set GrpTRESMins=|qos=|
//! GrpSubmitJobs=|parent=`, `add user`, `remove user`, `modify user … set MaxTRESMins=`,
//! `show assoc … where accounts=|parent=`, `load file=` (the files this backend writes), `list user`, `list tres` (when TRES are configured) and
//! `sacct` (usage rows given by the test). No-op writes answer as sacctmgr does ("Nothing new
//! added", "Nothing deleted", exit 1). Anything else answers nothing (empty success).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use backend_api::command::CommandLine;
use backend_api::testkit::{Answer, SiteDouble};

/// One account of the double.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DoubleAccount {
    pub parent: String,
    pub grp_tres_mins: String,
    pub qos: String,
    pub grp_submit_jobs: String,
    /// username → MaxTRESMins.
    pub users: BTreeMap<String, String>,
}

#[derive(Default)]
struct Db {
    accounts: BTreeMap<String, DoubleAccount>,
    /// username → DefaultAccount.
    user_defaults: BTreeMap<String, String>,
    tres: Option<String>,
    /// sacct rows `Account|AllocTRES|ElapsedRaw|User`, by account.
    usage_rows: BTreeMap<String, Vec<String>>,
    /// `sacctmgr load` calls so far.
    loads: usize,
}

/// `'value'` → `value`.
fn unquote(value: &str) -> String {
    value.trim().trim_matches('\'').to_owned()
}

impl Db {
    /// A load file as this backend writes it: `Parent -` lines, accounts under them, users under
    /// them. As sacctmgr 22.05 does, a missing account is added and an existing one is moved
    /// under the file's parent ("Changed Parent"); an association is added when missing; a new
    /// user takes the given default account. Answers the report `sacctmgr -P load` prints.
    fn load(&mut self, text: &str) -> String {
        let mut cluster = String::new();
        let mut parent = String::new();
        let mut changed = String::new();
        let mut added_accounts: Vec<(String, String, String)> = Vec::new();
        let mut added_users: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let Some((kind, rest)) = line.split_once(" - ") else {
                continue;
            };
            let mut fields = rest.split(':');
            let name = unquote(fields.next().unwrap_or_default());
            let options: BTreeMap<String, String> = fields
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), unquote(v)))
                .collect();
            match kind {
                "Cluster" => cluster = name,
                "Parent" => parent = name,
                "Account" => match self.accounts.get_mut(&name) {
                    Some(existing) if existing.parent != parent => {
                        changed.push_str(&format!(
                            " Changed Parent                for Account {name:<16} {} -> {parent}\n",
                            existing.parent
                        ));
                        existing.parent.clone_from(&parent);
                    }
                    Some(_) => {}
                    None => {
                        let grp = options.get("grptresmins").cloned().unwrap_or_default();
                        self.accounts.insert(
                            name.clone(),
                            DoubleAccount {
                                parent: parent.clone(),
                                grp_tres_mins: grp.clone(),
                                qos: "normal".to_owned(),
                                ..Default::default()
                            },
                        );
                        added_accounts.push((name, parent.clone(), grp));
                    }
                },
                "User" => {
                    if let Some(account) = self.accounts.get_mut(&parent)
                        && !account.users.contains_key(&name)
                    {
                        account.users.insert(name.clone(), String::new());
                        added_users.push((name.clone(), parent.clone()));
                    }
                    let default = options.get("defaultaccount").cloned().unwrap_or_default();
                    self.user_defaults.entry(name).or_insert(default);
                }
                _ => {}
            }
        }
        let mut out = format!("For cluster {cluster}\n{changed}");
        if added_accounts.is_empty() && added_users.is_empty() {
            out.push_str(" Nothing new added.\n");
            return out;
        }
        if !added_accounts.is_empty() {
            out.push_str("Account Associations\nAccount|ParentName|Share|GrpTRESMins\n");
            for (name, parent, grp) in &added_accounts {
                out.push_str(&format!("{name}|{parent}||{grp}\n"));
            }
            out.push_str("------------------------------\n\n");
        }
        if !added_users.is_empty() {
            out.push_str("User Associations\nUser|Account|Share|GrpTRESMins\n");
            for (user, account) in &added_users {
                out.push_str(&format!("{user}|{account}||\n"));
            }
            out.push_str("------------------------------\n");
        }
        out
    }
}

/// The in-memory SLURM accounting database. Share it with `Arc` between the runner and the test.
#[derive(Default)]
pub struct SlurmDouble {
    db: Mutex<Db>,
}

/// `key=a,b` → `[a, b]` from the argument that starts with `key=` (case-insensitive key).
fn list_arg(args: &[String], key: &str) -> Vec<String> {
    args.iter()
        .find_map(|a| {
            let (k, v) = a.split_once('=')?;
            k.eq_ignore_ascii_case(key).then_some(v)
        })
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The assignments after `set`.
fn set_args(args: &[String]) -> Vec<(String, String)> {
    args.iter()
        .skip_while(|a| a.as_str() != "set")
        .skip(1)
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect()
}

impl SlurmDouble {
    pub fn new() -> Self {
        SlurmDouble::default()
    }

    fn lock(&self) -> MutexGuard<'_, Db> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Put an account into the database (the tree top, or something created out of band).
    pub fn seed(&self, name: &str, parent: &str) {
        self.lock().accounts.insert(
            name.to_owned(),
            DoubleAccount {
                parent: parent.to_owned(),
                qos: "normal".to_owned(),
                ..Default::default()
            },
        );
    }

    /// Answer `list tres` with these `type|name|id` rows.
    pub fn set_tres(&self, rows: &str) {
        self.lock().tres = Some(rows.to_owned());
    }

    /// A job of `user` in `account` holding `alloc_tres` (e.g. `cpu=2,mem=1G`) for `seconds`.
    pub fn add_job(&self, account: &str, user: &str, alloc_tres: &str, seconds: u64) {
        self.lock()
            .usage_rows
            .entry(account.to_owned())
            .or_default()
            .push(format!("{account}|{alloc_tres}|{seconds}|{user}"));
    }

    pub fn account(&self, name: &str) -> Option<DoubleAccount> {
        self.lock().accounts.get(name).cloned()
    }

    /// How many `sacctmgr load` calls the double has answered.
    pub fn loads(&self) -> usize {
        self.lock().loads
    }

    pub fn account_names(&self) -> Vec<String> {
        self.lock().accounts.keys().cloned().collect()
    }

    fn answer_args(&self, program: &str, args: &[String]) -> Option<Answer> {
        if program == "sacct" {
            let db = self.lock();
            let mut out = String::new();
            for account in list_arg(args, "--accounts") {
                for row in db.usage_rows.get(&account).into_iter().flatten() {
                    out.push_str(row);
                    out.push('\n');
                }
            }
            return Some(Ok(out));
        }
        if program != "sacctmgr" {
            return None;
        }
        let words: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let mut db = self.lock();
        match words.as_slice() {
            ["list", "tres", ..] => db.tres.clone().map(Ok),
            ["add", "account", names, ..] => {
                let parent = list_arg(args, "parent").join(",");
                let grp = list_arg(args, "GrpTRESMins").join(",");
                let mut added = 0;
                for name in names.split(',') {
                    if !db.accounts.contains_key(name) {
                        db.accounts.insert(
                            name.to_owned(),
                            DoubleAccount {
                                parent: parent.clone(),
                                grp_tres_mins: grp.clone(),
                                qos: "normal".to_owned(),
                                ..Default::default()
                            },
                        );
                        added += 1;
                    }
                }
                Some(if added == 0 {
                    Err(" Nothing new added.".to_owned())
                } else {
                    Ok(" Adding Account(s)\n".to_owned())
                })
            }
            ["add", "user", users, ..] => {
                let default = list_arg(args, "DefaultAccount").join(",");
                let mut added = 0;
                for account in list_arg(args, "account") {
                    if let Some(a) = db.accounts.get_mut(&account) {
                        for user in users.split(',') {
                            if !a.users.contains_key(user) {
                                a.users.insert(user.to_owned(), String::new());
                                added += 1;
                            }
                        }
                    }
                }
                for user in users.split(',') {
                    db.user_defaults
                        .entry(user.to_owned())
                        .or_insert_with(|| default.clone());
                }
                Some(if added == 0 {
                    Err(" Nothing new added.".to_owned())
                } else {
                    Ok(" Adding User(s)\n".to_owned())
                })
            }
            ["remove", "account", "where", ..] => {
                let mut removed = 0;
                for name in list_arg(args, "name") {
                    removed += usize::from(db.accounts.remove(&name).is_some());
                }
                Some(if removed == 0 {
                    Err(" Nothing deleted".to_owned())
                } else {
                    Ok(" Deleting accounts...\n".to_owned())
                })
            }
            ["remove", "user", "where", ..] => {
                let mut removed = 0;
                for account in list_arg(args, "account") {
                    if let Some(a) = db.accounts.get_mut(&account) {
                        for user in list_arg(args, "name") {
                            removed += usize::from(a.users.remove(&user).is_some());
                        }
                    }
                }
                Some(if removed == 0 {
                    Err(" Nothing deleted".to_owned())
                } else {
                    Ok(" Deleting user associations...\n".to_owned())
                })
            }
            ["modify", "account", "where", ..] => {
                let assignments = set_args(args);
                let mut changed = false;
                for name in list_arg(args, "name") {
                    let Some(a) = db.accounts.get_mut(&name) else {
                        continue;
                    };
                    for (key, value) in &assignments {
                        let field = match key.as_str() {
                            "grptresmins" => &mut a.grp_tres_mins,
                            "qos" => &mut a.qos,
                            "grpsubmitjobs" => &mut a.grp_submit_jobs,
                            "parent" => &mut a.parent,
                            _ => continue,
                        };
                        // -1 clears a limit in sacctmgr.
                        let value = if value == "-1" { "" } else { value.as_str() };
                        if field != value {
                            *field = value.to_owned();
                            changed = true;
                        }
                    }
                }
                Some(if changed {
                    Ok(" Modified account associations...\n".to_owned())
                } else {
                    Err(" Nothing modified".to_owned())
                })
            }
            ["modify", "user", "where", ..] => {
                let value = set_args(args)
                    .into_iter()
                    .find(|(k, _)| k == "maxtresmins")
                    .map(|(_, v)| if v == "-1" { String::new() } else { v })?;
                let mut changed = false;
                for account in list_arg(args, "account") {
                    if let Some(a) = db.accounts.get_mut(&account) {
                        for user in list_arg(args, "name") {
                            if let Some(current) = a.users.get_mut(&user)
                                && *current != value
                            {
                                current.clone_from(&value);
                                changed = true;
                            }
                        }
                    }
                }
                Some(if changed {
                    Ok(" Modified user associations...\n".to_owned())
                } else {
                    Err(" Nothing modified".to_owned())
                })
            }
            ["load", ..] => {
                let path = list_arg(args, "file").join(",");
                let text = match std::fs::read_to_string(&path) {
                    Ok(text) => text,
                    Err(e) => return Some(Err(format!(" sacctmgr: error: {path}: {e}"))),
                };
                db.loads += 1;
                Some(Ok(db.load(&text)))
            }
            ["list", "user", "where", ..] => {
                let mut out = String::new();
                for user in list_arg(args, "name") {
                    if let Some(default) = db.user_defaults.get(&user) {
                        out.push_str(&format!("{user}|{default}\n"));
                    }
                }
                Some(Ok(out))
            }
            ["show", "assoc", _, "where", filter, ..] => {
                let mut out = String::new();
                let mut row = |name: &str, a: &DoubleAccount| {
                    out.push_str(&format!(
                        "{name}|{}||{}|{}|{}|\n",
                        a.parent, a.grp_tres_mins, a.qos, a.grp_submit_jobs
                    ));
                    for (user, max) in &a.users {
                        out.push_str(&format!("{name}||{user}||{}||{max}\n", a.qos));
                    }
                };
                if let Some(names) = filter.strip_prefix("accounts=") {
                    let wanted: BTreeSet<&str> = names.split(',').collect();
                    for name in wanted {
                        if let Some(a) = db.accounts.get(name) {
                            row(name, a);
                        }
                    }
                } else if let Some(parent) = filter.strip_prefix("parent=") {
                    for (name, a) in db.accounts.iter().filter(|(_, a)| a.parent == parent) {
                        row(name, a);
                    }
                }
                Some(Ok(out))
            }
            _ => None,
        }
    }
}

impl SiteDouble for SlurmDouble {
    fn answer(&self, command: &CommandLine) -> Option<Answer> {
        let program = command
            .program
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.answer_args(&program, &command.args)
    }
}
