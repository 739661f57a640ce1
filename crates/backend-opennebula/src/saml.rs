//! VDC role groups (`keycloak_enabled: true`, spec §5.5 step 5): per VDC `<vdc>` the Keycloak
//! group `vdc_<vdc>` with one child per role of `vdc_roles`, the OpenNebula group
//! `<vdc>-<group_suffix>` of each role (template `SAML_GROUP="/vdc_<vdc>/<role>"` and the
//! role's FireEdge views, added to the VDC; admin roles get oneadmin as group administrator),
//! and the entries `/vdc_<vdc>/<role>: <group id>` of the SAML mapping file. Members of the
//! Waldur project join the `default_user_role` child group.
//!
//! The mapping file is shared by every VDC (and possibly by hand-written entries): each change
//! is read-merge-write under an exclusive lock on `<file>.lock` (blocks other threads and other
//! processes alike), written to a temporary file in the same directory and renamed over it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use backend_api::{BackendError, BackendResult};
use http_kit::xml::Element;
use http_kit::xmlrpc::Value as X;
use indexmap::IndexMap;
use keycloak_admin::{Group, KeycloakAdmin, User};
use serde_json::Value;

use crate::rpc::{OneRpc, Pool, quote};
use crate::settings::{SamlSettings, VdcRole};

/// Keycloak parent group of a VDC.
pub fn parent_group(vdc: &str) -> String {
    format!("vdc_{vdc}")
}

/// SAML group path (the mapping file's key) of a VDC's role.
pub fn saml_path(vdc: &str, role: &str) -> String {
    format!("/vdc_{vdc}/{role}")
}

/// OpenNebula group of a VDC's role.
pub fn one_group(vdc: &str, role: &VdcRole) -> String {
    format!("{vdc}-{}", role.group_suffix)
}

/// The template merged into a role's OpenNebula group.
pub fn group_template(vdc: &str, role: &VdcRole) -> String {
    format!(
        "SAML_GROUP={}\nFIREEDGE=[DEFAULT_VIEW={}, GROUP_ADMIN_DEFAULT_VIEW={}, VIEWS={}]",
        quote(&saml_path(vdc, &role.role)),
        quote(&role.default_view),
        quote(&role.default_view),
        quote(&role.views),
    )
}

