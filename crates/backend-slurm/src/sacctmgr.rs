//! Argument vectors for sacctmgr / sacct / scancel / sinfo and parsers for their output.
//!
//! Every sacctmgr call carries `--parsable2 --noheader --immediate` (no prompts, `|`-separated
//! rows). With `cluster_name` set, `cluster=<name>` goes into the `where` part of sacctmgr commands
//! (before `set`, or it would be read as a value to set) and `--cluster=<name>` is prepended for
//! sacct and scancel. Callers validate every name before it reaches these builders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use backend_api::command::{CommandLine, parsable};

/// Builds command lines for one cluster.
#[derive(Clone, Debug)]
pub struct SlurmCommands {
    bin_path: String,
    cluster: Option<String>,
}

/// Columns of the association query used for existence, parents, limits, QoS and users.
pub const ASSOC_FORMAT: &str = "Account,ParentName,User,GrpTRESMins,QOS,GrpSubmitJobs,MaxTRESMins";
/// The first columns of [`ASSOC_FORMAT`]: what exists, where, with whom. Half the cost of the
/// full read: without TRES or QoS columns sacctmgr does not fetch those lists from slurmdbd
/// (0.18 s against 0.36 s a call here).
pub const PRESENCE_FORMAT: &str = "Account,ParentName,User";

/// Options of a user association.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct UserAssocOptions {
    pub default_account: Option<String>,
    /// Sorted partition names.
    pub partitions: Vec<String>,
    pub qos_levels: Vec<String>,
    pub default_qos: Option<String>,
}

impl SlurmCommands {
    pub fn new(bin_path: &str, cluster: Option<&str>) -> Self {
        SlurmCommands {
            bin_path: bin_path.trim_end_matches('/').to_owned(),
            cluster: cluster.map(str::to_owned),
        }
    }

    fn program(&self, name: &str) -> PathBuf {
        if self.bin_path.is_empty() {
            PathBuf::from(name)
        } else {
            PathBuf::from(format!("{}/{name}", self.bin_path))
        }
    }

    fn sacctmgr(&self) -> CommandLine {
        CommandLine::new(self.program("sacctmgr")).args([
            "--parsable2",
            "--noheader",
            "--immediate",
        ])
    }

    fn cluster_token(&self) -> Option<String> {
        self.cluster.as_ref().map(|c| format!("cluster={c}"))
    }

    fn with_cluster(&self, cmd: CommandLine) -> CommandLine {
        match self.cluster_token() {
            Some(token) => cmd.arg(token),
            None => cmd,
        }
    }

    /// `sacctmgr --version` (no flags).
    pub fn version(&self) -> CommandLine {
        CommandLine::new(self.program("sacctmgr")).arg("--version")
    }

    /// Ping: `list account` limited to one account so the output stays small.
    pub fn ping(&self, account: &str) -> CommandLine {
        self.sacctmgr()
            .args(["list", "account", account, "format=Account"])
    }

    /// Every account name.
    pub fn list_accounts(&self) -> CommandLine {
        self.sacctmgr().args(["list", "account", "format=Account"])
    }

    pub fn list_tres(&self) -> CommandLine {
        self.sacctmgr().args(["list", "tres"])
    }

    pub fn list_clusters(&self) -> CommandLine {
        self.sacctmgr().args(["list", "cluster", "format=cluster"])
    }

    /// Account-level and user rows of the given accounts: existence, parents, limits, QoS, users.
    pub fn show_assocs(&self, accounts: &[String]) -> CommandLine {
        let cmd = self.sacctmgr().args([
            "show".to_owned(),
            "assoc".to_owned(),
            format!("format={ASSOC_FORMAT}"),
            "where".to_owned(),
            format!("accounts={}", accounts.join(",")),
        ]);
        self.with_cluster(cmd)
    }

    /// [`show_assocs`](Self::show_assocs) without limits or QoS ([`PRESENCE_FORMAT`]).
    pub fn show_presence(&self, accounts: &[String]) -> CommandLine {
        let cmd = self.sacctmgr().args([
            "show".to_owned(),
            "assoc".to_owned(),
            format!("format={PRESENCE_FORMAT}"),
            "where".to_owned(),
            format!("accounts={}", accounts.join(",")),
        ]);
        self.with_cluster(cmd)
    }

