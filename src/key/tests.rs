//! Known-answer tests from the reference (`wormhole-dilation.md` §7).

use super::*;
use sha2::{Digest, Sha256};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

fn k32(s: &str) -> Key {
    h(s).try_into().unwrap()
}

#[test]
fn hkdf_matches_reference_and_prefixes() {
    let full = h(
        "2f34e5ff91ec85d53ca9b543683174d0cf550b60d5f52b24c97b386cfcf6cbbf\
                  9cfd42fd37e1e5a214d15f03058d7fee63dc28f564b7b9fe3da514f80daad4bf",
    );
    assert_eq!(hkdf(b"secret", b"", 64), full);
    for len in [1, 16, 32, 63] {
        assert_eq!(hkdf(b"secret", b"", len), full[..len]);
    }
}

#[test]
fn derive_key_and_phase_keys() {
    let k = k32("588ba9eef353778b074413a0140205d90d7479e36e0dd4ee35bb729d26131ef1");
    assert_eq!(
        derive_key(&k, b"purpose1").to_vec(),
        h("835b5df80ce9ca46908e8524fb308649122cfbcefbeaa7e65061c6ef08ee1b2a")
    );
    assert_eq!(hkdf(&k, b"purpose2", 10), h("f2238e84315b47eb6279"));
    let cases = [
        (
            "side1",
            "phase1",
            "3af6a61d1a111225cc8968c6ca6265efe892065c3ab46de79dda21306b062990",
        ),
        (
            "side1",
            "phase2",
            "88a1dd12182d989ff498022a9656d1e2806f17328d8bf5d8d0c9753e4381a752",
        ),
        (
            "side2",
            "phase1",
            "a306627b436ec23bdae3af8fa90c9ac927780d86be1831003e7f617c518ea689",
        ),
        (
            "side2",
            "phase2",
            "bf99e3e16420f2dad33f9b1ccb0be1462b253d639dacdb50ed9496fa528d8758",
        ),
    ];
    for (side, phase, want) in cases {
        assert_eq!(
            derive_phase_key(&k, side, phase).to_vec(),
            h(want),
            "{side}/{phase}"
        );
    }
}

#[test]
fn secretbox_matches_reference_and_rejects_tampering() {
    let key = k32("ddc543ef8e4629a603d39dd0307a51bb1e7adb9cb259f6b085c91d0842a18679");
    let nonce: [u8; 24] = h("2d5e43eb465aa42e750f991e425bee485f06abad7e04af80")
        .try_into()
        .unwrap();
    let pt = h("edc089a518219ec1cee184e89d2d37af");
    let want = h(
        "2d5e43eb465aa42e750f991e425bee485f06abad7e04af80fe318e39d0e4ce932d2b54b3\
                  00c56d2cda55ee5f0488d63eb1d5f76f7919a49a",
    );
    let boxed = encrypt_with_nonce(&key, &nonce, &pt);
    assert_eq!(boxed, want);
    assert_eq!(decrypt(&key, &boxed).unwrap(), pt);
    let mut bad = boxed.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(decrypt(&key, &bad), Err(DecryptError));
    assert_eq!(decrypt(&key, &boxed[..10]), Err(DecryptError));
    assert_eq!(decrypt(&[0u8; 32], &boxed), Err(DecryptError));
    // a random nonce round-trips
    assert_eq!(decrypt(&key, &encrypt(&key, b"hello")).unwrap(), b"hello");
}

/// python-spake2's test PRG: block i = sha256("prng-" || i || "-" || seed), byte by byte.
fn python_prg(seed: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut counter = 0u32;
    while out.len() < n {
        let mut hasher = Sha256::new();
        hasher.update(format!("prng-{counter}-").as_bytes());
        hasher.update(seed);
        out.extend_from_slice(&hasher.finalize());
        counter += 1;
    }
    out.truncate(n);
    out
}

/// Python reads 64 PRG bytes as a big-endian integer; dalek reads 64 bytes little-endian.
/// Handing dalek the reversed bytes yields the same scalar.
struct ReversedPrg(Vec<u8>);

