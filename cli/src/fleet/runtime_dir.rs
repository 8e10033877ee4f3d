//! The runtime folder a fleet of Envoys shares: Envoy's file-based runtime (a `disk_layer` of
//! `layered_runtime`), written only by whole versions swapped in atomically.
//!
//! Layout of the folder `D`:
//! ```text
//! D/current -> v000007            the symlink every Envoy's disk layer names (symlink_root)
//! D/v000007/routing/user-v2/user-2/1/0   holds "25": runtime key routing.user-v2.user-2.1.0
//! D/v000007/meshver/fleet_version        holds "7": which version an Envoy has loaded
//! D/v000007/meshver/fleet_id             holds D/.id: which folder it came from
//! D/.id                           a random name of the folder, made when it is created
//! D/.lock                         held while a version is written
//! ```
//! Envoy maps each `.` of a runtime key to a folder, and watches the symlink's folder for the
//! symlink being replaced by a rename: a new version is written beside the old one, then a new
//! symlink is renamed over `current`. An Envoy never reads a half-written version.

use crate::fail::{Fail, Outcome};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The symlink inside the folder that every Envoy's disk layer watches.
pub const CURRENT: &str = "current";
/// The runtime key each version records its own number under.
pub const VERSION_KEY: &str = "meshver.fleet_version";
/// The runtime key each version records its folder's name under (two folders can both be at
/// version 7 with the same weights; an Envoy watching the other one is not in this fleet).
pub const ID_KEY: &str = "meshver.fleet_id";
const ID_FILE: &str = ".id";
/// Old versions kept beside the current one (for a look at what changed, and for an Envoy that
/// is still reading one as it is swapped).
const KEPT_VERSIONS: usize = 5;

/// The runtime folder (an absolute path).
#[derive(Debug, Clone)]
pub struct RuntimeDir {
    pub path: PathBuf,
}

/// One version of the folder: its number, its runtime keys and values, and the folder's name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Version {
    pub number: u64,
    pub values: BTreeMap<String, String>,
    pub folder: String,
}

impl RuntimeDir {
    /// The folder at `path`, which must hold a `current` version (`meshver render envoy` with
    /// the mesh file's `weights.runtime_dir` writes the first, empty one).
    pub fn open(path: &Path) -> Outcome<RuntimeDir> {
        let path = crate::mesh::absolute(path)?;
        let dir = RuntimeDir { path };
        if std::fs::read_link(dir.current()).is_err() {
            return Err(Fail::new(
                format!("{} is not a meshver runtime folder (it has no {CURRENT} symlink)", dir.path.display()),
                "give the folder of the mesh file's weights.runtime_dir; `meshver render envoy` creates it",
            ));
        }
        Ok(dir)
    }

    /// Creates the folder with an empty first version, unless it has one already (what
    /// `render envoy` does: the Envoys it renders start with the configured weights).
    pub fn create(path: &Path) -> Outcome<RuntimeDir> {
        let dir = RuntimeDir { path: path.to_path_buf() };
        std::fs::create_dir_all(&dir.path).map_err(|e| cannot(&dir.path, "create", &e))?;
        if std::fs::read_link(dir.current()).is_err() {
            dir.write(&[])?;
        }
        Ok(dir)
    }

    /// The path every Envoy's disk layer names as its `symlink_root`.
    pub fn current(&self) -> PathBuf {
        self.path.join(CURRENT)
    }

    /// The version `current` points at.
    pub fn read(&self) -> Outcome<Version> {
        let target = std::fs::read_link(self.current()).map_err(|e| cannot(&self.current(), "read", &e))?;
        let folder = self.path.join(&target);
        let mut values = BTreeMap::new();
        read_tree(&folder, "", &mut values)?;
        let number = version_number(&target.to_string_lossy()).unwrap_or(0);
        values.remove(VERSION_KEY);
        let folder = values.remove(ID_KEY).unwrap_or_default();
        Ok(Version { number, values, folder })
    }