    /// Child accounts (and nothing else) of `parent`.
    pub fn show_children(&self, parent: &str) -> CommandLine {
        let cmd = self.sacctmgr().args([
            "show".to_owned(),
            "assoc".to_owned(),
            "format=Account,ParentName,User".to_owned(),
            "where".to_owned(),
            format!("parent={parent}"),
        ]);
        self.with_cluster(cmd)
    }

    /// `add account a,b parent=P description=D organization=O [GrpTRESMins=..] [cluster=C]`.
    pub fn add_accounts(
        &self,
        names: &[String],
        parent: &str,
        description: &str,
        organization: &str,
        grp_tres_mins: &str,
    ) -> CommandLine {
        let mut cmd = self.sacctmgr().args([
            "add".to_owned(),
            "account".to_owned(),
            names.join(","),
            format!("parent={parent}"),
        ]);
        if !description.is_empty() {
            cmd = cmd.arg(format!("description={description}"));
        }
        if !organization.is_empty() {
            cmd = cmd.arg(format!("organization={organization}"));
        }
        if !grp_tres_mins.is_empty() {
            cmd = cmd.arg(format!("GrpTRESMins={grp_tres_mins}"));
        }
        self.with_cluster(cmd)
    }

    /// `modify account where name=a,b [cluster=C] set <assignments>`.
    pub fn modify_accounts(&self, names: &[String], assignments: &[String]) -> CommandLine {
        let mut cmd = self.sacctmgr().args([
            "modify".to_owned(),
            "account".to_owned(),
            "where".to_owned(),
            format!("name={}", names.join(",")),
        ]);
        if let Some(token) = self.cluster_token() {
            cmd = cmd.arg(token);
        }
        cmd.arg("set").args(assignments.iter().cloned())
    }

    pub fn set_grp_tres_mins(&self, names: &[String], tres: &str) -> CommandLine {
        self.modify_accounts(names, &[format!("GrpTRESMins={tres}")])
    }

    pub fn set_qos(&self, account: &str, qos: &str) -> CommandLine {
        self.modify_accounts(&[account.to_owned()], &[format!("qos={qos}")])
    }

    pub fn set_grp_submit_jobs(&self, account: &str, value: i64) -> CommandLine {
        self.modify_accounts(&[account.to_owned()], &[format!("GrpSubmitJobs={value}")])
    }

    pub fn reparent(&self, account: &str, parent: &str) -> CommandLine {
        self.modify_accounts(&[account.to_owned()], &[format!("parent={parent}")])
    }

    /// `remove account where name=a [cluster=C]`.
    pub fn remove_accounts(&self, names: &[String]) -> CommandLine {
        let cmd = self.sacctmgr().args([
            "remove".to_owned(),
            "account".to_owned(),
            "where".to_owned(),
            format!("name={}", names.join(",")),
        ]);
        self.with_cluster(cmd)
    }

    /// `add user u1,u2 account=a1,a2 [DefaultAccount=d] [Partition(s)=..] [QosLevel=..] [DefaultQOS=..] [Share=parent]`.
    /// sacctmgr creates every user × account association.
    pub fn add_users(
        &self,
        users: &[String],
        accounts: &[String],
        options: &UserAssocOptions,
    ) -> CommandLine {
        let mut cmd = self.sacctmgr().args([
            "add".to_owned(),
            "user".to_owned(),
            users.join(","),
            format!("account={}", accounts.join(",")),
        ]);
        if let Some(d) = &options.default_account {
            cmd = cmd.arg(format!("DefaultAccount={d}"));
        }
        let single_partition = options.partitions.len() == 1 && options.qos_levels.is_empty();
        if single_partition {
            // Upstream's single-partition form has no Share=parent.
            cmd = cmd.arg(format!("Partition={}", options.partitions[0]));
        } else if !options.partitions.is_empty() {
            cmd = cmd.arg(format!("Partitions={}", options.partitions.join(",")));
        }
        if !options.qos_levels.is_empty() {
            cmd = cmd.arg(format!("QosLevel={}", options.qos_levels.join(",")));
            if let Some(q) = &options.default_qos {
                cmd = cmd.arg(format!("DefaultQOS={q}"));
            }
        }
        if !single_partition {
            cmd = cmd.arg("Share=parent");
        }
        self.with_cluster(cmd)
    }

