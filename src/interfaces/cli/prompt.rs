//! Asking for the code on a terminal, with tab completion of nameplates (listed by the mailbox
//! server, refreshed on every Tab) and of the PGP words.

use std::sync::{Arc, Mutex};

use rustyline::completion::Completer as LineCompleter;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use tokio::sync::mpsc;

use crate::code::Completer;
use crate::wormhole::{Wormhole, WormholeConfig, WormholeEvent};

/// Completes codes; asks for a fresh nameplate list on every completion.
pub struct CodeHelper {
    completer: Completer,
    nameplates: Arc<Mutex<Vec<String>>>,
    refresh: Option<mpsc::UnboundedSender<()>>,
}

impl CodeHelper {
    /// A helper for codes of `num_words` words, completing nameplates from the shared list
    /// `nameplates` (kept up to date by the caller).
    pub fn new(num_words: usize, nameplates: Arc<Mutex<Vec<String>>>) -> CodeHelper {
        CodeHelper {
            completer: Completer::new(num_words),
            nameplates,
            refresh: None,
        }
    }
}

impl LineCompleter for CodeHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        if let Some(r) = &self.refresh {
            let _ = r.send(()); // the answer serves the next Tab
        }
        let known = self
            .nameplates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok((0, self.completer.complete(&line[..pos], &known)))
    }
}

impl Hinter for CodeHelper {
    type Hint = String;
}
impl Highlighter for CodeHelper {}
impl Validator for CodeHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(check_code(ctx.input()))
    }
}

/// Enter on a code still being typed (a dash at the end, or a last word that is only the start
/// of a code word) would spend a guess of the code on a typo: the line stays open instead.
fn check_code(input: &str) -> ValidationResult {
    let code = input.trim();
    if code.is_empty() {
        return ValidationResult::Valid(None);
    }
    if let Err(e) = crate::code::Code::parse(code) {
        return ValidationResult::Invalid(Some(format!("  ({e})")));
    }
    let last = code
        .rsplit('-')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let words = || {
        crate::code::words::even_words()
            .iter()
            .chain(crate::code::words::odd_words())
    };
    let unfinished = code.ends_with('-')
        || (!words().any(|w| *w == last) && words().any(|w| w.starts_with(&last)));
    match unfinished {
        true => ValidationResult::Invalid(Some("  (unfinished: Tab completes)".into())),
        false => ValidationResult::Valid(None),
    }
}

/// The line editor's settings: readline's completion (the common prefix on the first Tab, the
/// candidates listed on the second), not cycling through candidates.
fn editor_config() -> Config {
    Config::builder()
        .completion_type(CompletionType::List)
        .build()
}
impl Helper for CodeHelper {}

/// Prompts for the code on the terminal. A separate mailbox connection lists the nameplates while
/// the prompt is open.
pub async fn prompt_code(mailbox_url: &str, appid: &str) -> anyhow::Result<String> {
    let nameplates = Arc::new(Mutex::new(Vec::new()));
    let (refresh, mut wanted) = mpsc::unbounded_channel::<()>();
    let lister = {
        let (url, nameplates) = (mailbox_url.to_string(), nameplates.clone());
        let appid = appid.to_string();
        tokio::spawn(async move {
            let Ok(mut w) = Wormhole::connect(WormholeConfig::new(&appid, &url)).await else {
                return; // completion of words still works
            };
            w.list_nameplates();
            loop {
                tokio::select! {
                    asked = wanted.recv() => match asked {
                        Some(()) => w.list_nameplates(),
                        None => break,
                    },
                    event = w.next_event() => match event {
                        Some(WormholeEvent::Nameplates(list)) => {
                            *nameplates.lock().unwrap_or_else(|e| e.into_inner()) = list;
                        }
                        Some(WormholeEvent::Closed(_)) | None => return,
                        Some(_) => {}
                    },
                }
            }
            let _ = w.close().await;
        })
    };
    let mut helper = CodeHelper::new(2, nameplates);
    helper.refresh = Some(refresh);
    let line = tokio::task::spawn_blocking(move || {
        let mut editor: Editor<CodeHelper, _> = Editor::with_config(editor_config())?;
        editor.set_helper(Some(helper));
        editor.readline("Enter the code from your peer (Tab completes): ")
    })
    .await??; // the helper, and with it the refresh sender, is gone now: the lister closes
    let _ = lister.await;
    let code = line.trim().to_string();
    anyhow::ensure!(!code.is_empty(), "no code entered");
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustyline::history::DefaultHistory;

    #[test]
    fn enter_on_an_unfinished_code_keeps_the_line_open_and_tab_lists_like_readline() {
        let valid = |s: &str| matches!(check_code(s), ValidationResult::Valid(_));
        assert!(valid("7-adroitness-aardvark"));
        assert!(
            valid("7-custom-words"),
            "words outside the list are a code too"
        );
        assert!(valid(""), "empty: the caller says no code was entered");
        for unfinished in ["7-adroitness-", "7-adroitness-aard", "7-", "7", "x-y"] {
            assert!(!valid(unfinished), "{unfinished}");
        }
        assert_eq!(editor_config().completion_type(), CompletionType::List);
    }

    #[test]
    fn completes_listed_nameplates_then_words() {
        let known = Arc::new(Mutex::new(vec![
            "4".to_string(),
            "42".to_string(),
            "7".into(),
        ]));
        let helper = CodeHelper::new(2, known);
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, got) = helper.complete("4", 1, &ctx).unwrap();
        assert_eq!((start, got), (0, vec!["4-".to_string(), "42-".to_string()]));
        let (_, got) = helper.complete("7-adroit", 8, &ctx).unwrap();
        assert_eq!(got, vec!["7-adroitness-".to_string()]);
        let (_, got) = helper.complete("7-adroitness-aardv", 18, &ctx).unwrap();
        assert_eq!(got, vec!["7-adroitness-aardvark".to_string()]);
        // the cursor position counts, not the rest of the line
        let (_, got) = helper.complete("7-adroitness-aardvark", 8, &ctx).unwrap();
        assert_eq!(got, vec!["7-adroitness-".to_string()]);
    }
}
