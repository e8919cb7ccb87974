//! The certificates in force, swapped whole on reload.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::{Generation, TlsError, TlsSettings};

/// The current [`Generation`], read by every worker when it accepts a connection (one
/// read lock and an `Arc` clone per connection, never per packet) and replaced by
/// [`CertStore::reload`]. Connections keep the generation they were accepted with, so a
/// reload changes the certificate of new connections only.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<Generation>>,
    /// Held for the whole of a reload, so two reloads (a signal and a file change at once)
    /// do not interleave.
    reloading: Mutex<()>,
}

impl CertStore {
    /// Loads the first generation; an error here should stop the server.
    pub fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        Ok(Self::new(Generation::load(settings)?))
    }

    /// A store serving `generation`.
    pub fn new(generation: Generation) -> Self {
        Self {
            current: RwLock::new(Arc::new(generation)),
            reloading: Mutex::new(()),
        }
    }

    /// The generation new connections get.
    pub fn current(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the files of the settings in force again (on SIGHUP, SIGUSR2 or a changed
    /// file). On success the new generation serves every new connection and is returned;
    /// on failure the old one stays and the error names the file.
    pub fn reload(&self) -> Result<Arc<Generation>, TlsError> {
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let settings = self.current().settings().clone();
        Ok(self.swap(Arc::new(Generation::load(settings)?)))
    }

    /// Serves `generation`, which the caller loaded, to every new connection from now on
    /// and returns it. A reload of the whole configuration (new certificate paths or TLS
    /// options, perhaps) loads the certificates while validating it; installing that
    /// generation keeps the files from being read and parsed a second time. A load that
    /// failed installs nothing, so the old generation stays.
    pub fn install(&self, generation: Arc<Generation>) -> Arc<Generation> {
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.swap(generation)
    }

    fn swap(&self, generation: Arc<Generation>) -> Arc<Generation> {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = generation.clone();
        generation
    }

    /// The certificate and key files in force, to watch for changes.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.current().settings().files()
    }
}
