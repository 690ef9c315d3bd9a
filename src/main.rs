//! The `unigate` binary: `serve` (the default), `check-config`, `bench`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use unigate::config::Config;
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
    /// twice without echo, or one line from stdin), `passwd remove FILE USER`, `passwd list FILE`.
    Passwd {
        #[command(subcommand)]
        action: PasswdAction,
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

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML). Without it, the embedded defaults run on 127.0.0.1.
    #[arg(short, long, env = "UNIGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address the default listeners bind to (only without a config file), e.g. 0.0.0.0.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
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
        }),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Passwd { action }) => passwd(action),
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
    let config = match &args.config {
        Some(path) => Config::load(path, env_vars())?,
        None => Config::parse("", "<defaults>", env_vars())?,
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
    use unigate_auth::password::{cli_add, cli_list, cli_remove, read_password};
    match action {
        PasswdAction::Add { file, user } => {
            let password = read_password(true)?;
            cli_add(&file, &user, &password)?;
            println!("{}: user \"{user}\" set", file.display());
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