    /// `sacctmgr -i load file=<path> [cluster=C]`: creates a whole tree in one call.
    /// `cluster=` overrides the file's `Cluster -` line; both name the same cluster.
    pub fn load(&self, path: &std::path::Path) -> CommandLine {
        // `-P`: the report of what it added comes with whole names (the table form cuts them
        // at ten characters), so it can confirm the load without a read-back.
        let cmd = CommandLine::new(self.program("sacctmgr")).args([
            "-i".to_owned(),
            "-P".to_owned(),
            "load".to_owned(),
            format!("file={}", path.display()),
        ]);
        self.with_cluster(cmd)
    }

    /// `list user where name=u1,u2 format=User,DefaultAccount` (users are cluster-independent).
    pub fn list_users(&self, users: &[String]) -> CommandLine {
        self.sacctmgr().args([
            "list".to_owned(),
            "user".to_owned(),
            "where".to_owned(),
            format!("name={}", users.join(",")),
            "format=User,DefaultAccount".to_owned(),
        ])
    }

    /// `remove user where name=u1,u2 and account=a1,a2 [cluster=C]`: every user × account
    /// association.
    pub fn remove_users(&self, users: &[String], accounts: &[String]) -> CommandLine {
        let cmd = self.sacctmgr().args([
            "remove".to_owned(),
            "user".to_owned(),
            "where".to_owned(),
            format!("name={}", users.join(",")),
            "and".to_owned(),
            format!("account={}", accounts.join(",")),
        ]);
        self.with_cluster(cmd)
    }

    /// `modify user where name=u and account=a [cluster=C] set MaxTRESMins=..`.
    pub fn set_user_max_tres_mins(&self, user: &str, account: &str, tres: &str) -> CommandLine {
        let mut cmd = self.sacctmgr().args([
            "modify".to_owned(),
            "user".to_owned(),
            "where".to_owned(),
            format!("name={user}"),
            "and".to_owned(),
            format!("account={account}"),
        ]);
        if let Some(token) = self.cluster_token() {
            cmd = cmd.arg(token);
        }
        cmd.arg("set").arg(format!("MaxTRESMins={tres}"))
    }

    /// One sacct call for all accounts of a report cycle. AllocTRES (what the job held) and
    /// ElapsedRaw (seconds) rather than ReqTRES/Elapsed: exact, and what SLURM's own limits count.
    pub fn usage(&self, accounts: &[String], start: &str, end: &str) -> CommandLine {
        let mut cmd = CommandLine::new(self.program("sacct")).args(["--parsable2", "--noheader"]);
        if let Some(c) = &self.cluster {
            cmd = cmd.arg(format!("--cluster={c}"));
        }
        cmd.args([
            "--noconvert".to_owned(),
            "--truncate".to_owned(),
            "--allocations".to_owned(),
            "--allusers".to_owned(),
            format!("--starttime={start}"),
            format!("--endtime={end}"),
            format!("--accounts={}", accounts.join(",")),
            "--format=Account,AllocTRES,ElapsedRaw,User".to_owned(),
        ])
    }

    /// `scancel [--cluster=c] [-u user] -A account -f`.
    pub fn cancel_jobs(&self, account: &str, user: Option<&str>) -> CommandLine {
        let mut cmd = CommandLine::new(self.program("scancel"));
        if let Some(c) = &self.cluster {
            cmd = cmd.arg(format!("--cluster={c}"));
        }
        if let Some(u) = user {
            cmd = cmd.args(["-u", u]);
        }
        cmd.args(["-A", account, "-f"])
    }
}

