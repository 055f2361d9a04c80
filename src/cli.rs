//! Offline subcommands of the `sluice` binary, for what must be done before a
//! broker can be reached: `sluice scram-users` adds the first SCRAM user of a
//! data directory (as Kafka's `kafka-storage format --add-scram`), lists and
//! deletes users. They take the data directory's lock, so they refuse to run
//! beside a broker using it (whose users would then be overwritten).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::auth::scram::{new_salt, Credential, Mechanism};
use crate::broker::credentials::{Change, Credentials};
use crate::log::RealFs;

/// `sluice scram-users`: SCRAM users of a data directory no broker is using.
#[derive(Debug, Parser)]
#[command(name = "sluice scram-users")]
pub struct ScramUsers {
    /// The broker's data directory (created if missing).
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    action: Action,
}

/// A `scram-users` action.
#[derive(Debug, Subcommand)]
enum Action {
    /// Adds or replaces a user's credential; the password is the first line
    /// of standard input (so it stays out of the process list and history).
    Add {
        /// The user name.
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations, 4096 to 16384 as Kafka allows.
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// Deletes a user's credential for one mechanism.
    Delete {
        /// The user name.
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
    },
    /// Lists users with their mechanisms and iterations.
    List,
}

/// Runs `sluice scram-users` with `args` (the subcommand's name first).
pub fn scram_users(args: impl IntoIterator<Item = String>) -> ExitCode {
    let cli = ScramUsers::parse_from(args);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice scram-users: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: ScramUsers) -> Result<(), String> {
    std::fs::create_dir_all(&cli.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", cli.data_dir.display()))?;
    let _lock = crate::sys::lock_data_dir(&cli.data_dir)?;
    let store = Credentials::load(Arc::new(RealFs), &cli.data_dir)
        .map_err(|e| format!("cannot read the SCRAM users: {e}"))?;
    let mechanism_of = |name: &str| {
        Mechanism::from_name(name)
            .ok_or_else(|| format!("{name} is not SCRAM-SHA-256 or SCRAM-SHA-512"))
    };
    match cli.action {
        Action::Add {
            user,
            mechanism,
            iterations,
        } => {
            let mechanism = mechanism_of(&mechanism)?;
            if user.is_empty() {
                return Err("the user name is empty".into());
            }
            if !(4096..=16384).contains(&iterations) {
                return Err("iterations must be between 4096 and 16384".into());
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
            let password = line.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                return Err("no password on standard input".into());
            }
            let credential =
                Credential::from_password(mechanism, password, &new_salt(), iterations);
            store
                .apply(&[Change::Upsert {
                    user: user.clone(),
                    mechanism,
                    credential,
                }])
                .map_err(|e| format!("cannot write the SCRAM users: {e}"))?;
            println!("{} credential of {user:?} written", mechanism.name());
        }
        Action::Delete { user, mechanism } => {
            let mechanism = mechanism_of(&mechanism)?;
            if !store.has(&user, mechanism) {
                return Err(format!("{user:?} has no {} credential", mechanism.name()));
            }
            store
                .apply(&[Change::Delete {
                    user: user.clone(),
                    mechanism,
                }])
                .map_err(|e| format!("cannot write the SCRAM users: {e}"))?;
            println!("{} credential of {user:?} deleted", mechanism.name());
        }
        Action::List => {
            for (user, mechs) in store.describe() {
                for (m, iterations) in mechs {
                    println!("{user}\t{}\titerations={iterations}", m.name());
                }
            }
        }
    }
    Ok(())
}
