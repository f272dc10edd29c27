//! The services table and its rules, sans-IO: which names the peer may make us listen for or
//! connect to, and the port negotiation of reference §6 and §7.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::messages::{ListenerResponse, RequestListener};

/// A `local` (roost): we may be asked to listen for `name`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalSpec {
    /// The service name.
    pub name: String,
    /// Port to listen on; random when unset (a port the peer asks for is then taken).
    pub listen_port: Option<u16>,
    /// Address to bind; 127.0.0.1 when unset (Python binds 0.0.0.0 for random ports).
    pub bind: Option<String>,
    /// Tells the peer which port to connect to.
    pub remote_connect_port: Option<u16>,
    /// Extension: listen on this unix socket instead of TCP.
    pub listen_unix: Option<PathBuf>,
}

/// A `remote` (fledge): we run the service and ask the peer to listen for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteSpec {
    /// The service name.
    pub name: String,
    /// Port we ask the peer to listen on; the peer's choice when unset.
    pub remote_listen_port: Option<u16>,
    /// Local port streams connect to; when unset, a free one, or the port the peer names if
    /// `allow_peer_port`.
    pub local_connect_port: Option<u16>,
    /// Host to connect to; 127.0.0.1 when unset.
    pub connect_address: Option<String>,
    /// Extension: connect to this unix socket instead of TCP.
    pub connect_unix: Option<PathBuf>,
    /// Extension, off by default: without `local_connect_port`, let the peer's reply choose the
    /// local port our streams connect to (Python fowl always does).
    pub allow_peer_port: bool,
}

/// Where a listener is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAt {
    /// Port 0 means a random port.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
}

/// Where a forwarded stream is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTo {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// A listener to open for the peer, and the reply to give once it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenPlan {
    pub at: ListenAt,
    pub desired_port: Option<u16>,
}

/// What the fledge side does with the roost's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectPlan {
    Ready(ConnectTo),
    /// Neither side named a port: the caller picks a free one and calls [`Services::record`].
    NeedsPort {
        host: String,
    },
}

/// Loopback, the default listening and connecting address.
pub const LOOPBACK: &str = "127.0.0.1";

/// Both tables of a session.
#[derive(Debug, Default)]
pub struct Services {
    roosts: HashMap<String, LocalSpec>,
    /// Names we `remote`d (in flight or established).
    fledged: HashSet<String>,
    /// Where streams for each established fledge connect.
    targets: HashMap<String, ConnectTo>,
    /// Names the peer asked us to listen for (one listener each).
    listened: HashSet<String>,
}

/// Why the policy refuses. The texts are Python fowl's: a refusal travels to the peer, which
/// shows it to its user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A `remote` for a name (given) we already have a `local` for.
    #[error("fledge({0}) when we already have a roost for that name")]
    AlreadyRoost(String),
    /// A second `remote` for the same name (given).
    #[error("Supposedly unique \"{0}\" already in our services")]
    AlreadyFledged(String),
    /// The peer asked us to listen for a name (given) we have no `local` for.
    #[error("No service permitted for name: {0}")]
    NoService(String),
    #[error("Desired port {desired} does not match {ours}")]
    /// The peer asked us to listen on a port other than our `local`'s.
    PortMismatch {
        /// The port the peer asked for.
        desired: u16,
        /// Our `local`'s listen port.
        ours: u16,
    },
    #[error("Service \"{name}\" failed: {reason}")]
    /// The peer refused our listener request.
    Refused {
        /// The service name of our request.
        name: String,
        /// The peer's reason.
        reason: String,
    },
    #[error("Reply asked for port {asked} but we specified {ours}")]
    /// The peer's reply names a connect port other than our `remote`'s.
    ReplyPortMismatch {
        /// The port the peer's reply names.
        asked: u16,
        /// Our `remote`'s local connect port.
        ours: u16,
    },
    /// The peer named the local port our streams would connect to, and we named none: refused
    /// unless the `remote` allows it (`allow_peer_port`).
    #[error(
        "Service \"{name}\" refused: the peer asked us to connect to local port {port}, which we \
         did not name (name the port with local_connect_port, or set allow_peer_port)"
    )]
    PeerChosenPort {
        /// The service.
        name: String,
        /// The port the peer named.
        port: u16,
    },
    /// The peer asked again for a listener it already has (each name gets one).
    #[error("a listener for \"{0}\" is already open")]
    AlreadyListening(String),
    /// A stream arrived for a name we never established (`None`: no name at all).
    #[error("Incoming connection against local policy: No service \"{}\"", .0.as_deref().unwrap_or("None"))]
    UnknownStream(Option<String>),
}