/// One row of [`SlurmCommands::show_assocs`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssocRow {
    /// Lower-case.
    pub account: String,
    pub parent: String,
    /// Empty for the account's own row.
    pub user: String,
    pub grp_tres_mins: String,
    pub qos: String,
    pub grp_submit_jobs: String,
    pub max_tres_mins: String,
}

/// Parse `show assoc format=ASSOC_FORMAT` output; short rows are padded.
pub fn parse_assoc_rows(output: &str) -> Vec<AssocRow> {
    parsable::rows(output)
        .map(|row| AssocRow {
            account: row.get(0).to_lowercase(),
            parent: row.get(1).to_lowercase(),
            user: row.get(2).to_owned(),
            grp_tres_mins: row.get(3).to_owned(),
            qos: row.get(4).to_owned(),
            grp_submit_jobs: row.get(5).to_owned(),
            max_tres_mins: row.get(6).to_owned(),
        })
        .collect()
}

/// What the site has for one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountState {
    pub parent: String,
    pub grp_tres_mins: String,
    pub qos: String,
    pub grp_submit_jobs: String,
    /// username → MaxTRESMins text.
    pub users: BTreeMap<String, String>,
}

/// Group association rows by account; only accounts with their own (user-less) row exist.
pub fn accounts_from_rows(rows: &[AssocRow]) -> BTreeMap<String, AccountState> {
    let mut accounts: BTreeMap<String, AccountState> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.user.is_empty()) {
        accounts.insert(
            row.account.clone(),
            AccountState {
                parent: row.parent.clone(),
                grp_tres_mins: row.grp_tres_mins.clone(),
                qos: row.qos.clone(),
                grp_submit_jobs: row.grp_submit_jobs.clone(),
                users: BTreeMap::new(),
            },
        );
    }
    for row in rows.iter().filter(|r| !r.user.is_empty()) {
        if let Some(state) = accounts.get_mut(&row.account) {
            state
                .users
                .insert(row.user.clone(), row.max_tres_mins.clone());
        }
    }
    accounts
}

/// `list tres` rows `type|name|id` → `type/name` or `type`.
pub fn parse_tres_names(output: &str) -> Vec<String> {
    parsable::rows(output)
        .filter_map(|row| {
            let (kind, name) = (row.get(0), row.get(1));
            if kind.is_empty() {
                None
            } else if name.is_empty() {
                Some(kind.to_owned())
            } else {
                Some(format!("{kind}/{name}"))
            }
        })
        .collect()
}

/// First field of each non-empty line.
pub fn parse_first_column(output: &str) -> Vec<String> {
    parsable::first_column(output)
}

/// SLURM's transient failures: the generic ones plus slurmdbd/slurmctld being away
/// ([`backend_api::command::TransientRule`] of this backend).
pub fn is_transient_output(output: &str) -> bool {
    let lower = output.to_ascii_lowercase();
    backend_api::command::generic_transient(output)
        || [
            "slurmdbd is down",
            "socket timed out",
            "unable to contact slurm controller",
            "problem talking to the database",
        ]
        .iter()
        .any(|needle| lower.contains(needle))
}

/// sacctmgr's "no-op" answers, which come with exit status 1.
pub fn is_nothing_changed(output: &str) -> bool {
    let lower = output.to_ascii_lowercase();
    ["nothing modified", "nothing deleted", "nothing new added"]
        .iter()
        .any(|n| lower.contains(n))
}

/// sacctmgr refuses to remove associations with running jobs.
pub fn is_jobs_running(output: &str) -> bool {
    let lower = output.to_ascii_lowercase();
    lower.contains("job(s) active")
        || lower.contains("jobs running")
        || lower.contains("running jobs")
}

