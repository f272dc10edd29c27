//! fowld benchmark: two daemons of one implementation (ours, then Python fowld 26.8 from
//! `$FOWL_VENV`) forward local TCP services to each other on loopback; measured side by side
//! with raw loopback and with the *floor*: the least two daemons must do, a pair of minimal
//! blocking proxies (this program re-run as `--floor seal|open`), one thread per direction, one
//! sealing the stream into Dilation-framed records (4-byte length, a 9-byte DATA header and up to
//! 65510 bytes, ChaCha20-Poly1305 with ring as our Noise cipher) and one opening them.
//!
//!     scripts/bench.sh bench_fowld [--only rust|python|floor|rust-direct|rust-relay|rust-pyrelay[,...]]
//!
//! CPU per GB is the two processes' user+system time (from /proc) during the bulk transfer,
//! divided by the gigabytes moved; ratios are to the floor measured in the same run.
//!
//! Figures: setup (from starting both daemons to the first byte echoed through a forward),
//! one-stream bulk throughput, 64-byte ping-pong round trips, 100 concurrent streams of
//! 1 MiB echoed, and each daemon's peak RSS (VmHWM) and RSS once set up; our pair also relay-only, through our
//! relay and through Python's transit relay 0.5 (which does not set TCP_NODELAY). Needs a loopback-only network namespace
//! (the daemons dial every address they advertise), which `scripts/bench.sh` provides.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};

struct Daemon {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Daemon {
    fn spawn(program: &str, args: &[&str]) -> anyhow::Result<Daemon> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        Ok(Daemon { child, lines })
    }

    async fn send(&mut self, v: Value) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("stdin")?;
        stdin.write_all(format!("{v}\n").as_bytes()).await?;
        Ok(stdin.flush().await?)
    }

    /// The next line of `kind` (others, and Python's non-JSON lines, are skipped).
    async fn expect(&mut self, kind: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .with_context(|| format!("no {kind} in time"))??
                .with_context(|| format!("daemon exited before {kind}"))?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["kind"] == kind {
                    return Ok(v);
                }
                if v["kind"] == "error" {
                    bail!("daemon error: {v}");
                }
            }
        }
    }

    /// Reads stdout in the background so a chatty daemon never blocks on it; the first streams
    /// lost and errors go to stderr.
    fn drain(self) -> Child {
        let (id, mut lines) = (self.child.id().unwrap_or(0), self.lines);
        tokio::spawn(async move {
            let mut shown = 0;
            while let Ok(Some(line)) = lines.next_line().await {
                let bad = line.contains("-lost\"") || line.contains("\"kind\":\"error\"");
                if bad && shown < 10 {
                    shown += 1;
                    eprintln!("daemon {id}: {line}");
                }
            }
        });
        self.child
    }
}

