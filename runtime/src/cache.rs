//! The precompiled-module cache on disk: compiled machine code keyed by the module's hash and
//! the engine's configuration, so that a restarted domain does not compile a module again.
//!
//! Each file is `<module hash>-<engine hash>.cwasm` and holds the SHA-256 of the artifact
//! followed by the artifact. A file whose digest does not match (a torn write, a flipped bit)
//! is deleted and the module compiled afresh; nothing in the cache is trusted without it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::{Engine, Module};

const DIGEST_LEN: usize = 32;

/// A directory of compiled modules for one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine_key: String,
}

impl ModuleCache {
    /// Opens (creating) `dir` for modules compiled by `engine`.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // Wasmtime's own compatibility hash covers its version, target and every setting that
        // changes generated code; the cache key is a digest of it.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self { dir: dir.to_path_buf(), engine_key: format!("{:016x}", hasher.finish()) })
    }

    fn path(&self, module_hash: &str) -> PathBuf {
        self.dir.join(format!("{module_hash}-{}.cwasm", self.engine_key))
    }

    /// The compiled module for `module_hash`, if a sound copy is on disk.
    pub(crate) fn load(&self, engine: &Engine, module_hash: &str) -> Option<Module> {
        let path = self.path(module_hash);
        let file = std::fs::read(&path).ok()?;
        let sound = file.len() > DIGEST_LEN && {
            let (digest, artifact) = file.split_at(DIGEST_LEN);
            ring::digest::digest(&ring::digest::SHA256, artifact).as_ref() == digest
        };
        if !sound {
            tracing::warn!(path = %path.display(), "discarding a damaged precompiled module");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        match deserialize(engine, &file[DIGEST_LEN..]) {
            Ok(module) => Some(module),
            Err(error) => {
                tracing::warn!(path = %path.display(), "discarding an unloadable precompiled module: {error}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores `module`'s compiled code; a failure only costs a later recompilation.
    pub(crate) fn store(&self, module_hash: &str, module: &Module) {
        let result = module.serialize().map_err(std::io::Error::other).and_then(|artifact| {
            let mut file = Vec::with_capacity(DIGEST_LEN + artifact.len());
            file.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, &artifact).as_ref());
            file.extend_from_slice(&artifact);
            let path = self.path(module_hash);
            let temporary = path.with_extension("cwasm.partial");
            std::fs::write(&temporary, &file)?;
            std::fs::rename(&temporary, &path)
        });
        if let Err(error) = result {
            tracing::warn!(module = module_hash, "could not cache a compiled module: {error}");
        }
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Module> {
    // SAFETY: wasmtime requires that the bytes come from `Module::serialize` of a compatible
    // engine and were not altered. They were written by `store` above into the domain's own
    // directory, and their SHA-256 was checked just now; wasmtime itself rejects artifacts of
    // another version or configuration.
    unsafe { Module::deserialize(engine, artifact) }
}