/// The ids listed under `<list><ID>…</ID>…</list>` of an element.
fn ids(e: &Element, list: &str) -> BTreeSet<i64> {
    e.path(list)
        .map(|l| {
            l.children("ID")
                .filter_map(|i| i.text.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Keycloak/SAML side of a VDC offering.
pub struct Saml {
    pub settings: SamlSettings,
    pub kc: KeycloakAdmin,
}

impl Saml {
    fn member_key(&self, u: &User) -> String {
        if self.settings.use_user_id {
            u.id.clone()
        } else {
            u.username.clone()
        }
    }

    /// Makes (or finds) the Keycloak groups, the OpenNebula groups and the mapping entries of
    /// a VDC. Returns the OpenNebula groups made now (for a rollback) and the id of the
    /// Keycloak child group of `default_user_role`.
    pub async fn ensure(
        &self,
        offering: &str,
        rpc: &OneRpc,
        vdc: &str,
        vdc_id: i64,
        made: &mut Vec<i64>,
    ) -> BackendResult<String> {
        let parent = self
            .kc
            .ensure_group(
                None,
                &parent_group(vdc),
                &format!("Role groups of OpenNebula VDC {vdc}"),
            )
            .await?;
        let mut member_group = None;
        for role in &self.settings.roles {
            let child = self
                .kc
                .ensure_group(
                    Some(&parent.group.id),
                    &role.role,
                    &format!("VDC {vdc} role {}", role.role),
                )
                .await?;
            if role.role == self.settings.default_user_role {
                member_group = Some(child.group.id.clone());
            }
        }
        let vdc_groups = ids(
            &rpc.doc("one.vdc.info", vec![X::Int(vdc_id)]).await?,
            "GROUPS",
        );
        let mut entries = Vec::new();
        for role in &self.settings.roles {
            let name = one_group(vdc, role);
            let (gid, created) = match rpc.find(Pool::Group, &name).await? {
                Some(id) => (id, false),
                None => {
                    let (id, origin) = rpc
                        .allocate(
                            Pool::Group,
                            &name,
                            "one.group.allocate",
                            vec![X::from(name.as_str())],
                        )
                        .await?;
                    (id, origin.ours())
                }
            };
            if created {
                made.push(gid);
                tracing::info!(offering, vdc, group = %name, id = gid, "OpenNebula role group made");
            }
            // What is already in place is not written again (a second run changes nothing).
            let doc = rpc.doc("one.group.info", vec![X::Int(gid)]).await?;
            let text = |p: &str| doc.path(p).map(|e| e.text.trim().to_owned());
            let saml_group = saml_path(vdc, &role.role);
            if text("TEMPLATE/SAML_GROUP").as_deref() != Some(saml_group.as_str())
                || text("TEMPLATE/FIREEDGE/DEFAULT_VIEW").as_deref()
                    != Some(role.default_view.as_str())
                || text("TEMPLATE/FIREEDGE/VIEWS").as_deref() != Some(role.views.as_str())
            {
                rpc.idempotent(
                    "one.group.update",
                    vec![X::Int(gid), X::String(group_template(vdc, role)), X::Int(1)],
                )
                .await?;
            }
            if !vdc_groups.contains(&gid) {
                rpc.idempotent("one.vdc.addgroup", vec![X::Int(vdc_id), X::Int(gid)])
                    .await?;
            }
            if role.group_admin && !ids(&doc, "ADMINS").contains(&0) {
                rpc.idempotent("one.group.addadmin", vec![X::Int(gid), X::Int(0)])
                    .await?;
            }
            entries.push((saml_group, gid));
        }
        update_mapping(self.settings.mapping_file.clone(), entries, None).await?;
        member_group.ok_or_else(|| {
            BackendError::Config(format!(
                "offering '{offering}': default_user_role is not a role of vdc_roles"
            ))
        })
    }

    /// Removes a VDC's role groups (after the VDC is gone): OpenNebula groups that no other
    /// VDC holds, the mapping entries, the Keycloak role groups and the parent when nothing
    /// else is left under it.
    pub async fn remove(&self, offering: &str, rpc: &OneRpc, vdc: &str) -> BackendResult<()> {
        let held: BTreeSet<i64> = rpc
            .doc("one.vdcpool.info", vec![])
            .await?
            .children("VDC")
            .flat_map(|v| ids(v, "GROUPS"))
            .collect();
        for role in &self.settings.roles {
            let name = one_group(vdc, role);
            if let Some(gid) = rpc.find(Pool::Group, &name).await? {
                let users = match rpc.doc("one.group.info", vec![X::Int(gid)]).await {
                    Ok(doc) => ids(&doc, "USERS"),
                    Err(e) if e.no_exists() => continue,
                    Err(e) => return Err(e.into()),
                };
                if held.contains(&gid) {
                    tracing::info!(offering, vdc, group = %name,
                        "OpenNebula role group kept: another VDC holds it");
                } else if !users.is_empty() {
                    // Users SAML logged in to it: OpenNebula refuses to delete a group with
                    // users, and they are not the agent's to delete.
                    tracing::warn!(offering, vdc, group = %name, users = ?users,
                        "OpenNebula role group kept: users are in it; move or remove them, then delete the group by hand");
                } else {
                    rpc.delete("one.group.delete", gid).await?;
                    tracing::info!(offering, vdc, group = %name, "OpenNebula role group deleted");
                }
            }
        }
        update_mapping(
            self.settings.mapping_file.clone(),
            Vec::new(),
            Some(format!("/vdc_{vdc}/")),
        )
        .await?;
        if let Some(parent) = self.kc.top_group(&parent_group(vdc)).await? {
            for role in &self.settings.roles {
                if let Some(child) = self.kc.child_group(&parent.id, &role.role).await? {
                    self.kc.delete_group(&child.id).await?;
                }
            }
            if self.kc.children(&parent.id).await?.is_empty() {
                self.kc.delete_group(&parent.id).await?;
                tracing::info!(offering, vdc, "Keycloak role groups deleted");
            } else {
                tracing::info!(offering, vdc, group = %parent.name,
                    "Keycloak group kept: it holds groups that are not VDC roles");
            }
        }
        Ok(())
    }

    /// The role child groups of a VDC that exist (no write).
    pub async fn role_groups(&self, vdc: &str) -> BackendResult<Vec<Group>> {
        let Some(parent) = self.kc.top_group(&parent_group(vdc)).await? else {
            return Ok(Vec::new());
        };
        let roles: BTreeSet<&str> = self
            .settings
            .roles
            .iter()
            .map(|r| r.role.as_str())
            .collect();
        Ok(self
            .kc
            .children(&parent.id)
            .await?
            .into_iter()
            .filter(|g| roles.contains(g.name.as_str()))
            .collect())
    }

    /// Members of any role group of the VDC (ids or usernames), sorted.
    pub async fn members(&self, vdc: &str) -> BackendResult<Vec<String>> {
        let mut keys = BTreeSet::new();
        for g in self.role_groups(vdc).await? {
            for u in self.kc.members(&g.id).await? {
                keys.insert(self.member_key(&u));
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Puts the users Keycloak knows into the member group; the others are asked again on a
    /// later cycle (not reported). Returns the names confirmed members.
    pub async fn add(
        &self,
        offering: &str,
        group_id: &str,
        users: &[String],
    ) -> BackendResult<Vec<String>> {
        let mut found: Vec<(String, String)> = Vec::new();
        for name in users {
            match self.kc.find_user(name, self.settings.use_user_id).await? {
                Some(u) => {
                    self.kc.add_member(&u.id, group_id).await?;
                    found.push((name.clone(), u.id));
                }
                None => {
                    tracing::info!(offering, user = %name,
                        "user not in Keycloak yet; access is granted on a later cycle");
                }
            }
        }
        let members: BTreeSet<String> = self
            .kc
            .members(group_id)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        Ok(found
            .into_iter()
            .filter(|(_, id)| members.contains(id))
            .map(|(name, _)| name)
            .collect())
    }

    /// Takes the users out of every role group of the VDC. Returns the names no longer in any.
    pub async fn remove_members(
        &self,
        offering: &str,
        vdc: &str,
        users: &[String],
    ) -> BackendResult<Vec<String>> {
        let groups = self.role_groups(vdc).await?;
        let mut out = Vec::new();
        for name in users {
            let Some(u) = self.kc.find_user(name, self.settings.use_user_id).await? else {
                out.push(name.clone());
                continue;
            };
            let mut still = false;
            for g in &groups {
                self.kc.remove_member(&u.id, &g.id).await?;
                if self.kc.members(&g.id).await?.iter().any(|m| m.id == u.id) {
                    still = true;
                }
            }
            if still {
                tracing::warn!(offering, vdc, user = %name, "still a member after removal");
            } else {
                tracing::info!(offering, vdc, user = %name, "removed from the VDC's role groups");
                out.push(name.clone());
            }
        }
        Ok(out)
    }
}

/// Merges `entries` into the mapping file and drops the keys starting with `drop_prefix`
/// (which `entries` do not name). The file is rewritten only when something changes.
pub async fn update_mapping(
    path: PathBuf,
    entries: Vec<(String, i64)>,
    drop_prefix: Option<String>,
) -> BackendResult<()> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || update_mapping_now(&path, &entries, drop_prefix.as_deref()))
        .await
        .map_err(|e| BackendError::permanent(format!("SAML mapping file {shown}: {e}")))?
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> BackendError {
    BackendError::permanent(format!("SAML mapping file {}: {what}: {e}", path.display()))
}

/// Reads the mapping (`key: id` lines; an absent or empty file is empty).
pub fn read_mapping(path: &Path) -> BackendResult<IndexMap<String, Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(IndexMap::new()),
        Err(e) => return Err(io_error(path, "cannot read", e)),
    };
    if text.trim().is_empty() {
        return Ok(IndexMap::new());
    }
    let map: Option<IndexMap<String, Value>> = serde_saphyr::from_str(&text).map_err(|e| {
        BackendError::permanent(format!(
            "SAML mapping file {}: not a YAML map of group path to group id ({e}); fix it by hand, the agent does not overwrite it",
            path.display()
        ))
    })?;
    Ok(map.unwrap_or_default())
}

/// The YAML text of a mapping (JSON scalars are YAML scalars).
pub fn render_mapping(map: &IndexMap<String, Value>) -> String {
    let mut out = String::new();
    for (k, v) in map {
        let key = serde_json::to_string(k).unwrap_or_default();
        let value = match v {
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
            other => serde_json::to_string(&other.to_string()).unwrap_or_default(),
        };
        out.push_str(&format!("{key}: {value}\n"));
    }
    out
}

fn update_mapping_now(
    path: &Path,
    entries: &[(String, i64)],
    drop_prefix: Option<&str>,
) -> BackendResult<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock_path = dir.join(format!(".{file_name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_error(path, "cannot open the lock file", e))?;
    // flock(2): held until `_held` drops (also across processes); released by the kernel if
    // the agent dies.
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(
        |(_, errno)| {
            io_error(
                path,
                "cannot lock the lock file",
                std::io::Error::from(errno),
            )
        },
    )?;
    let mut map = read_mapping(path)?;
    let before = map.clone();
    if let Some(prefix) = drop_prefix {
        map.retain(|k, _| !k.starts_with(prefix));
    }
    for (k, id) in entries {
        map.insert(k.clone(), Value::from(*id));
    }
    if map == before {
        return Ok(());
    }
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(render_mapping(&map).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(path, "cannot write", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::default_roles;

    #[test]
    fn template_and_names() {
        let admin = &default_roles()[0];
        assert_eq!(one_group("waldur_x", admin), "waldur_x-admins");
        assert_eq!(
            group_template("waldur_x", admin),
            "SAML_GROUP=\"/vdc_waldur_x/admin\"\nFIREEDGE=[DEFAULT_VIEW=\"groupadmin\", GROUP_ADMIN_DEFAULT_VIEW=\"groupadmin\", VIEWS=\"groupadmin,user,cloud\"]"
        );
    }

    #[test]
    fn concurrent_updates_keep_every_entry_and_others_survive() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keycloak_groups.yaml");
        std::fs::write(&path, "\"/hand/made\": \"7\"\n").expect("write");
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    update_mapping_now(&path, &[(format!("/vdc_v{i}/user"), 100 + i)], None)
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread").expect("update");
        }
        let map = read_mapping(&path).expect("read");
        assert_eq!(map.len(), 17, "{map:?}");
        assert_eq!(map["/hand/made"], Value::from("7"));
        assert_eq!(map["/vdc_v3/user"], Value::from(103));
        update_mapping_now(&path, &[], Some("/vdc_v3/")).expect("drop");
        let map = read_mapping(&path).expect("read");
        assert_eq!(map.len(), 16);
        assert!(!map.contains_key("/vdc_v3/user"));
        // Not a map: refused, never overwritten.
        std::fs::write(&path, "- a\n- b\n").expect("write");
        assert!(update_mapping_now(&path, &[("/x".into(), 1)], None).is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "- a\n- b\n");
    }
}
