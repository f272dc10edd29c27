//! `fowl invite` and `fowl accept`: the human front end. Each runs one fowld session (the same
//! code as the daemon) fed with commands built from the specifiers, and renders its output for
//! people.

pub mod prompt;
pub mod render;
pub mod spec;

use std::io::IsTerminal;

use clap::Args;
use tokio::sync::mpsc;

use super::fowld::commands::Command;
use super::fowld::io::Input;
use super::fowld::{run_with, FowldOptions};
use super::options::NetworkArgs;
use crate::forward::EventQueue;
use crate::remember::PeerStore;

/// The services of a session, in the reference's specifier grammar.
// the field docs are clap's help text, where the grammar's brackets are plain text
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Args, Debug, Clone)]
pub struct Services {
    /// Run a service here and let the peer reach it:
    /// name[:local-connect-port][:listen=port][:address=host], or name:/unix/socket/path.
    #[arg(
        short = 'R',
        long = "remote",
        visible_alias = "service",
        value_name = "SPEC"
    )]
    pub remote: Vec<String>,
    /// Listen here for the peer's service:
    /// name[:local-listen-port][:bind=address][:remote-connect=port], or name:/unix/socket/path.
    #[arg(
        short = 'L',
        long = "local",
        visible_alias = "client",
        value_name = "SPEC"
    )]
    pub local: Vec<String>,
    /// For a --remote without a port: connect to the local port the peer names (Python fowl's
    /// behaviour; off by default, since it lets the peer pick which local service it reaches).
    #[arg(long)]
    pub allow_peer_port: bool,
}