/// `count` concurrent streams of 1 MiB each, echoed through `port` and checked (each stream its
/// own byte value); how many came back intact and how long they took.
async fn concurrent(port: u16, count: usize, limit: Duration) -> String {
    const SIZE: usize = 1 << 20;
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            tokio::spawn(async move {
                let fill = (i % 251) as u8;
                let s = TcpStream::connect(("127.0.0.1", port)).await?;
                let (mut r, mut w) = s.into_split();
                let writer = tokio::spawn(async move {
                    let chunk = vec![fill; 64 << 10];
                    for _ in 0..SIZE / chunk.len() {
                        w.write_all(&chunk).await?;
                    }
                    Ok::<_, std::io::Error>(w)
                });
                let (mut got, mut intact, mut buf) = (0, true, vec![0u8; 64 << 10]);
                while got < SIZE {
                    let n = r.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    intact &= buf[..n].iter().all(|b| *b == fill);
                    got += n;
                }
                drop(writer.await??);
                match (intact, got) {
                    (true, SIZE) => Ok(()),
                    (true, n) => Err(std::io::Error::other(format!(
                        "stream {i}: {n} of {SIZE} bytes came back"
                    ))),
                    (false, _) => Err(std::io::Error::other(format!("stream {i}: bytes differed"))),
                }
            })
        })
        .collect();
    let (mut ok, mut first_error) = (0, None);
    let all = async {
        for t in tasks {
            let error = match t.await {
                Ok(Ok(())) => {
                    ok += 1;
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            first_error.get_or_insert(error);
        }
    };
    let finished = tokio::time::timeout(limit, all).await.is_ok();
    match (finished, ok) {
        (true, n) if n == count => {
            format!(
                "{n}/{count} intact in {:.2} s",
                started.elapsed().as_secs_f64()
            )
        }
        (true, n) => format!(
            "{n}/{count} intact, {} failed (the first: {})",
            count - n,
            first_error.unwrap_or_default()
        ),
        (false, n) => format!("{n}/{count} within {} s (timed out)", limit.as_secs()),
    }
}

/// `count` idle streams held open through `port` (each echoed one byte first, so it reaches the
/// far service); the growth of both daemons' RSS per stream, in KiB.
async fn idle_streams(port: u16, count: usize, pids: (u32, u32)) -> anyhow::Result<String> {
    let before = (rss_kib(pids.0), rss_kib(pids.1));
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"i").await?;
        s.read_exact(&mut [0u8]).await?;
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // let the daemons settle
    let after = (rss_kib(pids.0), rss_kib(pids.1));
    drop(held);
    // the daemons close the idle subchannels (CLOSE both ways, then ACKs): opens beyond
    // `max_subchannels` meanwhile would be refused
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per = |a: f64, b: f64| (b - a) / count as f64;
    Ok(format!(
        "{count} idle streams: RSS {:.1} -> {:.1} MiB and {:.1} -> {:.1} MiB, {:.1} / {:.1} KiB per stream",
        before.0 / 1024.0,
        after.0 / 1024.0,
        before.1 / 1024.0,
        after.1 / 1024.0,
        per(before.0, after.0),
        per(before.1, after.1),
    ))
}

fn rss_kib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), NaN when unreadable.
fn status_kib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

/// User plus system CPU time of process `pid` so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // the fields after the command name, which is in parentheses
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(f64::NAN)
}

fn peak_rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmHWM:") / 1024.0
}

/// A loopback listener whose queue takes a burst of 1000 connects: with the usual 1024 the
/// queue overflowed now and then (`nstat`: ListenOverflows) and a few connections were reset.
fn burst_listener() -> anyhow::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    Ok(socket.listen(4096)?)
}

async fn echo_server() -> anyhow::Result<u16> {
    let l = burst_listener()?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(port)
}

/// A sink that reports how many bytes each connection delivered.
async fn sink_server() -> anyhow::Result<(u16, tokio::sync::mpsc::UnboundedReceiver<usize>)> {
    let l = burst_listener()?;
    let port = l.local_addr()?.port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut n, mut buf) = (0, vec![0u8; 256 * 1024]);
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    n += k;
                }
                let _ = tx.send(n);
            });
        }
    });
    Ok((port, rx))
}

struct Figures {
    /// CPU-seconds per GB of the bulk transfer: (sending daemon, receiving daemon).
    cpu_per_gb: Option<(f64, f64)>,
    setup_ms: f64,
    bulk_mb_s: f64,
    rtt_median_us: f64,
    rtt_p99_us: f64,
    concurrent: String,
    rss: Option<(f64, f64)>,
    /// Each daemon's RSS once set up (before the first transfer), MiB.
    base_rss: Option<(f64, f64)>,
    /// Each daemon's peak RSS after the bulk transfer (before the concurrent streams), MiB.
    bulk_rss: Option<(f64, f64)>,
    /// Rust direct only: 1000 concurrent streams and 10,000 idle ones (below `max_subchannels`).
    scale: Option<String>,
}

