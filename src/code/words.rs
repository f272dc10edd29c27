//! The PGP word list, as shipped in `pgp-wordlist.txt` (`HH even odd` per byte).

use std::sync::OnceLock;

const LIST: &str = include_str!("pgp-wordlist.txt");

struct Columns {
    even: Vec<&'static str>,
    odd: Vec<&'static str>,
}

fn columns() -> &'static Columns {
    static COLUMNS: OnceLock<Columns> = OnceLock::new();
    COLUMNS.get_or_init(|| {
        let mut even = Vec::with_capacity(256);
        let mut odd = Vec::with_capacity(256);
        for line in LIST.lines().filter(|l| !l.trim().is_empty()) {
            let mut fields = line.split_whitespace();
            let (_, e, o) = (fields.next(), fields.next(), fields.next());
            even.push(e.expect("word list line has an even word"));
            odd.push(o.expect("word list line has an odd word"));
        }
        assert_eq!(even.len(), 256, "word list has 256 lines");
        Columns { even, odd }
    })
}

/// The first column (two syllables): word indices 1, 3, 5, ...
pub fn even_words() -> &'static [&'static str] {
    &columns().even
}

/// The second column (three syllables): word indices 0, 2, 4, ... (the first word).
pub fn odd_words() -> &'static [&'static str] {
    &columns().odd
}

/// The word at position `index` of a code for the random `byte`.
pub fn word_for(index: usize, byte: u8) -> &'static str {
    column_for(index)[byte as usize]
}

/// The column that word position `index` (0 = first word after the nameplate) draws from.
pub(crate) fn column_for(index: usize) -> &'static [&'static str] {
    if index % 2 == 0 {
        odd_words()
    } else {
        even_words()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn columns_match_published_checksums() {
        let digest = |words: &[&str]| hex::encode(Sha256::digest(words.join("\n").as_bytes()));
        assert_eq!(
            digest(even_words()),
            "ae5422211d55ee7d857d3d9c6446b6afc3c170bfae214b651bba5b3ffc3380e3"
        );
        assert_eq!(
            digest(odd_words()),
            "dfe1b4176dc7a1f02380090e4ee83beda5334e7718c19442d7136044d1b1da40"
        );
        assert_eq!(word_for(0, 0), "adroitness");
        assert_eq!(word_for(1, 0x0a), "allow");
        assert_eq!(word_for(2, 0xff), "yucatan");
    }
}