    /// Writes a new version: the current one's keys with `changes` set on them (an empty value
    /// removes a key), then swaps `current` to it. Writers take turns on a lock file.
    pub fn write(&self, changes: &[(String, String)]) -> Outcome<Version> {
        let lock_path = self.path.join(".lock");
        let lock = File::create(&lock_path).map_err(|e| cannot(&lock_path, "create", &e))?;
        lock.lock().map_err(|e| cannot(&lock_path, "lock", &e))?;
        let last = match std::fs::read_link(self.current()) {
            Ok(_) => self.read()?,
            Err(_) => Version::default(),
        };
        let number = self.newest_number()?.max(last.number) + 1;
        let folder_id = self.id()?;
        let mut values = last.values;
        for (key, value) in changes {
            check_key(key)?;
            if value.is_empty() {
                values.remove(key);
            } else {
                values.insert(key.clone(), value.clone());
            }
        }
        refuse_nested_keys(&values)?;
        let name = version_name(number);
        let staging = self.path.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_dir_all(&staging);
        let mut files = values.clone();
        files.insert(VERSION_KEY.to_owned(), number.to_string());
        files.insert(ID_KEY.to_owned(), folder_id.clone());
        for (key, value) in &files {
            let file = staging.join(key.replace('.', "/"));
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| cannot(parent, "create", &e))?;
            }
            std::fs::write(&file, value).map_err(|e| cannot(&file, "write", &e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| cannot(&staging, "create", &e))?;
        let folder = self.path.join(&name);
        std::fs::rename(&staging, &folder).map_err(|e| cannot(&folder, "write", &e))?;
        // A relative link: the folder can be mounted elsewhere (a volume in a pod) and still work.
        let link = self.path.join(format!(".{CURRENT}.tmp"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&name, &link).map_err(|e| cannot(&link, "create", &e))?;
        std::fs::rename(&link, self.current()).map_err(|e| cannot(&self.current(), "swap", &e))?;
        self.prune(number);
        Ok(Version { number, values, folder: folder_id })
    }

    /// The folder's name (`.id`), made on first use: 16 random hex digits.
    fn id(&self) -> Outcome<String> {
        let path = self.path.join(ID_FILE);
        if let Ok(id) = std::fs::read_to_string(&path) {
            if !id.trim().is_empty() {
                return Ok(id.trim().to_owned());
            }
        }
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher
            .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        hasher.write_u32(std::process::id());
        let id = format!("{:016x}", hasher.finish());
        std::fs::write(&path, &id).map_err(|e| cannot(&path, "write", &e))?;
        Ok(id)
    }

    /// The highest version number of the folders present.
    fn newest_number(&self) -> Outcome<u64> {
        let entries = std::fs::read_dir(&self.path).map_err(|e| cannot(&self.path, "read", &e))?;
        Ok(entries.filter_map(|e| version_number(&e.ok()?.file_name().to_string_lossy())).max().unwrap_or(0))
    }

    /// Removes versions older than the last few; failures only leave old folders behind.
    fn prune(&self, newest: u64) {
        let Ok(entries) = std::fs::read_dir(&self.path) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if version_number(&name).is_some_and(|n| n + (KEPT_VERSIONS as u64) < newest) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn version_name(number: u64) -> String {
    format!("v{number:06}")
}

fn version_number(name: &str) -> Option<u64> {
    name.strip_prefix('v')?.parse().ok()
}

/// Reads every file under `folder` as runtime key (its path, `/` as `.`) and value (trimmed, as
/// Envoy reads it).
fn read_tree(folder: &Path, prefix: &str, values: &mut BTreeMap<String, String>) -> Outcome {
    let entries = std::fs::read_dir(folder).map_err(|e| cannot(folder, "read", &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| cannot(folder, "read", &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
        let path = entry.path();
        if path.is_dir() {
            read_tree(&path, &key, values)?;
        } else {
            let text = std::fs::read_to_string(&path).map_err(|e| cannot(&path, "read", &e))?;
            values.insert(key, text.trim().to_owned());
        }
    }
    Ok(())
}

/// A runtime key becomes a path: each part between dots must be a plain, visible file name.
fn check_key(key: &str) -> Outcome {
    let bad = key.split('.').any(|part| part.is_empty() || part.starts_with('.') || part.contains(['/', '\0']));
    if bad {
        return Err(Fail::new(
            format!("runtime key {key:?} cannot be written as a file path"),
            "give route keys without empty parts between dots, slashes or leading dots",
        ));
    }
    Ok(())
}

/// Envoy reads a key's file, so no key can also be the folder of another (`a.b` and `a.b.c`).
fn refuse_nested_keys(values: &BTreeMap<String, String>) -> Outcome {
    for key in values.keys() {
        let inside = format!("{key}.");
        if let Some(other) = values.keys().find(|k| k.starts_with(&inside)) {
            return Err(Fail::new(
                format!("runtime keys {key:?} and {other:?} cannot both be files (a file cannot also be a folder)"),
                "rename one of the route keys so that neither is the other's prefix up to a dot",
            ));
        }
    }
    Ok(())
}

fn cannot(path: &Path, what: &str, error: &std::io::Error) -> Fail {
    Fail::new(format!("cannot {what} {}: {error}", path.display()), "check the runtime folder exists and is writable")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("meshver-runtime-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn versions_are_whole_folders_swapped_in_by_one_symlink() {
        let path = scratch("swap");
        let dir = RuntimeDir::create(&path).unwrap();
        let first = dir.read().unwrap();
        assert_eq!((first.number, first.values.len(), first.folder.len()), (1, 0, 16));
        RuntimeDir::create(&path).unwrap();
        assert_eq!(dir.read().unwrap(), first, "creating it again keeps what it holds");
        let other = RuntimeDir::create(&scratch("other")).unwrap();
        assert_ne!(other.read().unwrap().folder, first.folder, "each folder has a name of its own");
        let _ = std::fs::remove_dir_all(&other.path);

        let written = dir.write(&set(&[("routing.user-v2.user-2.1.0", "25"), ("routing.user-v2.user-2.0.3", "75")]));
        assert_eq!(written.unwrap().number, 2);
        assert_eq!(std::fs::read_link(path.join(CURRENT)).unwrap(), PathBuf::from("v000002"));
        assert_eq!(std::fs::read_to_string(path.join("current/routing/user-v2/user-2/1/0")).unwrap(), "25");
        assert_eq!(std::fs::read_to_string(path.join("current/meshver/fleet_version")).unwrap(), "2");
        assert_eq!(std::fs::read_to_string(path.join("current/meshver/fleet_id")).unwrap(), first.folder);

        // Only the keys given change; an empty value removes one.
        dir.write(&set(&[("routing.user-v2.user-2.1.0", "50"), ("routing.user-v2.user-2.0.3", "")])).unwrap();
        let read = RuntimeDir::open(&path).unwrap().read().unwrap();
        assert_eq!(read.number, 3);
        assert_eq!(read.values, BTreeMap::from([("routing.user-v2.user-2.1.0".to_owned(), "50".to_owned())]));

        for _ in 0..10 {
            dir.write(&set(&[("routing.x", "1")])).unwrap();
        }
        let versions =
            std::fs::read_dir(&path).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with('v'));
        assert_eq!(versions.count(), KEPT_VERSIONS + 1);
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn keys_that_cannot_be_files_are_refused() {
        let path = scratch("keys");
        let dir = RuntimeDir::create(&path).unwrap();
        assert!(dir.write(&set(&[("routing..x", "1")])).unwrap_err().lines[0].contains("cannot be written"));
        assert!(dir.write(&set(&[("routing.a/b", "1")])).is_err());
        let nested = dir.write(&set(&[("routing.l.user-2.1", "1"), ("routing.l.user-2.1.0", "2")])).unwrap_err();
        assert!(nested.lines[0].contains("cannot both be files"), "{:?}", nested.lines);
        assert_eq!(dir.read().unwrap().number, 1, "a refused write leaves the folder as it was");
        assert!(RuntimeDir::open(&path.join("nowhere")).unwrap_err().lines[0].contains("no current symlink"));
        let _ = std::fs::remove_dir_all(&path);
    }
}