async fn run(
    which: &str,
    program: &str,
    extra: &[&str],
    mailbox: &str,
    bulk_mib: usize,
    rounds: usize,
    scale: bool,
) -> anyhow::Result<Figures> {
    let mut args = vec!["--mailbox", mailbox];
    args.extend_from_slice(extra);
    let spawned = Instant::now();
    let (mut a, mut b) = (
        Daemon::spawn(program, &args)?,
        Daemon::spawn(program, &args)?,
    );
    a.send(json!({"kind": "allocate-code"})).await?;
    let code = a.expect("code-allocated").await?["code"].clone();
    b.send(json!({"kind": "set-code", "code": code})).await?;
    a.expect("peer-connected").await?;
    b.expect("peer-connected").await?;
    let (sink_port, mut sunk) = sink_server().await?;
    let echo_port = echo_server().await?;
    let mut ports = Vec::new();
    let mut services = vec![
        ("bulk", sink_port),
        ("ping", echo_port),
        ("many", echo_port),
    ];
    let _holder = match scale {
        true => {
            let (child, port) = spawn_self(&["--echo"]).await?;
            services.push(("hold", port));
            Some(child)
        }
        false => None,
    };
    for (name, port) in services {
        // the listener side first, and taken before the service side asks for it: a request
        // racing ahead of it is refused. Ours answers a ping after the commands before it;
        // Python's ping never answers, so it gets a moment instead.
        a.send(json!({"kind": "local", "name": name})).await?;
        if which == "python" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        } else {
            a.send(json!({"kind": "ping", "ping_id": name})).await?;
            a.expect("pong").await?;
        }
        b.send(json!({"kind": "remote", "name": name, "local_connect_port": port}))
            .await?;
        b.expect("awaiting-connect").await?;
        ports.push(
            a.expect("listening").await?["listening_port"]
                .as_u64()
                .context("port")? as u16,
        );
    }
    let (pa, pb) = (a.child.id().unwrap_or(0), b.child.id().unwrap_or(0));
    let (_a, _b) = (a.drain(), b.drain());

    // setup: from starting both daemons (code exchange, Dilation, the three services) to the
    // first byte echoed through a forwarded stream
    let mut s = TcpStream::connect(("127.0.0.1", ports[1])).await?;
    s.write_all(b"x").await?;
    s.read_exact(&mut [0u8]).await?;
    let setup_ms = spawned.elapsed().as_secs_f64() * 1e3;
    drop(s);
    let base_rss = (rss_kib(pa) / 1024.0, rss_kib(pb) / 1024.0);

    let pids = Some((pa, pb));
    let mut figures = measure(which, &ports, pids, &mut sunk, setup_ms, bulk_mib, rounds).await?;
    figures.base_rss = Some(base_rss);
    if scale {
        // idle first: the concurrent streams leave freed memory that RSS would count
        let idle = idle_streams(ports[3], 10_000, (pa, pb)).await?;
        let many = concurrent(ports[2], 1000, Duration::from_secs(60)).await;
        figures.scale = Some(format!(
            "(rust, direct) 1000 concurrent streams of 1 MiB: {many}; {idle}"
        ));
    }
    Ok(figures)
}

/// Bulk, ping-pong and concurrent streams through `ports` (bulk into the sink, echo, echo);
/// CPU per GB measured on `pids` (the process the bulk enters, the one it leaves) if given.
async fn measure(
    which: &str,
    ports: &[u16],
    pids: Option<(u32, u32)>,
    sunk: &mut tokio::sync::mpsc::UnboundedReceiver<usize>,
    setup_ms: f64,
    bulk_mib: usize,
    rounds: usize,
) -> anyhow::Result<Figures> {
    let (pa, pb) = pids.unwrap_or((0, 0));

    // bulk, one stream (from the listening side `a` to the service side `b`)
    let chunk = vec![0x5au8; 1 << 20];
    let cpu_before = (cpu_seconds(pa), cpu_seconds(pb));
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", ports[0])).await?;
    for _ in 0..bulk_mib {
        s.write_all(&chunk).await?;
    }
    s.shutdown().await?;
    let got = tokio::time::timeout(Duration::from_secs(120), sunk.recv())
        .await?
        .context("sink")?;
    let bulk_mb_s = got as f64 / started.elapsed().as_secs_f64() / 1e6;
    if got != bulk_mib << 20 {
        bail!("{which}: bulk delivered {got} of {} bytes", bulk_mib << 20);
    }
    let gb = got as f64 / 1e9;
    let cpu_per_gb = pids.map(|_| {
        (
            (cpu_seconds(pa) - cpu_before.0) / gb,
            (cpu_seconds(pb) - cpu_before.1) / gb,
        )
    });
    drop(s);
    let bulk_rss = pids.map(|_| (peak_rss_mib(pa), peak_rss_mib(pb)));

    // 64-byte ping-pong
    let mut s = TcpStream::connect(("127.0.0.1", ports[1])).await?;
    s.set_nodelay(true)?;
    let (msg, mut back) = ([7u8; 64], [0u8; 64]);
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds + 5 {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut rtts = rtts.split_off(5); // warm-up
    rtts.sort_by(f64::total_cmp);
    let rtt_median_us = rtts[rtts.len() / 2];
    let rtt_p99_us = rtts[rtts.len() * 99 / 100];
    drop(s);

    // 100 concurrent streams of 1 MiB, echoed
    let concurrent = concurrent(ports[2], 100, Duration::from_secs(30)).await;
    Ok(Figures {
        cpu_per_gb,
        setup_ms,
        bulk_mb_s,
        rtt_median_us,
        rtt_p99_us,
        concurrent,
        rss: pids.map(|_| (peak_rss_mib(pa), peak_rss_mib(pb))),
        bulk_rss,
        base_rss: None,
        scale: None,
    })
}

fn main() -> anyhow::Result<()> {
    fowl::interfaces::raise_open_files_limit();
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag] = &args[..] {
        if flag == "--echo" {
            return echo_process();
        }
    }
    if let [_, flag, role, target] = &args[..] {
        if flag == "--floor" {
            return floor::serve(role, target.parse()?);
        }
    }
    tokio::runtime::Runtime::new()?.block_on(bench(args))
}