/// A free-text value (description, organization) made safe inside `'…'` of a load file:
/// `'` would end the value, `#` starts a comment (sacctmgr then aborts the whole file), and a
/// newline ends the line. Only letters, digits, space and harmless punctuation are kept; anything
/// else becomes a space, and runs of spaces collapse.
pub fn load_file_value(text: &str) -> String {
    const KEPT: &str = " -_.,;:()/@+&=!?%*[]<>~";
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || KEPT.contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One account of a load file. Names must already have passed `validate_site_name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadAccount {
    pub name: String,
    pub parent: String,
    pub description: String,
    pub organization: String,
    /// `cpu=10,mem=20` or empty.
    pub grp_tres_mins: String,
}

/// One user association of a load file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadUser {
    pub account: String,
    pub user: String,
    pub default_account: Option<String>,
    /// `Fairshare=parent`, as `Share=parent` of `add user`.
    pub fairshare_parent: bool,
}

/// What a `sacctmgr -P load` reports it did. It prints this before committing, and a zero exit
/// status means the commit went through, so the report is the site's own account of the write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Account associations it added: account → parent.
    pub accounts: BTreeMap<String, String>,
    /// User associations it added: (account, user).
    pub user_assocs: BTreeSet<(String, String)>,
    /// Accounts it found existing and changed ("Changed Parent for Account …"): load moves an
    /// existing account instead of refusing it, so these were never ours to confirm.
    pub changed_accounts: BTreeSet<String>,
}

impl LoadReport {
    pub fn merge(&mut self, other: LoadReport) {
        self.accounts.extend(other.accounts);
        self.user_assocs.extend(other.user_assocs);
        self.changed_accounts.extend(other.changed_accounts);
    }
}

/// Read the report of `sacctmgr -P load`: its "Account Associations" (`Account|ParentName|…`)
/// and "User Associations" (`User|Account|…`) tables and its "Changed … for Account X" lines.
/// Anything else ("Accounts", "Users", "Nothing new added.") is ignored; what it does not
/// list is simply not confirmed.
pub fn parse_load_report(output: &str) -> LoadReport {
    #[derive(PartialEq)]
    enum Table {
        None,
        Accounts,
        Users,
    }
    let mut report = LoadReport::default();
    let mut table = Table::None;
    for line in output.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("---") {
            table = Table::None;
            continue;
        }
        match trimmed {
            "Account Associations" => table = Table::Accounts,
            "User Associations" => table = Table::Users,
            _ if trimmed.starts_with("Changed ") => {
                let words: Vec<&str> = trimmed.split_whitespace().collect();
                if let Some(i) = words
                    .windows(2)
                    .position(|w| w[0] == "for" && w[1] == "Account")
                    && let Some(name) = words.get(i + 2)
                {
                    report.changed_accounts.insert(name.to_lowercase());
                }
            }
            _ if !trimmed.contains('|') => table = Table::None,
            _ => {
                let mut fields = trimmed.split('|');
                let (first, second) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
                match table {
                    Table::Accounts if first != "Account" && !first.is_empty() => {
                        report
                            .accounts
                            .insert(first.to_lowercase(), second.to_lowercase());
                    }
                    Table::Users if first != "User" && !first.is_empty() => {
                        report
                            .user_assocs
                            .insert((second.to_lowercase(), first.to_owned()));
                    }
                    _ => {}
                }
            }
        }
    }
    report
}

/// The text of a `sacctmgr load` file: accounts in the given order (parents first), then user
/// associations, each block under its `Parent -` line.
pub fn render_load_file(cluster: &str, accounts: &[LoadAccount], users: &[LoadUser]) -> String {
    let mut out = format!("Cluster - '{cluster}'\n");
    let mut current_parent: Option<&str> = None;
    let parent_line = |out: &mut String, parent: &str, current: Option<&str>| {
        if current != Some(parent) {
            out.push_str(&format!("Parent - '{parent}'\n"));
        }
    };
    for a in accounts {
        parent_line(&mut out, &a.parent, current_parent);
        current_parent = Some(&a.parent);
        let mut line = format!("Account - '{}'", a.name);
        let description = load_file_value(&a.description);
        if !description.is_empty() {
            line.push_str(&format!(":Description='{description}'"));
        }
        let organization = load_file_value(&a.organization);
        if !organization.is_empty() {
            line.push_str(&format!(":Organization='{organization}'"));
        }
        if !a.grp_tres_mins.is_empty() {
            line.push_str(&format!(":GrpTRESMins={}", a.grp_tres_mins));
        }
        out.push_str(&line);
        out.push('\n');
    }
    for u in users {
        parent_line(&mut out, &u.account, current_parent);
        current_parent = Some(&u.account);
        let mut line = format!("User - '{}'", u.user);
        if let Some(d) = &u.default_account {
            line.push_str(&format!(":DefaultAccount='{d}'"));
        }
        if u.fairshare_parent {
            line.push_str(":Fairshare=parent");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `list user … format=User,DefaultAccount` → user → default account (may be empty).
pub fn parse_user_defaults(output: &str) -> BTreeMap<String, String> {
    parsable::rows(output)
        .filter_map(|row| {
            let (user, default) = (row.get(0), row.get(1));
            (!user.is_empty()).then(|| (user.to_owned(), default.to_lowercase()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(cmd: &CommandLine) -> String {
        cmd.display()
    }

    #[test]
    fn cluster_goes_before_set_and_at_the_end_otherwise() {
        let c = SlurmCommands::new("/usr/bin/", Some("waldur"));
        assert_eq!(
            argv(&c.set_grp_tres_mins(&["a1".into(), "a2".into()], "cpu=10,mem=20")),
            "/usr/bin/sacctmgr --parsable2 --noheader --immediate modify account where name=a1,a2 cluster=waldur set GrpTRESMins=cpu=10,mem=20"
        );
        assert_eq!(
            argv(&c.remove_accounts(&["a1".into()])),
            "/usr/bin/sacctmgr --parsable2 --noheader --immediate remove account where name=a1 cluster=waldur"
        );
        assert_eq!(
            argv(&c.usage(
                &["a".into(), "b".into()],
                "2024-05-01T00:00:00",
                "2024-05-31T23:59:59"
            )),
            "/usr/bin/sacct --parsable2 --noheader --cluster=waldur --noconvert --truncate --allocations --allusers --starttime=2024-05-01T00:00:00 --endtime=2024-05-31T23:59:59 --accounts=a,b --format=Account,AllocTRES,ElapsedRaw,User"
        );
        assert_eq!(
            argv(&c.cancel_jobs("a", Some("u"))),
            "/usr/bin/scancel --cluster=waldur -u u -A a -f"
        );
        assert_eq!(argv(&c.version()), "/usr/bin/sacctmgr --version");
    }

    #[test]
    fn empty_bin_path_uses_bare_names_and_no_cluster_means_no_token() {
        let c = SlurmCommands::new("", None);
        let cmd = c.add_accounts(&["a".into()], "p", "My project", "p", "cpu=5");
        assert_eq!(cmd.program, PathBuf::from("sacctmgr"));
        assert_eq!(
            cmd.args,
            vec![
                "--parsable2",
                "--noheader",
                "--immediate",
                "add",
                "account",
                "a",
                "parent=p",
                "description=My project",
                "organization=p",
                "GrpTRESMins=cpu=5"
            ]
        );
    }

    #[test]
    fn add_user_variants_follow_upstream() {
        let c = SlurmCommands::new("/usr/bin", None);
        let users = vec!["u1".to_owned(), "u2".to_owned()];
        let accts = vec!["a".to_owned()];
        let plain = c.add_users(
            &users,
            &accts,
            &UserAssocOptions {
                default_account: Some("root".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            plain.args[3..],
            [
                "add",
                "user",
                "u1,u2",
                "account=a",
                "DefaultAccount=root",
                "Share=parent"
            ]
        );
        let one = c.add_users(
            &users,
            &accts,
            &UserAssocOptions {
                partitions: vec!["debug".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            one.args[3..],
            ["add", "user", "u1,u2", "account=a", "Partition=debug"]
        );
        let qos = c.add_users(
            &users,
            &accts,
            &UserAssocOptions {
                default_account: None,
                partitions: vec!["a".into(), "b".into()],
                qos_levels: vec!["gold".into()],
                default_qos: Some("gold".into()),
            },
        );
        assert_eq!(
            qos.args[3..],
            [
                "add",
                "user",
                "u1,u2",
                "account=a",
                "Partitions=a,b",
                "QosLevel=gold",
                "DefaultQOS=gold",
                "Share=parent"
            ]
        );
    }

    #[test]
    fn parses_real_show_assoc_output() {
        // Captured from sacctmgr 22.05.8 here.
        let out = "za1|zp1|||normal||\nza1||zu1||normal||cpu=5\nza1||zu2||normal||\nzp1|zc1||cpu=100,mem=2000M|normal||\nza2|zp1|||zpaused|0|\n";
        let rows = parse_assoc_rows(out);
        assert_eq!(rows.len(), 5);
        let accounts = accounts_from_rows(&rows);
        assert_eq!(accounts.len(), 3);
        assert_eq!(accounts["za1"].parent, "zp1");
        assert_eq!(
            accounts["za1"].users.keys().collect::<Vec<_>>(),
            ["zu1", "zu2"]
        );
        assert_eq!(accounts["za1"].users["zu1"], "cpu=5");
        assert_eq!(accounts["zp1"].grp_tres_mins, "cpu=100,mem=2000M");
        assert_eq!(accounts["za2"].qos, "zpaused");
        assert_eq!(accounts["za2"].grp_submit_jobs, "0");
    }

    #[test]
    fn parses_tres_and_recognises_noops() {
        let out = "cpu||1\nmem||2\nenergy||3\nnode||4\nbilling||5\nfs|disk|6\nvmem||7\npages||8\ngres|gpu|1001\n";
        let names = parse_tres_names(out);
        assert!(names.contains(&"gres/gpu".to_owned()) && names.contains(&"cpu".to_owned()));
        assert_eq!(names.len(), 9);
        assert!(is_nothing_changed(" Nothing modified\n"));
        assert!(is_nothing_changed(" Nothing new added."));
        assert!(is_nothing_changed(" Nothing deleted"));
        assert!(!is_nothing_changed("Error: bad"));
    }

    #[test]
    fn load_file_renders_tree_then_users_under_their_parents() {
        let account = |name: &str, parent: &str, description: &str, tres: &str| LoadAccount {
            name: name.into(),
            parent: parent.into(),
            description: description.into(),
            organization: name.into(),
            grp_tres_mins: tres.into(),
        };
        let user = |account: &str, user: &str, default: Option<&str>| LoadUser {
            account: account.into(),
            user: user.into(),
            default_account: default.map(str::to_owned),
            fairshare_parent: true,
        };
        let text = render_load_file(
            "waldur",
            &[
                account("c1", "root", "Customer One", ""),
                account("p1", "c1", "Project: one, with comma", ""),
                account("a1", "p1", "alloc 1", "cpu=600000,mem=10"),
                account("a2", "p1", "", "cpu=5"),
            ],
            &[
                user("root", "alice", Some("root")),
                user("a1", "alice", Some("root")),
                user("a1", "bob", None),
            ],
        );
        assert_eq!(
            text,
            "Cluster - 'waldur'\n\
             Parent - 'root'\n\
             Account - 'c1':Description='Customer One':Organization='c1'\n\
             Parent - 'c1'\n\
             Account - 'p1':Description='Project: one, with comma':Organization='p1'\n\
             Parent - 'p1'\n\
             Account - 'a1':Description='alloc 1':Organization='a1':GrpTRESMins=cpu=600000,mem=10\n\
             Account - 'a2':Organization='a2':GrpTRESMins=cpu=5\n\
             Parent - 'root'\n\
             User - 'alice':DefaultAccount='root':Fairshare=parent\n\
             Parent - 'a1'\n\
             User - 'alice':DefaultAccount='root':Fairshare=parent\n\
             User - 'bob':Fairshare=parent\n"
        );
    }

    #[test]
    fn hostile_descriptions_cannot_break_out_of_their_value_or_line() {
        for hostile in [
            "x'\nAccount - 'evil':Description='y",
            "a # comment",
            "quote ' and \"double\" | pipe\r\n\tand tab\\",
            "'",
            "\u{0}\u{7}",
        ] {
            let value = load_file_value(hostile);
            assert!(
                !value.contains(['\'', '#', '\n', '\r', '"', '|', '\\', '\t', '\0']),
                "{hostile:?} -> {value:?}"
            );
            let text = render_load_file(
                "c",
                &[LoadAccount {
                    name: "a".into(),
                    parent: "p".into(),
                    description: hostile.into(),
                    organization: hostile.into(),
                    grp_tres_mins: String::new(),
                }],
                &[],
            );
            // Exactly the three lines, each value still closed by its own quote.
            assert_eq!(text.lines().count(), 3, "{text}");
            let account_line = text.lines().nth(2).unwrap_or_default();
            assert!(account_line.starts_with("Account - 'a'"), "{account_line}");
            assert_eq!(account_line.matches('\'').count() % 2, 0, "{account_line}");
        }
        assert_eq!(
            load_file_value("Hello  'World'\n# 2: (x), ünï"),
            "Hello World 2: (x), ünï"
        );
        assert_eq!(load_file_value("\n\t'#"), "");
    }

    #[test]
    fn load_command_and_user_listing() {
        let c = SlurmCommands::new("/usr/bin", Some("waldur"));
        let load = c.load(std::path::Path::new("/tmp/x.cfg"));
        assert_eq!(
            load.display(),
            "/usr/bin/sacctmgr -i -P load file=/tmp/x.cfg cluster=waldur"
        );
        assert_eq!(
            c.list_users(&["u1".into(), "u2".into()]).args[3..],
            [
                "list",
                "user",
                "where",
                "name=u1,u2",
                "format=User,DefaultAccount"
            ]
        );
        let defaults = parse_user_defaults("u1|Root\nu2|\n\n");
        assert_eq!(defaults.get("u1").map(String::as_str), Some("root"));
        assert_eq!(defaults.get("u2").map(String::as_str), Some(""));
        assert_eq!(defaults.len(), 2);
    }

    /// Output of sacctmgr 22.05 `-i -P load` on a file whose first account existed (moved,
    /// described anew) and whose second was new, with two users on it.
    const LOAD_OUTPUT: &str = "For cluster waldur
 Changed description           for Account tx3               a -> b
 Changed Parent                for Account tx3              tp -> tc
 Changed Default Account       for User    daemon          tx3 -> alloc_very_long_name_abcde
Accounts
Name|Descr|Org|QOS
alloc_very_long_name_abcdeaa|
---------------------------------------------------

Account Associations
Account|ParentName|Share|GrpTRESMins|GrpTRESRunMins|GrpTRES|GrpJobs|GrpJobsAccrue|GrpMem
alloc_very_long_name_abcde|tp||cpu=10|||||||||||||||||
--------------------------------------------------------------

Users
Name|Def Acct|Def WCKey|QOS|Admin|Coord Accounts
nobody|alloc_very_long_name_abcde|||Not Set|
---------------------------------------------------

User Associations
User|Account|Share|GrpTRESMins|GrpTRESRunMins|GrpTRES|GrpJobs|GrpJobsAccrue|GrpMem
root|alloc_very_long_name_abcde||||||||||||||||||||
nobody|alloc_very_long_name_abcde||||||||||||||||||||
--------------------------------------------------------------
";

    #[test]
    fn load_report_names_what_was_added_and_what_existed() {
        let report = parse_load_report(LOAD_OUTPUT);
        assert_eq!(
            report.accounts,
            BTreeMap::from([("alloc_very_long_name_abcde".to_owned(), "tp".to_owned())])
        );
        let alloc = "alloc_very_long_name_abcde".to_owned();
        assert_eq!(
            report.user_assocs,
            BTreeSet::from([
                (alloc.clone(), "nobody".to_owned()),
                (alloc, "root".to_owned())
            ])
        );
        assert_eq!(report.changed_accounts, BTreeSet::from(["tx3".to_owned()]));
        // A load that found everything existing confirms nothing.
        let nothing = parse_load_report("For cluster waldur\n Nothing new added.\n");
        assert_eq!(nothing, LoadReport::default());
        // The table form (no -P) cuts names: its rows have no `|` and are not trusted.
        let table = parse_load_report(
            "Account Associations\n   Account ParentName\n---------- ----------\nalloc_ver+ tp\n",
        );
        assert!(table.accounts.is_empty());
    }
}
