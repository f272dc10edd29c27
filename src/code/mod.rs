//! Wormhole codes (reference §2.1-2.2): `<nameplate>-<word>-<word>...`, generation from the PGP
//! word list, validation, and the completion helper used for interactive entry.
//!
//! ```
//! use fowl::code::{Code, CodeError};
//!
//! let code = Code::generate("7", 2, &mut rand::thread_rng());
//! assert_eq!(code.nameplate(), "7");
//! assert_eq!(code.as_str().split('-').count(), 3);
//! assert_eq!(Code::parse("7-guitarist-revenge")?.nameplate(), "7");
//! assert!(matches!(Code::parse("guitarist-revenge"), Err(CodeError::Nameplate(_))));
//! # Ok::<(), CodeError>(())
//! ```

mod completion;
pub(crate) mod words;

pub use completion::Completer;
pub use words::{even_words, odd_words, word_for};

use rand::RngCore;

/// Longest nameplate we send: the server rejects longer ones (by crashing its handler).
pub const MAX_NAMEPLATE_LEN: usize = 40;

/// What is wrong with a code typed or given by a user.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    /// The code is the empty string.
    #[error("code is empty")]
    Empty,
    /// The code (given) contains whitespace.
    #[error("code {0:?} contains a space")]
    Space(String),
    /// The code (given) does not start with a nameplate of ASCII digits.
    #[error("code {0:?} must start with a numeric nameplate, like 4-purple-sausages")]
    Nameplate(String),
    /// The code's (given) nameplate is longer than [`MAX_NAMEPLATE_LEN`] digits.
    #[error("code {0:?} has a nameplate longer than {MAX_NAMEPLATE_LEN} digits")]
    NameplateTooLong(String),
    /// The code (given) has nothing but dashes after the nameplate.
    #[error("code {0:?} has no words after the nameplate, like 4-purple-sausages")]
    NoWords(String),
}

/// A validated code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    /// Validates `code` as Python's `set_code` does, with a clear error.
    pub fn parse(code: &str) -> Result<Code, CodeError> {
        if code.is_empty() {
            return Err(CodeError::Empty);
        }
        if code.chars().any(char::is_whitespace) {
            return Err(CodeError::Space(code.into()));
        }
        let (nameplate, rest) = code.split_once('-').unwrap_or((code, ""));
        if nameplate.is_empty() || !nameplate.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::Nameplate(code.into()));
        }
        if nameplate.len() > MAX_NAMEPLATE_LEN {
            return Err(CodeError::NameplateTooLong(code.into()));
        }
        if rest.split('-').all(str::is_empty) {
            return Err(CodeError::NoWords(code.into()));
        }
        Ok(Code(code.into()))
    }

    /// Builds a fresh code on `nameplate` with `num_words` random words.
    pub fn generate(nameplate: &str, num_words: usize, rng: &mut impl RngCore) -> Code {
        let mut code = String::from(nameplate);
        for index in 0..num_words {
            let byte = (rng.next_u32() & 0xff) as u8;
            code.push('-');
            code.push_str(word_for(index, byte));
        }
        Code(code)
    }

    /// The nameplate: everything before the first `-`.
    pub fn nameplate(&self) -> &str {
        self.0.split('-').next().unwrap_or_default()
    }

    /// The whole code as text, e.g. `4-purple-sausages`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn validation_errors_are_specific() {
        assert_eq!(Code::parse("4-purple-sausages").unwrap().nameplate(), "4");
        assert_eq!(Code::parse(""), Err(CodeError::Empty));
        assert_eq!(
            Code::parse("4-purple sausages"),
            Err(CodeError::Space("4-purple sausages".into()))
        );
        assert_eq!(
            Code::parse("x-purple"),
            Err(CodeError::Nameplate("x-purple".into()))
        );
        assert_eq!(
            Code::parse("-purple"),
            Err(CodeError::Nameplate("-purple".into()))
        );
        assert_eq!(Code::parse("4"), Err(CodeError::NoWords("4".into())));
        assert_eq!(Code::parse("4-"), Err(CodeError::NoWords("4-".into())));
        let long = format!("{}-a", "1".repeat(41));
        assert_eq!(
            Code::parse(&long),
            Err(CodeError::NameplateTooLong(long.clone()))
        );
        assert!(Code::parse("123-a-b-c").is_ok());
    }

    #[test]
    fn generated_codes_alternate_columns_starting_with_odd() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for words in 1..6 {
            let code = Code::generate("17", words, &mut rng);
            let parts: Vec<&str> = code.as_str().split('-').collect();
            assert_eq!(parts.len(), words + 1);
            assert_eq!(parts[0], "17");
            for (i, w) in parts[1..].iter().enumerate() {
                let column = if i % 2 == 0 {
                    odd_words()
                } else {
                    even_words()
                };
                assert!(column.contains(w), "{w} at {i} is in the wrong column");
            }
            assert!(Code::parse(code.as_str()).is_ok());
        }
    }
}
