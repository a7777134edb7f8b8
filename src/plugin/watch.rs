//! Hot reload of `*.wasm` files in the plugins directory.
//!
//! Watches the directory (not the files: deployers rename into place), and
//! reacts only to a file being created, renamed into place, closed after
//! writing, or removed — never to reads, or the watcher's own read of a file
//! would trigger another reload, forever. Events are debounced (~150 ms),
//! unchanged contents are skipped by hash (in `load_file`), compilation runs
//! on this watcher's own thread, and the new version is swapped in
//! atomically; calls in flight finish on the old one. A file that fails to
//! compile is refused and reported, and the previous version keeps serving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::EventKind;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};

use super::{PluginHost, load_file};

/// Whether a path is a plugin file: `*.wasm`, not hidden.
pub fn is_plugin_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && name.ends_with(".wasm") && name.len() > ".wasm".len()
}

/// Loads every plugin file in `dir` (at start-up).
pub fn load_dir(host: &PluginHost, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_plugin_file(p))
        .collect();
    files.sort();
    for f in files {
        let _ = load_file(host, &f);
    }
}

/// Starts watching `dir`. The returned guard stops the watcher when dropped.
pub fn watch(host: PluginHost, dir: &Path) -> Result<impl Drop, notify::Error> {
    let (tx, rx) = std::sync::mpsc::channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(Duration::from_millis(150), None, tx)?;
    debouncer.watch(dir, notify::RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("relay-plugin-watch".into())
        .spawn(move || {
            for result in rx {
                let Ok(events) = result else { continue };
                let mut changed = BTreeSet::new();
                let mut removed = BTreeSet::new();
                for ev in events {
                    let relevant = matches!(
                        ev.kind,
                        EventKind::Create(_)
                            | EventKind::Modify(ModifyKind::Name(_))
                            | EventKind::Access(AccessKind::Close(AccessMode::Write))
                    );
                    for p in &ev.paths {
                        if !is_plugin_file(p) {
                            continue;
                        }
                        if matches!(ev.kind, EventKind::Remove(_)) || (relevant && !p.exists()) {
                            removed.insert(p.clone());
                        } else if relevant {
                            changed.insert(p.clone());
                        }
                    }
                }
                for p in removed.difference(&changed) {
                    if let Some(name) = p.file_stem().and_then(|s| s.to_str()) {
                        tracing::info!(
                            plugin = name,
                            "plugin file removed; the built-in (if any) serves again"
                        );
                        host.unload_file(name);
                    }
                }
                for p in &changed {
                    let _ = load_file(&host, p);
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(debouncer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_wasm_files_are_plugins() {
        assert!(is_plugin_file(Path::new("/p/slack.wasm")));
        assert!(!is_plugin_file(Path::new("/p/.slack.wasm.tmp")));
        assert!(!is_plugin_file(Path::new("/p/.slack.wasm")));
        assert!(!is_plugin_file(Path::new("/p/slack.wasm.part")));
        assert!(!is_plugin_file(Path::new("/p/.wasm")));
        assert!(!is_plugin_file(Path::new("/p/readme.md")));
    }
}