impl Services {
    /// Records (or replaces) a `local`; nothing is sent.
    pub fn add_local(&mut self, spec: LocalSpec) {
        self.roosts.insert(spec.name.clone(), spec);
    }

    /// Checks and records a `remote` before its request is sent.
    pub fn begin_remote(&mut self, spec: &RemoteSpec) -> Result<RequestListener, PolicyError> {
        if self.roosts.contains_key(&spec.name) {
            return Err(PolicyError::AlreadyRoost(spec.name.clone()));
        }
        if !self.fledged.insert(spec.name.clone()) {
            return Err(PolicyError::AlreadyFledged(spec.name.clone()));
        }
        Ok(RequestListener {
            name: spec.name.clone(),
            listen_port: spec.remote_listen_port,
        })
    }

    /// The roost side gets a request: the listener to open, or the refusal reason.
    pub fn on_request(&mut self, req: &RequestListener) -> Result<ListenPlan, PolicyError> {
        let spec = self
            .roosts
            .get_mut(&req.name)
            .ok_or_else(|| PolicyError::NoService(req.name.clone()))?;
        if self.listened.contains(&req.name) {
            return Err(PolicyError::AlreadyListening(req.name.clone()));
        }
        if let Some(p) = req.listen_port {
            match spec.listen_port {
                Some(ours) if ours != p => {
                    return Err(PolicyError::PortMismatch { desired: p, ours })
                }
                // like Python, the peer's port sticks to the roost for later requests
                _ => spec.listen_port = Some(p),
            }
        }
        let at = match &spec.listen_unix {
            Some(path) => ListenAt::Unix(path.clone()),
            None => ListenAt::Tcp {
                host: spec.bind.clone().unwrap_or_else(|| LOOPBACK.into()),
                port: spec.listen_port.unwrap_or(0),
            },
        };
        self.listened.insert(req.name.clone());
        Ok(ListenPlan {
            at,
            desired_port: spec.remote_connect_port,
        })
    }

    /// The listener planned by [`Services::on_request`] for `name` could not be opened: the
    /// peer may ask again.
    pub fn listen_failed(&mut self, name: &str) {
        self.listened.remove(name);
    }

    /// The fledge side gets the reply to its request.
    pub fn on_response(
        &mut self,
        spec: &RemoteSpec,
        resp: &ListenerResponse,
    ) -> Result<ConnectPlan, PolicyError> {
        let desired = match resp {
            ListenerResponse::Refused { reason, .. } => {
                return Err(PolicyError::Refused {
                    name: spec.name.clone(),
                    reason: reason.clone(),
                })
            }
            ListenerResponse::Listening { desired_port, .. } => *desired_port,
        };
        if let (Some(d), Some(ours)) = (desired, spec.local_connect_port) {
            if d != ours {
                return Err(PolicyError::ReplyPortMismatch { asked: d, ours });
            }
        }
        if let (Some(port), None, None, false) = (
            desired,
            spec.local_connect_port,
            &spec.connect_unix,
            spec.allow_peer_port,
        ) {
            return Err(PolicyError::PeerChosenPort {
                name: spec.name.clone(),
                port,
            });
        }
        if let Some(path) = &spec.connect_unix {
            let to = ConnectTo::Unix(path.clone());
            self.record(&spec.name, to.clone());
            return Ok(ConnectPlan::Ready(to));
        }
        let host = spec
            .connect_address
            .clone()
            .unwrap_or_else(|| LOOPBACK.into());
        Ok(match spec.local_connect_port.or(desired) {
            Some(port) => {
                let to = ConnectTo::Tcp { host, port };
                self.record(&spec.name, to.clone());
                ConnectPlan::Ready(to)
            }
            None => ConnectPlan::NeedsPort { host },
        })
    }