/// The options of `fowl invite`.
#[derive(Args, Debug, Clone)]
pub struct InviteArgs {
    /// Words in the code.
    #[arg(long, default_value_t = 2)]
    pub code_length: usize,
    /// Remember the peer under this name if it asks too (`fowl accept CODE --remember NAME`):
    /// later, `fowl connect NAME` on both sides meets again without a code.
    #[arg(long, value_name = "NAME")]
    pub remember: Option<String>,
    /// The services to forward.
    #[command(flatten)]
    pub services: Services,
    /// Mailbox server, transit relay and listening options.
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// The options of `fowl accept`.
#[derive(Args, Debug, Clone)]
pub struct AcceptArgs {
    /// The code from the inviting peer (asked for when omitted on a terminal).
    pub code: Option<String>,
    /// Remember the peer under this name if it asks too (`fowl invite --remember NAME`):
    /// later, `fowl connect NAME` on both sides meets again without a code.
    #[arg(long, value_name = "NAME")]
    pub remember: Option<String>,
    /// The services to forward.
    #[command(flatten)]
    pub services: Services,
    /// Mailbox server, transit relay and listening options.
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// The options of `fowl connect`.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// The remembered peer (see `fowl peers`); it runs `fowl connect` with our name too.
    pub name: String,
    /// The services to forward.
    #[command(flatten)]
    pub services: Services,
    /// Listening options and the proxy; the mailbox server, app id and relay are the ones
    /// remembered with the peer (`--no-relay` still turns the relay off).
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// Python fowl's command lines, for people used to them: `fowl --remote ssh:22` (no
/// subcommand: an invitation) becomes `fowl invite --remote ssh:22`, and `fowl CODE ...` (a
/// code first) becomes `fowl accept CODE ...`. Other command lines are left alone.
pub fn python_habits(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const OURS: &[&str] = &[
        "invite",
        "accept",
        "connect",
        "peers",
        "forget",
        "server",
        "completions",
        "man",
        "help",
        "-h",
        "--help",
        "-V",
        "--version",
    ];
    let implied = match args.get(1).and_then(|a| a.to_str()) {
        Some(first) if OURS.contains(&first) => None,
        Some(first) if first.starts_with('-') => Some("invite"),
        Some(first) if first.starts_with(|c: char| c.is_ascii_digit()) => Some("accept"),
        _ => None,
    };
    if let Some(subcommand) = implied {
        args.insert(1, subcommand.into());
    }
    args
}

/// The `local`/`remote` commands for the specifiers, or the first parse error.
fn service_commands(s: &Services) -> Result<Vec<Command>, String> {
    let mut out = Vec::new();
    for l in &s.local {
        let p = spec::parse_local(l).map_err(|e| format!("--local {l}: {e}"))?;
        out.push(Command::Local(p));
    }
    for r in &s.remote {
        let mut p = spec::parse_remote(r).map_err(|e| format!("--remote {r}: {e}"))?;
        p.allow_peer_port = s.allow_peer_port;
        out.push(Command::Remote(p));
    }
    if out.is_empty() {
        return Err(
            "give at least one --remote (a service here) or --local (a listener here for \
                    the peer's service); see fowl invite --help"
                .into(),
        );
    }
    Ok(out)
}

/// The `remember` command for `--remember NAME`, refused early when the name is not usable or
/// already taken.
fn remember_command(name: Option<&str>) -> anyhow::Result<Option<Command>> {
    let Some(name) = name else { return Ok(None) };
    crate::remember::valid_name(name)?;
    if PeerStore::open_default()?.contains(name) {
        return Err(crate::remember::RememberError::Exists(name.into()).into());
    }
    Ok(Some(Command::Remember { name: name.into() }))
}

async fn session(
    network: &NetworkArgs,
    first: Command,
    services: Vec<Command>,
) -> anyhow::Result<i32> {
    let opts = FowldOptions {
        mailbox_url: network.mailbox_url().map_err(anyhow::Error::msg)?,
        relay: network.relay().map_err(anyhow::Error::msg)?,
        no_listen: network.no_listen,
        liveness: network.liveness().map_err(anyhow::Error::msg)?,
        status_events: true,
        extra_root_certificates: Vec::new(),
        appid: network.appid.clone(),
        proxy: network.proxy().map_err(anyhow::Error::msg)?,
    };
    let (tx, rx) = mpsc::channel(64);
    for cmd in std::iter::once(first).chain(services) {
        tx.send(Input::Command(cmd)).await?;
    }
    let queue = EventQueue::default();
    let live = std::io::stdout().is_terminal();
    let renderer = {
        let q = queue.clone();
        std::thread::spawn(move || render::render(q, live))
    };
    // `tx` stays alive: the session ends by the peer, Ctrl-C or SIGTERM, not by running dry
    let shutdown = super::server::shutdown_signal();
    let code = run_with(opts, rx, queue.clone(), shutdown).await;
    drop(tx);
    queue.close();
    let _ = tokio::task::spawn_blocking(move || renderer.join()).await;
    Ok(code)
}

/// `fowl invite`: allocates a code and forwards the given services.
pub async fn invite(args: InviteArgs) -> anyhow::Result<i32> {
    let mut services = service_commands(&args.services).map_err(anyhow::Error::msg)?;
    services.extend(remember_command(args.remember.as_deref())?);
    let first = Command::AllocateCode {
        length: args.code_length,
    };
    session(&args.network, first, services).await
}

/// `fowl accept [CODE]`: joins the inviting peer and forwards the given services.
pub async fn accept(args: AcceptArgs) -> anyhow::Result<i32> {
    let mut services = service_commands(&args.services).map_err(anyhow::Error::msg)?;
    services.extend(remember_command(args.remember.as_deref())?);
    let code = match args.code {
        Some(c) => c,
        None if std::io::stdin().is_terminal() => {
            let url = args.network.mailbox_url().map_err(anyhow::Error::msg)?;
            prompt::prompt_code(&url, &args.network.appid).await?
        }
        None => anyhow::bail!("no code given (and stdin is not a terminal to ask for one)"),
    };
    session(&args.network, Command::SetCode { code }, services).await
}

/// `fowl connect NAME`: meets the remembered peer without a code and forwards the given
/// services. A peer that is not remembered, or whose file is damaged, fails before anything
/// starts.
pub async fn connect(args: ConnectArgs) -> anyhow::Result<i32> {
    let services = service_commands(&args.services).map_err(anyhow::Error::msg)?;
    PeerStore::open_default()?.load(&args.name)?;
    let first = Command::Connect { name: args.name };
    session(&args.network, first, services).await
}

/// `fowl peers`: the remembered peers, one per line (name, created, last used, mailbox server;
/// a file that cannot be used says why).
pub fn peers() -> anyhow::Result<i32> {
    let store = PeerStore::open_default()?;
    let list = store.list()?;
    if list.is_empty() {
        println!("no remembered peers (in {})", store.dir().display());
        return Ok(0);
    }
    println!(
        "{:<20} {:<20} {:<20} MAILBOX",
        "NAME", "CREATED", "LAST USED"
    );
    for (name, file) in list {
        match file {
            Ok(f) => {
                let rotation = if f.pending() {
                    " (rotation unconfirmed)"
                } else {
                    ""
                };
                println!(
                    "{:<20} {:<20} {:<20} {}{rotation}",
                    name,
                    render::utc(f.created),
                    f.last_used.map_or("never".into(), render::utc),
                    f.mailbox_url,
                );
            }
            Err(e) => println!("{name:<20} unusable: {}", render::clean(&e.to_string())),
        }
    }
    Ok(0)
}

/// `fowl forget NAME`: deletes a remembered peer.
pub fn forget(name: &str) -> anyhow::Result<i32> {
    PeerStore::open_default()?.forget(name)?;
    println!("forgot {name}");
    Ok(0)
}

#[cfg(test)]
mod habit_tests {
    use super::python_habits;

    fn run(line: &str) -> String {
        let args = line.split(' ').map(Into::into).collect();
        python_habits(args)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn python_fowl_command_lines_mean_invite_and_accept() {
        assert_eq!(run("fowl --remote ssh:22"), "fowl invite --remote ssh:22");
        assert_eq!(
            run("fowl 7-guitarist-revenge --local ssh:2222"),
            "fowl accept 7-guitarist-revenge --local ssh:2222"
        );
        for ours in [
            "fowl invite -R ssh:22",
            "fowl accept 1-a-b",
            "fowl --help",
            "fowl server",
        ] {
            assert_eq!(run(ours), ours);
        }
        assert_eq!(run("fowl"), "fowl");
    }
}
