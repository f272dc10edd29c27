//! The Noise transport cipher alone (ChaCha20-Poly1305 from noise-rust-crypto): sealing and
//! opening 64 KiB records on one core, the ceiling of one direction of a Dilation connection.
//!
//!     cargo run --release --example bench_noise

use std::time::Instant;

use fowl::dilation::l2::{L2Connection, L2Event, RecvHalf, Role, SendHalf};
use fowl::dilation::record::Record;

fn pair() -> (SendHalf, RecvHalf) {
    let psk = [7u8; 32];
    let mut l = L2Connection::new(Role::Leader, &psk, None);
    let mut f = L2Connection::new(Role::Follower, &psk, None);
    for _ in 0..4 {
        let (lo, fo) = (l.take_output(), f.take_output());
        l.receive(&fo).unwrap();
        f.receive(&lo).unwrap();
        if std::iter::from_fn(|| l.poll_event()).any(|e| e == L2Event::Ready) {
            l.select();
        }
    }
    f.receive(&l.take_output()).unwrap();
    (l.into_halves().unwrap().0, f.into_halves().unwrap().1)
}

fn main() {
    const TOTAL: usize = 1 << 30;
    let record = Record::Data {
        scid: 1,
        seqnum: 0,
        data: vec![0x5a; 65510],
    };
    let (mut wire, mut scratch, mut out) = (Vec::new(), Vec::new(), Vec::new());

    let (mut send, _) = pair();
    let started = Instant::now();
    let mut n = 0;
    while n < TOTAL {
        wire.clear();
        send.seal_record(&record, &mut wire, &mut scratch);
        n += 65510;
    }
    let seal = started.elapsed().as_secs_f64();

    // the receiver needs the nonces in order: seal and open in turn, then subtract sealing
    let (mut send, mut recv) = pair();
    let started = Instant::now();
    let mut n = 0;
    while n < TOTAL {
        wire.clear();
        send.seal_record(&record, &mut wire, &mut scratch);
        out.clear();
        recv.receive(&wire, &mut out).unwrap();
        n += 65510;
    }
    let both = started.elapsed().as_secs_f64();
    println!(
        "seal (encode + encrypt): {:.0} MB/s",
        TOTAL as f64 / seal / 1e6
    );
    println!(
        "open (decrypt + decode): {:.0} MB/s",
        TOTAL as f64 / (both - seal) / 1e6
    );
}