/// This program re-run as an echo server in a process of its own (so that 10,000 idle streams
/// do not take our own file descriptors twice): prints its port, echoes until killed.
fn echo_process() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let port = echo_server().await?;
            println!("{port}");
            std::future::pending::<()>().await;
            Ok(())
        })
}

/// A floor proxy process: (its child handle, the port it listens on).
async fn spawn_floor(role: &str, target: u16) -> anyhow::Result<(Child, u16)> {
    spawn_self(&["--floor", role, &target.to_string()]).await
}

/// This program re-run with `args`: (its child handle, the port it printed).
async fn spawn_self(args: &[&str]) -> anyhow::Result<(Child, u16)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let port = lines.next_line().await?.context("floor port")?.parse()?;
    Ok((child, port))
}

/// The floor: for the sink and for the echo server, a sealing proxy in front of an opening one.
async fn run_floor(bulk_mib: usize, rounds: usize) -> anyhow::Result<Figures> {
    let (sink_port, mut sunk) = sink_server().await?;
    let echo_port = echo_server().await?;
    let mut procs = Vec::new();
    let mut entries = Vec::new();
    for target in [sink_port, echo_port] {
        let (opener, open_port) = spawn_floor("open", target).await?;
        let (sealer, seal_port) = spawn_floor("seal", open_port).await?;
        entries.push(seal_port);
        procs.push((sealer, opener));
    }
    let pids = Some((procs[0].0.id().unwrap_or(0), procs[0].1.id().unwrap_or(0)));
    let ports = [entries[0], entries[1], entries[1]];
    let mut figures = measure("floor", &ports, pids, &mut sunk, f64::NAN, bulk_mib, rounds).await?;
    // the same 1000 streams as our pair's scale figure: what this machine allows
    let many = concurrent(entries[1], 1000, Duration::from_secs(60)).await;
    figures.scale = Some(format!("(floor) 1000 concurrent streams of 1 MiB: {many}"));
    Ok(figures)
}

/// Raw loopback: the load straight into the sink and the echo server.
async fn run_raw(bulk_mib: usize, rounds: usize) -> anyhow::Result<Figures> {
    let (sink_port, mut sunk) = sink_server().await?;
    let echo_port = echo_server().await?;
    let ports = [sink_port, echo_port, echo_port];
    measure("raw", &ports, None, &mut sunk, f64::NAN, bulk_mib, rounds).await
}

