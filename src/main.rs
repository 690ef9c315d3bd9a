//! The `unigate` binary: `serve` (the default), `check-config`, `passwd`, `store`, `bench`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use unigate::config::{Config, StorageKind};
use unigate::server::{self, StartOptions};

#[derive(Parser)]
#[command(
    name = "unigate",
    version,
    about = "One server for MQTT, CoAP, LwM2M and HTTP IoT clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Check a configuration file and report the first error with its key path.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Manage a password file: `passwd add FILE USER` (the password is read from the terminal
    /// twice without echo, or one line from stdin), `passwd import FILE` (`user:password` lines
    /// from stdin), `passwd remove FILE USER`, `passwd list FILE`.
    Passwd {
        #[command(subcommand)]
        action: PasswdAction,
    },
    /// Look at or compact the embedded store (with the server stopped: the file is locked
    /// while a server uses it).
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Load tool: drive an MQTT server, or a CoAP gateway, with many clients and report
    /// throughput and latency.
    Bench(Box<unigate::bench::BenchArgs>),
}

#[derive(Subcommand)]
enum PasswdAction {
    /// Add a user, or change its password (argon2id).
    Add {
        /// The password file (created when missing, mode 0600).
        file: PathBuf,
        /// The user name.
        user: String,
        /// argon2id cost of the new hash, `m=KiB,t=passes[,p=lanes]`; the default keeps a
        /// 10,000-client reconnect storm within about a minute on 2 cores (docs/benchmarks.md,
        /// "Password reconnect storm"). E.g. `m=47104,t=1` for OWASP's first configuration.
        #[arg(long, value_name = "m=KiB,t=N[,p=N]", default_value_t = unigate_auth::password::Argon2Cost::DEFAULT)]
        argon2: unigate_auth::password::Argon2Cost,
    },
    /// Add or change many users at once from stdin, one `user:password` per line (a user name
    /// cannot contain `:`; empty lines and `#` lines are skipped), hashing on every core.
    Import {
        /// The password file (created when missing, mode 0600).
        file: PathBuf,
        /// argon2id cost of the new hashes, as for `add`.
        #[arg(long, value_name = "m=KiB,t=N[,p=N]", default_value_t = unigate_auth::password::Argon2Cost::DEFAULT)]
        argon2: unigate_auth::password::Argon2Cost,
    },
    /// Remove a user.
    Remove {
        /// The password file.
        file: PathBuf,
        /// The user name.
        user: String,
    },
    /// List the users.
    List {
        /// The password file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Check the file (checksums, every record decodes) and print counts and sizes.
    Inspect {
        /// The store directory (`[storage] path`).
        #[arg(long, default_value = "data")]
        path: PathBuf,
    },
    /// Rewrite the file without its free space.
    Compact {
        /// The store directory (`[storage] path`).
        #[arg(long, default_value = "data")]
        path: PathBuf,
    },
    /// Fill a store with retained messages and offline persistent sessions (a start-up
    /// benchmark; see docs/benchmarks.md).
    Populate {
        /// The store directory.
        #[arg(long)]
        path: PathBuf,
        /// Retained messages to add (topics `populate/retained/{n}`).
        #[arg(long, default_value_t = 0)]
        retained: u64,
        /// Sessions to add (client ids `populate-{n}`, one subscription each, never expiring).
        #[arg(long, default_value_t = 0)]
        sessions: u64,
        /// Payload size of each retained message.
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML). Without it, the embedded defaults run on 127.0.0.1.
    #[arg(short, long, env = "UNIGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address the default listeners bind to (only without a config file), e.g. 0.0.0.0.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Where sessions and retained messages are kept: `embedded` (the default, `[storage] path`)
    /// or `memory` (nothing survives a restart). Overrides `[storage] kind`.
    #[arg(long, value_parser = ["embedded", "memory"])]
    storage: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for the whole process (ring); see crates.md.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UNIGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        None => serve(ServeArgs {
            config: std::env::var_os("UNIGATE_CONFIG").map(PathBuf::from),
            bind: IpAddr::from([127, 0, 0, 1]),
            storage: None,
        }),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Passwd { action }) => passwd(action),
        Some(Command::Store { action }) => store(action),
        Some(Command::Bench(args)) => unigate::bench::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unigate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_vars() -> Vec<(String, String)> {
    std::env::vars().collect()
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path, env_vars())?,
        None => Config::parse("", "<defaults>", env_vars())?,
    };
    // The server keeps its state on disk unless told otherwise.
    config.storage.kind = match args.storage.as_deref() {
        Some("memory") => Some(StorageKind::Memory),
        Some(_) => Some(StorageKind::Embedded),
        None => Some(config.storage.kind.unwrap_or(StorageKind::Embedded)),
    };
    let defaults = config.listeners.is_empty();
    let running = server::start(
        config,
        args.bind,
        StartOptions {
            handle_signals: true,
            config_path: args.config.clone(),
        },
    )?;
    for l in &running.listeners {
        let tls = if l.tls { "+tls" } else { "" };
        println!("unigate: listener \"{}\" ({}{tls}) on {}", l.name, l.protocol, l.addr);
    }
    if defaults {
        if args.bind.is_loopback() {
            println!(
                "unigate: no config file: default listeners on {} only, anonymous clients allowed; \
                 to open up use --bind 0.0.0.0 or --config FILE (see unigate.example.toml)",
                args.bind
            );
        } else {
            println!(
                "unigate: WARNING: default listeners bound to {} with anonymous clients allowed",
                args.bind
            );
        }
    }
    running.wait()
}

