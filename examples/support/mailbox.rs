//! The examples' mailbox: the URL given on the command line, or our own mailbox server started
//! in-process on a free loopback port (stopped when the returned handle is dropped).

use fowl::server::mailbox::{serve, MailboxConfig, MailboxServerHandle};

/// Must be called inside a tokio runtime.
pub fn url_or_local(
    given: Option<String>,
) -> anyhow::Result<(String, Option<MailboxServerHandle>)> {
    if let Some(url) = given {
        return Ok((url, None));
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let server = serve(
        tokio::net::TcpListener::from_std(listener)?,
        MailboxConfig::default(),
    )?;
    Ok((server.url(), Some(server)))
}
