//! The `fowl` program with plain output (stdout not a terminal), its lines read as they come.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub struct Fowl {
    pub child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Fowl {
    /// `fowl ARGS` with `envs` added to its environment; killed when dropped.
    pub fn spawn(args: &[String], envs: &[(&str, &std::path::Path)]) -> Fowl {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fowl"))
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Fowl {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line starting with `prefix`, also among lines already read.
    pub async fn line(&mut self, prefix: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return l.clone();
        }
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {prefix:?} line; seen {:?}", self.seen))
                .unwrap()
                .unwrap_or_else(|| panic!("fowl exited before {prefix:?}; seen {:?}", self.seen));
            self.seen.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Its exit status (within 15 s).
    pub async fn wait(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("fowl exits")
            .unwrap()
            .code()
    }

    /// Ctrl-C, then its exit status.
    pub async fn interrupt(mut self) -> Option<i32> {
        let pid = self.child.id().unwrap().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status();
        self.wait().await
    }
}
