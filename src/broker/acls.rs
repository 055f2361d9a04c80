//! The ACL store: every binding, persisted in [`ACLS_FILE`] in the data
//! directory and changed by CreateAcls and DeleteAcls, and the authorizer's
//! policy (`--authorizer`, `--super-users`, `--allow-everyone-if-no-acl-found`).
//! Requests read a shared snapshot ([`AclSet`]); a change writes the file, then
//! swaps the snapshot.
//!
//! File format (written whole, atomically): a `version=1` line, then one line
//! per binding: `<resource type> <pattern type> <operation> <permission>`
//! (Kafka's codes) `<name> <principal> <host>` (base64).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::meta::{decode_text, read_records, write_records};
use crate::auth::acl::{
    AclBinding, AclFilter, AclSet, Operation, PatternType, Permission, ResourceType,
};
use crate::log::Fs;

/// The file holding every ACL.
pub const ACLS_FILE: &str = "acls";

/// The authorizer's policy.
#[derive(Debug, Clone, Default)]
pub struct AclPolicy {
    /// Whether ACLs are enforced (Kafka: an `authorizer.class.name` is set).
    /// Off, every request is allowed and the ACL APIs answer SECURITY_DISABLED.
    pub enabled: bool,
    /// Principals allowed everything (`User:admin`).
    pub super_users: Vec<String>,
    /// Kafka's `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acl: bool,
}

impl AclPolicy {
    /// The policy of `--authorizer`, `--super-users` and
    /// `--allow-everyone-if-no-acl-found`.
    pub fn from_config(c: &crate::config::Config) -> AclPolicy {
        AclPolicy {
            enabled: c.authorizer == "acl",
            super_users: c
                .super_users
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            allow_if_no_acl: c.allow_everyone_if_no_acl_found,
        }
    }
}

/// Every ACL, in memory and on disk.
#[derive(Debug)]
pub struct Acls {
    /// The file system of the data directory.
    fs: Arc<dyn Fs>,
    /// [`ACLS_FILE`]'s path.
    path: PathBuf,
    /// The policy.
    policy: AclPolicy,
    /// What requests are checked against.
    current: RwLock<Arc<AclSet>>,
    /// Held while a change writes the file (on a blocking thread), so changes
    /// apply in order and none is lost.
    writing: Mutex<()>,
}

impl Acls {
    /// Loads the ACLs of `data_dir` (none if it has no file). A damaged file
    /// is an error: starting without the DENY bindings would open the broker.
    pub fn load(fs: Arc<dyn Fs>, data_dir: &Path, policy: AclPolicy) -> io::Result<Acls> {
        let path = data_dir.join(ACLS_FILE);
        let bindings = read_records(fs.as_ref(), &path, 7, |f| {
            let [t, p, o, perm, name, principal, host] = f else {
                return Err("a bad record".into());
            };
            let code = |v: &str| v.parse::<i8>().map_err(|_| "a bad code".to_string());
            let b = AclBinding {
                resource_type: ResourceType::from_code(code(t)?).ok_or("unknown resource type")?,
                pattern: PatternType::from_code(code(p)?).ok_or("unknown pattern type")?,
                operation: Operation::from_code(code(o)?).ok_or("unknown operation")?,
                permission: Permission::from_code(code(perm)?).ok_or("unknown permission")?,
                name: decode_text(name)?,
                principal: decode_text(principal)?,
                host: decode_text(host)?,
            };
            b.validate().map_err(|e| e.0)?;
            Ok(b)
        })?;
        let set = AclSet::new(bindings, policy.super_users.clone(), policy.allow_if_no_acl);
        Ok(Acls {
            fs,
            path,
            policy,
            current: RwLock::new(Arc::new(set)),
            writing: Mutex::new(()),
        })
    }

    /// Whether ACLs are enforced.
    pub fn enabled(&self) -> bool {
        self.policy.enabled
    }

    /// The bindings requests are checked against now.
    pub fn current(&self) -> Arc<AclSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `principal` from `host` may do `op` on `(t, name)`; always,
    /// with the authorizer off.
    pub fn allowed(
        &self,
        principal: &str,
        host: &str,
        op: Operation,
        t: ResourceType,
        name: &str,
    ) -> bool {
        !self.policy.enabled || self.current().authorize(principal, host, op, t, name)
    }