    /// Establishes a fledge: streams for `name` connect to `to` from now on.
    pub fn record(&mut self, name: &str, to: ConnectTo) {
        self.targets.insert(name.into(), to);
    }

    /// A stream arrives for `name`: where to connect, or the policy refusal for our log.
    pub fn on_stream(&self, name: Option<&str>) -> Result<ConnectTo, PolicyError> {
        name.and_then(|n| self.targets.get(n))
            .cloned()
            .ok_or_else(|| PolicyError::UnknownStream(name.map(str::to_owned)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(name: &str) -> LocalSpec {
        LocalSpec {
            name: name.into(),
            ..Default::default()
        }
    }

    fn remote(name: &str) -> RemoteSpec {
        RemoteSpec {
            name: name.into(),
            ..Default::default()
        }
    }

    fn listening(name: &str, desired_port: Option<u16>) -> ListenerResponse {
        ListenerResponse::Listening {
            name: name.into(),
            desired_port,
        }
    }

    /// One negotiation from both ends: the roost's plan and the fledge's plan.
    fn negotiate(
        roost: LocalSpec,
        fledge: RemoteSpec,
    ) -> (
        Result<ListenPlan, PolicyError>,
        Option<Result<ConnectPlan, PolicyError>>,
    ) {
        let (mut a, mut b) = (Services::default(), Services::default());
        a.add_local(roost);
        let req = b.begin_remote(&fledge).unwrap();
        let plan = a.on_request(&req);
        let reply = match &plan {
            Ok(p) => listening(&fledge.name, p.desired_port),
            Err(reason) => ListenerResponse::Refused {
                name: fledge.name.clone(),
                reason: reason.to_string(),
            },
        };
        (plan, Some(b.on_response(&fledge, &reply)))
    }

    #[test]
    fn the_peer_cannot_choose_the_local_port_we_connect_to_unless_allowed() {
        // the roost's `remote_connect_port` becomes the reply's desired-port
        let roost = LocalSpec {
            remote_connect_port: Some(6379),
            ..local("svc")
        };
        let (plan, reply) = negotiate(roost.clone(), remote("svc"));
        assert!(plan.is_ok());
        assert_eq!(
            reply.unwrap().unwrap_err(),
            PolicyError::PeerChosenPort {
                name: "svc".into(),
                port: 6379
            }
        );
        let allowed = RemoteSpec {
            allow_peer_port: true,
            ..remote("svc")
        };
        let (_, reply) = negotiate(roost.clone(), allowed);
        assert_eq!(
            reply.unwrap().unwrap(),
            ConnectPlan::Ready(ConnectTo::Tcp {
                host: LOOPBACK.into(),
                port: 6379
            })
        );
        // a port we named ourselves, or a unix socket, is never the peer's choice
        let named = RemoteSpec {
            local_connect_port: Some(6379),
            ..remote("svc")
        };
        assert!(negotiate(roost.clone(), named).1.unwrap().is_ok());
        let unix = RemoteSpec {
            connect_unix: Some("/run/app.sock".into()),
            ..remote("svc")
        };
        let (_, reply) = negotiate(roost, unix);
        assert_eq!(
            reply.unwrap().unwrap(),
            ConnectPlan::Ready(ConnectTo::Unix("/run/app.sock".into()))
        );
    }

    fn tcp(host: &str, port: u16) -> ListenAt {
        ListenAt::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn nothing_fixed_random_loopback_listener_and_a_port_to_pick() {
        let (plan, reply) = negotiate(local("x"), remote("x"));
        assert_eq!(plan.unwrap().at, tcp(LOOPBACK, 0));
        assert_eq!(
            reply.unwrap().unwrap(),
            ConnectPlan::NeedsPort {
                host: LOOPBACK.into()
            }
        );
    }

    #[test]
    fn local_listen_port_and_remote_listen_port() {
        let roost = LocalSpec {
            listen_port: Some(7777),
            ..local("x")
        };
        assert_eq!(
            negotiate(roost.clone(), remote("x")).0.unwrap().at,
            tcp(LOOPBACK, 7777)
        );
        let fledge = RemoteSpec {
            remote_listen_port: Some(8888),
            ..remote("x")
        };
        assert_eq!(
            negotiate(local("x"), fledge.clone()).0.unwrap().at,
            tcp(LOOPBACK, 8888)
        );
        let (plan, reply) = negotiate(roost, fledge);
        assert_eq!(
            plan.unwrap_err().to_string(),
            "Desired port 8888 does not match 7777"
        );
        assert_eq!(
            reply.unwrap().unwrap_err().to_string(),
            "Service \"x\" failed: Desired port 8888 does not match 7777"
        );
    }

    #[test]
    fn remote_connect_port_reaches_the_fledge_or_conflicts() {
        let roost = LocalSpec {
            remote_connect_port: Some(1111),
            ..local("x")
        };
        let allowing = RemoteSpec {
            allow_peer_port: true,
            ..remote("x")
        };
        let (_, reply) = negotiate(roost.clone(), allowing);
        assert_eq!(
            reply.unwrap().unwrap(),
            ConnectPlan::Ready(ConnectTo::Tcp {
                host: LOOPBACK.into(),
                port: 1111
            })
        );
        let fledge = RemoteSpec {
            local_connect_port: Some(3333),
            ..remote("x")
        };
        let (plan, reply) = negotiate(roost, fledge);
        assert!(plan.is_ok(), "the roost listens anyway");
        assert_eq!(
            reply.unwrap().unwrap_err().to_string(),
            "Reply asked for port 1111 but we specified 3333"
        );
    }

    #[test]
    fn bind_interface_and_connect_address() {
        let roost = LocalSpec {
            bind: Some("::1".into()),
            ..local("x")
        };
        let fledge = RemoteSpec {
            local_connect_port: Some(22),
            connect_address: Some("192.0.2.9".into()),
            ..remote("x")
        };
        let (plan, reply) = negotiate(roost, fledge);
        assert_eq!(plan.unwrap().at, tcp("::1", 0));
        assert_eq!(
            reply.unwrap().unwrap(),
            ConnectPlan::Ready(ConnectTo::Tcp {
                host: "192.0.2.9".into(),
                port: 22
            })
        );
    }

    #[test]
    fn permissions() {
        let mut a = Services::default();
        let req = RequestListener {
            name: "early".into(),
            listen_port: None,
        };
        assert_eq!(
            a.on_request(&req).unwrap_err().to_string(),
            "No service permitted for name: early"
        );
        a.add_local(local("mine"));
        let again = RequestListener {
            name: "mine".into(),
            listen_port: None,
        };
        a.on_request(&again).unwrap();
        assert_eq!(
            a.on_request(&again).unwrap_err().to_string(),
            "a listener for \"mine\" is already open",
            "one listener per name, however often the peer asks"
        );
        assert_eq!(
            a.begin_remote(&remote("mine")).unwrap_err().to_string(),
            "fledge(mine) when we already have a roost for that name"
        );
        a.begin_remote(&remote("svc")).unwrap();
        assert_eq!(
            a.begin_remote(&remote("svc")).unwrap_err().to_string(),
            "Supposedly unique \"svc\" already in our services"
        );
        // a stream is only connected for an established fledge
        assert_eq!(
            a.on_stream(Some("svc")).unwrap_err().to_string(),
            "Incoming connection against local policy: No service \"svc\""
        );
        a.on_response(
            &RemoteSpec {
                local_connect_port: Some(5),
                ..remote("svc")
            },
            &listening("svc", None),
        )
        .unwrap();
        assert_eq!(
            a.on_stream(Some("svc")).unwrap(),
            ConnectTo::Tcp {
                host: LOOPBACK.into(),
                port: 5
            }
        );
        assert!(
            a.on_stream(Some("mine")).is_err(),
            "a roost name is not a service"
        );
        assert!(a.on_stream(None).is_err());
    }
}
