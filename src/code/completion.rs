//! Tab completion for interactive code entry: nameplates (from the server's `list`) first, then
//! words from the alternating columns, the first from the odd column.

use super::words::column_for;

/// Completes partially typed codes.
#[derive(Debug, Clone)]
pub struct Completer {
    num_words: usize,
}

impl Completer {
    /// A completer for codes of `num_words` words (2 by default in the CLI).
    pub fn new(num_words: usize) -> Completer {
        Completer {
            num_words: num_words.max(1),
        }
    }

    /// Every full completion of `typed`. A completed nameplate or a non-final word ends with `-`,
    /// so that the user can keep typing; the final word does not.
    pub fn complete(&self, typed: &str, nameplates: &[String]) -> Vec<String> {
        let Some((nameplate, words)) = typed.split_once('-') else {
            let mut out: Vec<String> = nameplates
                .iter()
                .filter(|n| n.starts_with(typed))
                .map(|n| format!("{n}-"))
                .collect();
            out.sort();
            out.dedup();
            return out;
        };
        let typed_words: Vec<&str> = words.split('-').collect();
        let index = typed_words.len() - 1;
        if index >= self.num_words {
            return Vec::new();
        }
        let partial = typed_words[index].to_ascii_lowercase();
        let head: Vec<&str> = std::iter::once(nameplate)
            .chain(typed_words[..index].iter().copied())
            .collect();
        let suffix = if index + 1 < self.num_words { "-" } else { "" };
        let mut out: Vec<String> = column_for(index)
            .iter()
            .filter(|w| w.starts_with(&partial))
            .map(|w| format!("{}-{w}{suffix}", head.join("-")))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_nameplates_then_alternating_words() {
        let c = Completer::new(2);
        let plates = vec!["4".to_string(), "42".to_string(), "7".to_string()];
        assert_eq!(c.complete("4", &plates), vec!["4-", "42-"]);
        assert_eq!(c.complete("", &plates).len(), 3);
        // first word: odd column (three syllables)
        assert_eq!(c.complete("4-adroit", &plates), vec!["4-adroitness-"]);
        assert!(
            c.complete("4-aardv", &plates).is_empty(),
            "aardvark is an even-column word"
        );
        // second word: even column, no trailing dash
        assert_eq!(
            c.complete("4-adroitness-aardv", &plates),
            vec!["4-adroitness-aardvark"]
        );
        assert!(c.complete("4-adroitness-aardvark-x", &plates).is_empty());
        assert_eq!(c.complete("4-ADROIT", &plates), vec!["4-adroitness-"]);
        assert_eq!(c.complete("4-", &plates).len(), 256);
    }
}