fn passwd(action: PasswdAction) -> anyhow::Result<()> {
    use unigate_auth::password::{cli_add, cli_import, cli_list, cli_remove, read_password};
    match action {
        PasswdAction::Add { file, user, argon2 } => {
            let password = read_password(true)?;
            cli_add(&file, &user, &password, argon2)?;
            println!("{}: user \"{user}\" set", file.display());
        }
        PasswdAction::Import { file, argon2 } => {
            let done = cli_import(&file, &mut std::io::stdin().lock(), argon2)?;
            println!(
                "{}: {} users set ({} of them replaced)",
                file.display(),
                done.entries,
                done.replaced
            );
        }
        PasswdAction::Remove { file, user } => {
            if !cli_remove(&file, &user)? {
                anyhow::bail!("{}: no user \"{user}\"", file.display());
            }
            println!("{}: user \"{user}\" removed", file.display());
        }
        PasswdAction::List { file } => {
            for user in cli_list(&file)? {
                println!("{user}");
            }
        }
    }
    Ok(())
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(file, env_vars())?;
    println!(
        "{}: OK ({} listener{})",
        file.display(),
        config.listeners.len(),
        if config.listeners.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

fn store(action: StoreAction) -> anyhow::Result<()> {
    use unigate::storage::redb_store::{RedbOptions, RedbStore, FILE_NAME};
    let open_existing = |dir: &std::path::Path| -> anyhow::Result<RedbStore> {
        let file = dir.join(FILE_NAME);
        if !file.exists() {
            anyhow::bail!("no store at {}", file.display());
        }
        RedbStore::open_file(&file, &RedbOptions::default()).map_err(|e| match e {
            unigate::storage::StoreError::Corrupt { .. } => anyhow::anyhow!(
                "{e}\nrecovery: move the file aside (`mv {f} {f}.broken`); the server then starts with an empty store",
                f = file.display()
            ),
            unigate::storage::StoreError::Locked { .. } => {
                anyhow::anyhow!("{e} (stop the server first: the file is locked while it runs)")
            }
            other => anyhow::anyhow!("{other}"),
        })
    };
    match action {
        StoreAction::Inspect { path } => {
            let mut store = open_existing(&path)?;
            let clean = store.check_integrity().map_err(|e| anyhow::anyhow!("{e}"))?;
            let snap = store.verify().map_err(|e| {
                anyhow::anyhow!(
                    "{e}\nrecovery: move the file aside (`mv {f} {f}.broken`); the server then starts with an empty store",
                    f = store.path().display()
                )
            })?;
            let stats = unigate::storage::Store::stats(&mut store).map_err(|e| anyhow::anyhow!("{e}"))?;
            let offline = snap
                .sessions
                .values()
                .filter(|s| s.record.disconnected_at.is_some())
                .count();
            println!("file: {}", store.path().display());
            println!(
                "integrity: {}",
                if clean {
                    "ok"
                } else {
                    "repaired (an unclean shutdown was rolled back to the last commit)"
                }
            );
            println!("sessions: {} ({offline} recorded offline)", stats.sessions);
            println!("queued deliveries: {}", stats.queued);
            println!("stored messages: {}", stats.messages);
            println!("retained messages: {}", stats.retained);
            println!("incoming QoS 2 awaiting PUBREL: {}", stats.incoming_qos2);
            println!(
                "bytes: file {}, live data {}, fragmented {}",
                stats.file_bytes, stats.stored_bytes, stats.fragmented_bytes
            );
            Ok(())
        }
        StoreAction::Compact { path } => {
            let mut store = open_existing(&path)?;
            let before = std::fs::metadata(store.path()).map(|m| m.len()).unwrap_or(0);
            store.compact().map_err(|e| anyhow::anyhow!("{e}"))?;
            let after = std::fs::metadata(store.path()).map(|m| m.len()).unwrap_or(0);
            println!("compacted {}: {before} -> {after} bytes", store.path().display());
            Ok(())
        }
        StoreAction::Populate {
            path,
            retained,
            sessions,
            payload,
        } => {
            let mut store = RedbStore::open(&path, &RedbOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let started = std::time::Instant::now();
            unigate::storage::populate(&mut store, retained, sessions, payload).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "added {retained} retained messages and {sessions} sessions to {} in {:.1} s",
                store.path().display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