impl rand::RngCore for ReversedPrg {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("SPAKE2 only asks for fill_bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("SPAKE2 only asks for fill_bytes")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert_eq!(dest.len(), 64);
        dest.copy_from_slice(&self.0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand::CryptoRng for ReversedPrg {}

fn prg_rng(seed: &[u8]) -> ReversedPrg {
    let mut bytes = python_prg(seed, 64);
    bytes.reverse();
    ReversedPrg(bytes)
}

const APPID: &str = "lothar.com/wormhole/text-or-file-xfer";
const CODE: &str = "4-purple-sausages";

#[test]
fn end_to_end_vectors_from_python() {
    let a = Pake::start_with_rng(CODE, APPID, prg_rng(b"1"));
    let b = Pake::start_with_rng(CODE, APPID, prg_rng(b"2"));
    assert_eq!(
        std::str::from_utf8(a.body()).unwrap(),
        "{\"pake_v1\": \"53197a4ea5e244635443ab4ddb5fad03347acd9e2cd999a485ea2d70fc1a03f786\"}"
    );
    assert!(std::str::from_utf8(b.body())
        .unwrap()
        .contains("537363b806daab0f820358776580ab7487276685947a93b7c0acdd1981b605f5d6"));
    let b_body = b.body().to_vec();
    let a_body = a.body().to_vec();
    let key = a.finish(&b_body).unwrap();
    assert_eq!(key, b.finish(&a_body).unwrap());
    assert_eq!(
        key,
        k32("69109e25096c47a7156c0cd2d334eb2b0672ad798da2bf1b3b6cff99677be1c9")
    );

    assert_eq!(
        verifier(&key),
        k32("56a6ef893c6d21c766b0dfafd6f1943343e9203146d406fdd27465879bb5c348")
    );
    let phase_keys = [
        (
            "7c3e1f9a20",
            "version",
            "66e90fa6f6f2a740c4e3d8d792f06e815fd74321f281a8256da88e1195340f3a",
        ),
        (
            "7c3e1f9a20",
            "0",
            "6e43a58ebcab839675fabeb9d6a2e181bd308fb0898d3f105423fdab62ce74e9",
        ),
        (
            "7c3e1f9a20",
            "1",
            "fb5c1806eab57170a9a3c8f609b95fe62aba7031a0dec3e3decc50c45e0f7b7a",
        ),
        (
            "7c3e1f9a20",
            "dilate-0",
            "93573754a717731406ad7c5e4bbd6186782f6492b187e736962d9b627691e11f",
        ),
        (
            "e0b1d2c3f4",
            "version",
            "c622dc08968fcd5138896f4a0a229ee83d74b91e6a33f93ccb8ba7b45948f3e5",
        ),
        (
            "e0b1d2c3f4",
            "0",
            "38379dec0cfa533154b477ceaa74bb380a2aca0a17f8f0cf93794081fea4a114",
        ),
        (
            "e0b1d2c3f4",
            "dilate-0",
            "1b174e83b7bd3f9e9e4367b832d1dda87dad0195f64edd0e579e969c7fa39024",
        ),
    ];
    for (side, phase, want) in phase_keys {
        assert_eq!(
            derive_phase_key(&key, side, phase),
            k32(want),
            "{side}/{phase}"
        );
    }

    let version = crate::wormhole::version_message(&serde_json::json!({}), true);
    assert_eq!(
        std::str::from_utf8(&version).unwrap(),
        "{\"can-dilate\": [\"ged\"], \"dilation-abilities\": [{\"type\": \"direct-tcp-v1\"}, \
         {\"type\": \"relay-v1\"}], \"app_versions\": {}}"
    );
    let nonce: [u8; 24] = core::array::from_fn(|i| i as u8);
    let body = encrypt_with_nonce(
        &derive_phase_key(&key, "7c3e1f9a20", "version"),
        &nonce,
        &version,
    );
    assert_eq!(
        body,
        h("000102030405060708090a0b0c0d0e0f1011121314151617c1cac02d56d3be18059c7cf4b0a14dffc7af3c30e023d27c
           7b04fec6fa29f2e410888aa2b35775ad1ca6fcdc3e2d8187f86af94de7facc3aeab148b9d1a4118f361b60a3223410c2
           693cfa56c7832ea9a10049a6dfb8858d04664d54f89af29943dba689f8471fc8fcad822dd05b37215eda10eecbb10995
           0d5a8ff9a1d6d3b6797b1c2a")
    );

    let dk = dilation_key(&key);
    assert_eq!(
        dk,
        k32("4e01b8cadfae3cacf6919fb8dd0c3da2cc6722430324bd729e854474fa966d91")
    );
    assert_eq!(
        relay_token(&dk),
        k32("3b85b70dc4a7e2adf2c0a2da14d3776d9ffc9a2809e9c894c7cd091783382598")
    );
}

#[test]
fn relay_token_matches_test_connector_vector() {
    // test_connector.py::test_build: Dilation key b"k"*32
    assert_eq!(
        relay_token(&[b'k'; 32]),
        k32("3f4147851dbd2589d25b654ee9fb35ed0d3e5f19c5c5403e8e6a195c70f0577a")
    );
}

#[test]
fn spake2_symmetric_vectors_from_python_spake2() {
    // test_compat.py: password b"password", no identity, seeds "1" and "2"
    use spake2::{Ed25519Group, Identity, Password, Spake2};
    let pw = Password::new(b"password");
    let id = Identity::new(b"");
    let (s1, m1) = Spake2::<Ed25519Group>::start_symmetric_with_rng(&pw, &id, prg_rng(b"1"));
    let (s2, m2) = Spake2::<Ed25519Group>::start_symmetric_with_rng(&pw, &id, prg_rng(b"2"));
    assert_eq!(
        m1,
        h("5308f692d38c4034ad6e2e1054c469ca1dbe990bcaec4bbd3ad78c7d968eadd0b3")
    );
    assert_eq!(
        m2,
        h("5329e2d5f9b7a53e609204115c6458921b0bb27419ce82a27679fc5961002897df")
    );
    let k1 = s1.finish(&m2).unwrap();
    assert_eq!(k1, s2.finish(&m1).unwrap());
    assert_eq!(
        k1,
        h("9c4fccaa3f0740615cee6fd10ed5d3a311b91b5bdc65f53e4ea7cb2fe8aa96eb")
    );
}

#[test]
fn pake_rejects_malformed_and_wrong_code() {
    let a = Pake::start("4-purple-sausages", APPID);
    let b = Pake::start("4-purple-sausage", APPID);
    let b_body = b.body().to_vec();
    for bad in [
        &b"not json"[..],
        b"{}",
        b"{\"pake_v1\": 3}",
        b"{\"pake_v1\": \"zz\"}",
    ] {
        let p = Pake::start(CODE, APPID);
        assert_eq!(p.finish(bad).unwrap_err(), PakeError::BadBody);
    }
    let p = Pake::start(CODE, APPID);
    assert!(matches!(
        p.finish(b"{\"pake_v1\": \"41\"}"),
        Err(PakeError::Spake(_))
    ));
    // a different code still "finishes" but yields a different key
    let a_body = a.body().to_vec();
    let ka = a.finish(&b_body).unwrap();
    let kb = b.finish(&a_body).unwrap();
    assert_ne!(ka, kb);
}