async fn bench(args: Vec<String>) -> anyhow::Result<()> {
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mb = fowl::server::mailbox::serve(listener, Default::default())?;
    let ours = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .context("target dir")?
        .join("fowld");
    let venv = std::env::var("FOWL_VENV").unwrap_or_else(|_| ".venv".into());
    let python = format!("{venv}/bin/fowld");
    let our_relay =
        fowl::server::relay::serve(TcpListener::bind("127.0.0.1:0").await?, Default::default())?;
    let (_python_relay, python_relay_port) = python_relay(&venv).await?;
    let our_relay_hint = our_relay.hint();
    let python_relay_hint = format!("tcp:127.0.0.1:{python_relay_port}");
    println!("| implementation | path | start to first echo | bulk, one stream | CPU-s per GB (in + out) | vs floor (throughput, CPU) | 64-byte ping-pong RTT (median / p99) | 100 concurrent streams of 1 MiB | peak RSS per process |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut floor: Option<Figures> = None;
    let mut scales = Vec::new();
    let wanted = |which: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == which))
    };
    if wanted("floor") {
        match run_raw(1024, 2000).await {
            Ok(f) => print_row("raw loopback", "direct", 1024, &f, None),
            Err(e) => println!("| raw loopback | direct | failed: {e:#} | | | | | | |"),
        }
        match run_floor(1024, 2000).await {
            Ok(mut f) => {
                print_row("floor (seal/open proxies)", "direct", 1024, &f, None);
                scales.extend(f.scale.take());
                floor = Some(f);
            }
            Err(e) => println!("| floor | direct | failed: {e:#} | | | | | | |"),
        }
    }
    let rust = ours.display().to_string();
    // implementation, path, program, its extra arguments, bulk MiB, ping-pong rounds
    // (`--only` also takes `rust-direct`, `rust-relay`, `rust-pyrelay`)
    type Run<'a> = (&'a str, &'a str, String, Vec<&'a str>, usize, usize);
    let runs: [Run; 4] = [
        (
            "rust",
            "direct",
            rust.clone(),
            vec!["--no-relay"],
            1024,
            2000,
        ),
        (
            "rust",
            "our relay",
            rust.clone(),
            vec!["--no-listen", "--relay", &our_relay_hint],
            1024,
            2000,
        ),
        (
            "rust",
            "Python's relay",
            rust,
            vec!["--no-listen", "--relay", &python_relay_hint],
            1024,
            400,
        ),
        ("python", "direct", python, vec![], 256, 40),
    ];
    for (which, path, program, extra, bulk, rounds) in runs {
        let key = match path {
            "direct" => "direct",
            "our relay" => "relay",
            _ => "pyrelay",
        };
        if !wanted(which) && !wanted(&format!("{which}-{key}")) {
            continue;
        }
        let scale = which == "rust" && path == "direct";
        match run(which, &program, &extra, &mb.url(), bulk, rounds, scale).await {
            Ok(f) => {
                print_row(which, path, bulk, &f, floor.as_ref());
                scales.extend(f.scale);
            }
            Err(e) => println!("| {which} | {path} | failed: {e:#} | | | | | | |"),
        }
    }
    for scale in scales {
        println!("\nScale {scale}");
    }
    Ok(())
}

fn print_row(which: &str, path: &str, bulk: usize, f: &Figures, floor: Option<&Figures>) {
    let setup = match f.setup_ms.is_nan() {
        true => "-".to_string(),
        false => format!("{:.0} ms", f.setup_ms),
    };
    let cpu = f.cpu_per_gb.map(|(a, b)| (a, b, a + b));
    let cpu_text = cpu.map_or("-".into(), |(a, b, t)| format!("{a:.2} + {b:.2} = {t:.2}"));
    let ratio = match (floor.and_then(|fl| Some((fl, fl.cpu_per_gb?))), cpu) {
        (Some((fl, (fa, fb))), Some((_, _, t))) => format!(
            "{:.0}%, {:.2}x",
            100.0 * f.bulk_mb_s / fl.bulk_mb_s,
            t / (fa + fb)
        ),
        _ => "-".into(),
    };
    let rss = match (f.rss, f.base_rss, f.bulk_rss) {
        (Some((a, b)), Some((a0, b0)), Some((a1, b1))) => format!(
            "{a:.1} / {b:.1} MiB (set up: {a0:.1} / {b0:.1}; peak after the bulk stream: {a1:.1} / {b1:.1})"
        ),
        (Some((a, b)), ..) => format!("{a:.1} / {b:.1} MiB"),
        _ => "-".into(),
    };
    println!(
        "| {which} | {path} | {setup} | {:.0} MB/s ({bulk} MiB) | {cpu_text} | {ratio} | {:.0} / {:.0} µs | {} | {rss} |",
        f.bulk_mb_s, f.rtt_median_us, f.rtt_p99_us, f.concurrent,
    );
}

