//! The SCRAM credential store: per user and mechanism, the salted
//! credential (never a password), persisted in [`CREDENTIALS_FILE`] in the
//! data directory and changed by AlterUserScramCredentials.
//!
//! File format (written whole, atomically): a `version=1` line, then one line
//! per credential: `<mechanism> <user, base64> <iterations> <salt, base64>
//! <stored key, base64> <server key, base64>`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::auth::scram::{Credential, Mechanism};
use crate::log::Fs;

/// The file holding every SCRAM credential.
pub const CREDENTIALS_FILE: &str = "scram-credentials";

/// One change of an AlterUserScramCredentials request, validated.
#[derive(Debug, Clone)]
pub enum Change {
    /// Set the user's credential for a mechanism.
    Upsert {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: Mechanism,
        /// The credential derived from the client's salted password.
        credential: Credential,
    },
    /// Remove the user's credential for a mechanism.
    Delete {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: Mechanism,
    },
}

/// Every SCRAM credential, in memory and on disk.
#[derive(Debug)]
pub struct Credentials {
    /// The file system of the data directory.
    fs: Arc<dyn Fs>,
    /// [`CREDENTIALS_FILE`]'s path.
    path: PathBuf,
    /// By user, then mechanism. Changes hold the lock while the file is
    /// rewritten (on a blocking thread), so they apply in order.
    map: Mutex<BTreeMap<String, BTreeMap<Mechanism, Credential>>>,
}

impl Credentials {
    /// Loads the store of `data_dir` (empty if it has none). A damaged file
    /// is an error: starting without the users would lock them out silently.
    pub fn load(fs: Arc<dyn Fs>, data_dir: &Path) -> io::Result<Credentials> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let mut map: BTreeMap<String, BTreeMap<Mechanism, Credential>> = BTreeMap::new();
        if fs.exists(&path) {
            let text = crate::log::fs::read_file(fs.as_ref(), &path)?;
            let bad = |why: &str| io::Error::other(format!("{}: {why}", path.display()));
            let text = std::str::from_utf8(&text).map_err(|_| bad("not UTF-8"))?;
            let mut lines = text.lines();
            if lines.next() != Some("version=1") {
                return Err(bad("unknown version"));
            }
            for line in lines.filter(|l| !l.trim().is_empty()) {
                let f: Vec<&str> = line.split(' ').collect();
                let [mech, user, iterations, salt, stored, server] = f[..] else {
                    return Err(bad("a line without six fields"));
                };
                let mech = Mechanism::from_name(mech).ok_or_else(|| bad("unknown mechanism"))?;
                let b64 = |v: &str| B64.decode(v).map_err(|_| bad("bad base64"));
                let user = String::from_utf8(b64(user)?).map_err(|_| bad("user not UTF-8"))?;
                let credential = Credential {
                    salt: b64(salt)?,
                    stored_key: b64(stored)?,
                    server_key: b64(server)?,
                    iterations: iterations.parse().map_err(|_| bad("bad iterations"))?,
                };
                map.entry(user).or_default().insert(mech, credential);
            }
        }
        Ok(Credentials {
            fs,
            path,
            map: Mutex::new(map),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<Mechanism, Credential>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The credential of `user` for `mechanism`.
    pub fn get(&self, user: &str, mechanism: Mechanism) -> Option<Credential> {
        self.lock().get(user)?.get(&mechanism).cloned()
    }

    /// Every user with a credential, with their mechanisms and iterations.
    pub fn describe(&self) -> BTreeMap<String, Vec<(Mechanism, i32)>> {
        self.lock()
            .iter()
            .map(|(u, m)| {
                (
                    u.clone(),
                    m.iter().map(|(k, c)| (*k, c.iterations)).collect(),
                )
            })
            .collect()
    }

    /// Whether `user` has a credential for `mechanism` (deletions must name one).
    pub fn has(&self, user: &str, mechanism: Mechanism) -> bool {
        self.lock()
            .get(user)
            .is_some_and(|m| m.contains_key(&mechanism))
    }

    /// Applies `changes` and rewrites the file (blocking). Nothing changes in
    /// memory unless the file was written.
    pub fn apply(&self, changes: &[Change]) -> io::Result<()> {
        let mut map = self.lock();
        let mut next = map.clone();
        for c in changes {
            match c {
                Change::Upsert {
                    user,
                    mechanism,
                    credential,
                } => {
                    next.entry(user.clone())
                        .or_default()
                        .insert(*mechanism, credential.clone());
                }
                Change::Delete { user, mechanism } => {
                    if let Some(m) = next.get_mut(user) {
                        m.remove(mechanism);
                        if m.is_empty() {
                            next.remove(user);
                        }
                    }
                }
            }
        }
        let mut text = String::from("version=1\n");
        for (user, mechs) in &next {
            for (mech, c) in mechs {
                text.push_str(&format!(
                    "{} {} {} {} {} {}\n",
                    mech.name(),
                    B64.encode(user),
                    c.iterations,
                    B64.encode(&c.salt),
                    B64.encode(&c.stored_key),
                    B64.encode(&c.server_key)
                ));
            }
        }
        crate::log::fs::write_file_atomic(self.fs.as_ref(), &self.path, text.as_bytes())?;
        *map = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::RealFs;

    #[test]
    fn credentials_persist_and_deletions_apply() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn Fs> = Arc::new(RealFs);
        let store = Credentials::load(fs.clone(), dir.path()).unwrap();
        let cred = |p: &str| Credential::from_password(Mechanism::Sha256, p, b"salt", 4096);
        store
            .apply(&[
                Change::Upsert {
                    user: "alice, with spaces".into(),
                    mechanism: Mechanism::Sha256,
                    credential: cred("a"),
                },
                Change::Upsert {
                    user: "bob".into(),
                    mechanism: Mechanism::Sha512,
                    credential: cred("b"),
                },
            ])
            .unwrap();
        store
            .apply(&[Change::Delete {
                user: "bob".into(),
                mechanism: Mechanism::Sha512,
            }])
            .unwrap();
        let again = Credentials::load(fs, dir.path()).unwrap();
        assert_eq!(
            again.get("alice, with spaces", Mechanism::Sha256),
            Some(cred("a"))
        );
        assert!(again.get("bob", Mechanism::Sha512).is_none());
        assert_eq!(
            again.describe().into_iter().collect::<Vec<_>>(),
            vec![(
                "alice, with spaces".to_string(),
                vec![(Mechanism::Sha256, 4096)]
            )]
        );
        let text = std::fs::read_to_string(dir.path().join(CREDENTIALS_FILE)).unwrap();
        assert!(
            !text.contains("alice"),
            "user names are encoded, passwords never stored"
        );
    }
}
