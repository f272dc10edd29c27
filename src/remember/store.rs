//! [`PeerStore`]: one JSON file per remembered peer in the user's configuration folder.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{valid_name, PeerFile, RememberError, FILE_VERSION};

/// The folder of remembered peers: `$XDG_CONFIG_HOME/fowl/peers`, else
/// `$HOME/.config/fowl/peers`.
pub fn default_dir() -> Result<PathBuf, RememberError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => return Err(RememberError::NoConfigDir),
        },
    };
    Ok(base.join("fowl").join("peers"))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RememberError + '_ {
    move |source| RememberError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One entry of [`PeerStore::list`]: a name and its file, or why it cannot be used.
pub type Listed = (String, Result<PeerFile, RememberError>);

/// The files of remembered peers in one folder (created with mode 0700 when first written;
/// files are written whole, mode 0600, and renamed into place, so a crash leaves the old file or
/// the new one, never half of one).
#[derive(Debug, Clone)]
pub struct PeerStore {
    dir: PathBuf,
}

impl PeerStore {
    /// The store in the user's configuration folder (see [`default_dir`]).
    pub fn open_default() -> Result<PeerStore, RememberError> {
        Ok(PeerStore::at(default_dir()?))
    }

    /// The store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> PeerStore {
        PeerStore { dir: dir.into() }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of peer `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Whether a peer `name` is remembered (a file exists, sound or not).
    pub fn contains(&self, name: &str) -> bool {
        valid_name(name).is_ok() && self.path(name).exists()
    }

    /// The file of peer `name`: refused when missing, readable by others, of another version,
    /// or not matching its check value.
    pub fn load(&self, name: &str) -> Result<PeerFile, RememberError> {
        valid_name(name)?;
        let path = self.path(name);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RememberError::Unknown(name.into()))
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(RememberError::TooOpen {
                path: path.display().to_string(),
                mode,
            });
        }
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        let damaged = |reason: String| RememberError::Damaged {
            name: name.into(),
            path: path.display().to_string(),
            reason,
        };
        let file: PeerFile = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        if file.version != FILE_VERSION {
            return Err(damaged(format!(
                "version {} (this fowl reads version {FILE_VERSION})",
                file.version
            )));
        }
        if file.check != file.checksum() {
            return Err(damaged(
                "its check value does not match its contents".into(),
            ));
        }
        if file.name != name {
            return Err(damaged(format!("it names the peer {:?}", file.name)));
        }
        if file.current.is_none() && file.next.is_none() {
            return Err(damaged("it holds no secret".into()));
        }
        Ok(file)
    }

    /// Writes `file` (its check value set here) atomically, mode 0600.
    pub fn save(&self, file: &PeerFile) -> Result<(), RememberError> {
        valid_name(&file.name)?;
        let mut file = file.clone();
        file.check = file.checksum();
        fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error(&self.dir))?;
        let path = self.path(&file.name);
        let tmp = self.dir.join(format!(".{}.tmp", file.name));
        let mut text = serde_json::to_vec_pretty(&file).unwrap_or_default();
        text.push(b'\n');
        let _ = fs::remove_file(&tmp);
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_error(&tmp))?;
        out.write_all(&text).map_err(io_error(&tmp))?;
        out.sync_all().map_err(io_error(&tmp))?;
        drop(out);
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Deletes the file of peer `name`.
    pub fn forget(&self, name: &str) -> Result<(), RememberError> {
        valid_name(name)?;
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(RememberError::Unknown(name.into()))
            }
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Every remembered peer by name, each loaded (or the reason it cannot be), sorted by name.
    pub fn list(&self) -> Result<Vec<Listed>, RememberError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&self.dir)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_suffix(".json")?.to_owned();
                valid_name(&name).is_ok().then_some(name)
            })
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|n| {
                let loaded = self.load(&n);
                (n, loaded)
            })
            .collect())
    }
}