/// The floor's two proxies: blocking, a thread per direction, nothing but reading, sealing or
/// opening, and writing.
mod floor {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

    /// Largest record payload: a Noise message (65535 bytes) less the tag and DATA's header.
    const MAX_PAYLOAD: usize = 65535 - 16 - 9;
    const HEADER: usize = 4 + 9;

    fn key() -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7; 32]).expect("a 32-byte key"))
    }

    /// Noise's nonce: four zero bytes and the counter, little-endian.
    fn nonce(n: u64) -> Nonce {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&n.to_le_bytes());
        Nonce::assume_unique_for_key(bytes)
    }

    /// Plaintext from `from` into sealed records to `to`.
    fn seal(mut from: TcpStream, mut to: TcpStream) -> std::io::Result<()> {
        let key = key();
        let mut buf = vec![0u8; HEADER + MAX_PAYLOAD + 16];
        for counter in 0u64.. {
            let n = from.read(&mut buf[HEADER..HEADER + MAX_PAYLOAD])?;
            if n == 0 {
                return to.shutdown(std::net::Shutdown::Write);
            }
            buf[4] = 0x02; // DATA, subchannel 1, seqnum
            buf[5..9].copy_from_slice(&1u32.to_be_bytes());
            buf[9..13].copy_from_slice(&(counter as u32).to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(nonce(counter), Aad::empty(), &mut buf[4..HEADER + n])
                .map_err(|_| std::io::Error::other("seal"))?;
            buf[HEADER + n..HEADER + n + 16].copy_from_slice(tag.as_ref());
            let len = (9 + n + 16) as u32;
            buf[..4].copy_from_slice(&len.to_be_bytes());
            to.write_all(&buf[..HEADER + n + 16])?;
        }
        Ok(())
    }

    /// Sealed records from `from`, their payloads to `to`.
    fn open(mut from: TcpStream, mut to: TcpStream) -> std::io::Result<()> {
        let key = key();
        let mut buf = vec![0u8; 65535 + 4];
        for counter in 0u64.. {
            let mut len = [0u8; 4];
            if from.read_exact(&mut len).is_err() {
                return to.shutdown(std::net::Shutdown::Write);
            }
            let len = u32::from_be_bytes(len) as usize;
            if !(9 + 16..=65535).contains(&len) {
                return Err(std::io::Error::other("bad frame"));
            }
            from.read_exact(&mut buf[..len])?;
            let plain = key
                .open_in_place(nonce(counter), Aad::empty(), &mut buf[..len])
                .map_err(|_| std::io::Error::other("open"))?;
            to.write_all(&plain[9..])?;
        }
        Ok(())
    }

    /// Serves forever: `seal` takes plaintext connections and forwards them sealed to port
    /// `target`; `open` takes sealed ones and forwards them opened. Prints its port first.
    pub fn serve(role: &str, target: u16) -> anyhow::Result<()> {
        // a queue for a burst of 1000 connects (std's bind queues 128)
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        socket.listen(4096)?;
        let listener: TcpListener = socket.into();
        println!("{}", listener.local_addr()?.port());
        std::io::stdout().flush()?;
        for incoming in listener.incoming() {
            let near = incoming?;
            let far = TcpStream::connect(("127.0.0.1", target))?;
            for s in [&near, &far] {
                s.set_nodelay(true)?;
            }
            let (near2, far2) = (near.try_clone()?, far.try_clone()?);
            let (inbound, outbound): (fn(_, _) -> _, fn(_, _) -> _) = match role {
                "seal" => (seal, open),
                _ => (open, seal),
            };
            std::thread::spawn(move || inbound(near, far));
            std::thread::spawn(move || outbound(far2, near2));
        }
        Ok(())
    }
}

/// Python's transit relay (`twist transitrelay`) on a loopback port it picks; its port.
async fn python_relay(venv: &str) -> anyhow::Result<(Child, u16)> {
    let mut child = Command::new(format!("{venv}/bin/twist"))
        .args(["transitrelay", "--port=tcp:0:interface=127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting Python's transit relay")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            let port = line
                .split("starting on ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse::<u16>().ok());
            if let Some(port) = port {
                return Ok(port);
            }
        }
        bail!("the transit relay exited")
    })
    .await
    .context("the transit relay did not listen within 30 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, port))
}
