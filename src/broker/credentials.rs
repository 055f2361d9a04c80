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

use super::meta::{decode_text, read_records, write_records};
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
        let records = read_records(fs.as_ref(), &path, 6, |f| {
            let [mech, user, iterations, salt, stored, server] = f else {
                return Err("a bad record".into());
            };
            let mech = Mechanism::from_name(mech).ok_or("unknown mechanism")?;
            let b64 = |v: &str| B64.decode(v).map_err(|_| "bad base64".to_string());
            let credential = Credential {
                salt: b64(salt)?,
                stored_key: b64(stored)?,
                server_key: b64(server)?,
                iterations: iterations.parse().map_err(|_| "bad iterations")?,
            };
            Ok((decode_text(user)?, mech, credential))
        })?;
        let mut map: BTreeMap<String, BTreeMap<Mechanism, Credential>> = BTreeMap::new();
        for (user, mech, credential) in records {
            map.entry(user).or_default().insert(mech, credential);
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
        let records = next.iter().flat_map(|(user, mechs)| {
            mechs.iter().map(move |(mech, c)| {
                format!(
                    "{} {} {} {} {} {}",
                    mech.name(),
                    B64.encode(user),
                    c.iterations,
                    B64.encode(&c.salt),
                    B64.encode(&c.stored_key),
                    B64.encode(&c.server_key)
                )
            })
        });
        write_records(self.fs.as_ref(), &self.path, records)?;
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