    /// Whether `principal` may do `op` on some resource of type `t`.
    pub fn allowed_any(&self, principal: &str, host: &str, op: Operation, t: ResourceType) -> bool {
        !self.policy.enabled || self.current().authorize_any(principal, host, op, t)
    }

    /// The `authorized_operations` bitfield of `(t, name)` for `principal`
    /// (every supported operation with the authorizer off).
    pub fn operations(&self, principal: &str, host: &str, t: ResourceType, name: &str) -> i32 {
        if !self.policy.enabled {
            return Operation::supported_by(t)
                .iter()
                .fold(0, |bits, op| bits | (1 << (*op as i32)));
        }
        self.current()
            .authorized_operations(principal, host, t, name)
    }

    /// Adds `bindings` (already validated; duplicates of existing ones are
    /// no-ops) and rewrites the file (blocking). Nothing changes unless the
    /// file was written.
    pub fn create(&self, bindings: &[AclBinding]) -> io::Result<()> {
        self.change(|all| {
            for b in bindings {
                if !all.contains(b) {
                    all.push(b.clone());
                }
            }
        })
    }

    /// Removes the bindings each filter matches and rewrites the file
    /// (blocking); returns, per filter, what it removed.
    pub fn delete(&self, filters: &[AclFilter]) -> io::Result<Vec<Vec<AclBinding>>> {
        self.change(|all| {
            let removed: Vec<Vec<AclBinding>> = filters
                .iter()
                .map(|f| all.iter().filter(|b| f.matches(b)).cloned().collect())
                .collect();
            all.retain(|b| !filters.iter().any(|f| f.matches(b)));
            removed
        })
    }

    /// Applies `edit` to the bindings, writes them, then swaps them in.
    fn change<T>(&self, edit: impl FnOnce(&mut Vec<AclBinding>) -> T) -> io::Result<T> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.current().bindings();
        let out = edit(&mut all);
        all.sort();
        let records = all.iter().map(|b| {
            format!(
                "{} {} {} {} {} {} {}",
                b.resource_type as i8,
                b.pattern as i8,
                b.operation as i8,
                b.permission as i8,
                B64.encode(&b.name),
                B64.encode(&b.principal),
                B64.encode(&b.host)
            )
        });
        write_records(self.fs.as_ref(), &self.path, records)?;
        let set = AclSet::new(
            all,
            self.policy.super_users.clone(),
            self.policy.allow_if_no_acl,
        );
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::RealFs;

    #[test]
    fn acls_persist_and_deletions_apply() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn Fs> = Arc::new(RealFs);
        let policy = AclPolicy {
            enabled: true,
            ..AclPolicy::default()
        };
        let store = Acls::load(fs.clone(), dir.path(), policy.clone()).unwrap();
        let b = |name: &str, who: &str| AclBinding {
            resource_type: ResourceType::Topic,
            name: name.into(),
            pattern: PatternType::Literal,
            principal: who.into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        store
            .create(&[b("a topic", "User:alice"), b("b", "User:CN=x,O=y")])
            .unwrap();
        store.create(&[b("b", "User:CN=x,O=y")]).unwrap();
        assert_eq!(store.current().bindings().len(), 2);
        assert!(store.allowed(
            "User:alice",
            "h",
            Operation::Read,
            ResourceType::Topic,
            "a topic"
        ));
        assert!(!store.allowed("User:alice", "h", Operation::Read, ResourceType::Topic, "b"));
        let removed = store
            .delete(&[AclFilter {
                resource_type: ResourceType::Any,
                name: Some("b".into()),
                pattern: PatternType::Any,
                principal: None,
                host: None,
                operation: Operation::Any,
                permission: Permission::Any,
            }])
            .unwrap();
        assert_eq!(removed, vec![vec![b("b", "User:CN=x,O=y")]]);
        let again = Acls::load(fs, dir.path(), policy).unwrap();
        assert_eq!(again.current().bindings(), vec![b("a topic", "User:alice")]);
    }
}
